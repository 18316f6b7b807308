"""pgclip.settings: the pgclip.* settings parsed, validated, with safe defaults."""

from __future__ import annotations

import pytest

from pgclip import images, settings
from pgclip.errors import InvalidParameter
from pgclip.settings import AdminOnlyFormat, Settings
from pgclip.video import limits as video_limits


def test_names_are_the_settings_parse_reads() -> None:
    assert set(settings.NAMES) == {"model", "pretrained", "device", "precision",
                                   "max_image_bytes", "max_image_pixels", "image_formats",
                                   "max_text_chars", "checkpoint_sha256", "torch_threads",
                                   *video_limits.NAMES}


@pytest.mark.parametrize("raw", [{}, dict.fromkeys(settings.NAMES),
                                 dict.fromkeys(settings.NAMES, ""),
                                 dict.fromkeys(settings.NAMES, "  ")])
def test_unset_settings_get_safe_defaults(raw: dict) -> None:
    s = settings.parse(raw)
    assert s == Settings()
    assert (s.model, s.pretrained, s.device, s.precision) == ("", "", "auto", "auto")
    assert s.image_limits.max_bytes == 20 * 1024 * 1024
    assert s.image_limits.max_pixels == 40_000_000
    assert s.image_limits.formats == ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
    assert s.max_text_chars == 10_000
    assert not any(images.is_admin_only(f) for f in s.image_limits.formats)


def test_strings_are_stripped() -> None:
    s = settings.parse({"model": " pgclip-tiny ", "pretrained": " pgclip\n", "device": " cpu",
                        "precision": "fp32 "})
    assert (s.model, s.pretrained, s.device, s.precision) == ("pgclip-tiny", "pgclip", "cpu",
                                                              "fp32")


@pytest.mark.parametrize("name,raw,value", [
    ("max_image_bytes", "123", 123), ("max_image_bytes", " 1_000 ", 1000),
    ("max_image_bytes", "20MB", 20 * 1024**2), ("max_image_bytes", "512 kB", 512 * 1024),
    ("max_image_bytes", "1GB", 1024**3), ("max_image_bytes", "100B", 100),
    ("max_image_pixels", "1000000", 1_000_000), ("max_image_pixels", "+7", 7),
    ("max_text_chars", "77", 77),
])
def test_integer_settings(name: str, raw: str, value: int) -> None:
    s = settings.parse({name: raw})
    got = s.max_text_chars if name == "max_text_chars" else getattr(
        s.image_limits, {"max_image_bytes": "max_bytes", "max_image_pixels": "max_pixels"}[name])
    assert got == value


@pytest.mark.parametrize("name", ["max_image_bytes", "max_image_pixels", "max_text_chars"])
@pytest.mark.parametrize("raw", ["0", "-5", "-1MB"])
def test_non_positive_is_an_error(name: str, raw: str) -> None:
    if name != "max_image_bytes" and raw.endswith("MB"):
        raw = "-1"
    with pytest.raises(InvalidParameter) as exc:
        settings.parse({name: raw})
    assert exc.value.sqlstate == "22023"
    assert f"pgclip.{name} must be positive" in exc.value.message
    assert raw in exc.value.message
    assert exc.value.hint


@pytest.mark.parametrize("name", ["max_image_bytes", "max_image_pixels", "max_text_chars"])
@pytest.mark.parametrize("raw", ["abc", "1.5", "10 apples", "1e6", "0x10", "5 5"])
def test_garbage_is_an_error_naming_setting_and_value(name: str, raw: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        settings.parse({name: raw})
    assert exc.value.message == f'invalid value for pgclip.{name}: "{raw}"'
    assert "positive integer" in exc.value.hint


@pytest.mark.parametrize("name", ["max_image_pixels", "max_text_chars"])
def test_units_only_for_bytes(name: str) -> None:
    with pytest.raises(InvalidParameter, match=f"pgclip.{name}"):
        settings.parse({name: "20MB"})


@pytest.mark.parametrize("raw,formats", [
    ("png", ("PNG",)), ("PNG, jpeg", ("PNG", "JPEG")), ("jpg,tif", ("JPEG", "TIFF")),
    ("PNG JPEG", ("PNG", "JPEG")), ("png,PNG,png", ("PNG",)), (" webp ,, gif ", ("WEBP", "GIF")),
    ("QOI,PPM,ICO,AVIF,MPO", ("QOI", "PPM", "ICO", "AVIF", "JPEG")),
])
def test_image_formats(raw: str, formats: tuple[str, ...]) -> None:
    assert settings.parse({"image_formats": raw}).image_limits.formats == formats


@pytest.mark.parametrize("raw", ["JPGG", "png,heic", "svg", "PDF"])
def test_unknown_format_is_an_error(raw: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        settings.parse({"image_formats": raw})
    assert exc.value.sqlstate == "22023"
    assert "pgclip.image_formats names an unknown image format" in exc.value.message
    assert raw in exc.value.detail
    assert "JPEG" in exc.value.hint


@pytest.mark.parametrize("raw", [",", " , ;"])
def test_formats_without_names(raw: str) -> None:
    with pytest.raises(InvalidParameter):
        settings.parse({"image_formats": raw})


@pytest.mark.parametrize("fmt", ["EPS", "PSD", "FITS", "JPEG2000", "PCX", "TGA", "SGI"])
def test_risky_formats_need_an_administrator(fmt: str) -> None:
    with pytest.raises(AdminOnlyFormat) as exc:
        settings.parse({"image_formats": f"PNG,{fmt.lower()}"})
    assert exc.value.sqlstate == "42501"
    assert f"pgclip.image_formats names {fmt}" in exc.value.message
    assert f"Remove {fmt} from pgclip.image_formats" in exc.value.hint
    s = settings.parse({"image_formats": f"PNG,{fmt.lower()}"}, admin_formats=(fmt.lower(),))
    assert s.image_limits.formats == ("PNG", fmt)


def test_admin_formats_alone_enable_nothing() -> None:
    s = settings.parse({}, admin_formats=("EPS",))
    assert "EPS" not in s.image_limits.formats


def test_every_pillow_format_is_user_or_admin_only() -> None:
    user = [f for f in images.pillow_formats() if not images.is_admin_only(f)]
    assert set(user) == set(images.USER_FORMATS) & images.pillow_formats()
    assert {"EPS", "PSD", "FITS"} <= images.pillow_formats()


@pytest.mark.parametrize("raw, want", [(None, 32), ("", 32), ("1", 1), ("4096", 4096)])
def test_batch_size(raw: str | None, want: int) -> None:
    assert settings.parse_batch_size(raw) == want


@pytest.mark.parametrize("raw", ["0", "4097", "-3", "ten", "1.5"])
def test_batch_size_rejects(raw: str) -> None:
    with pytest.raises(InvalidParameter, match="pgclip.batch_size") as e:
        settings.parse_batch_size(raw)
    assert "between 1 and 4096" in (e.value.hint or "")


@pytest.mark.parametrize("raw,value", [(None, 0), ("", 0), ("0", 0), (" 1 ", 1), ("16", 16)])
def test_torch_threads(raw: str | None, value: int) -> None:
    assert settings.parse({"torch_threads": raw}).torch_threads == value


@pytest.mark.parametrize("raw", ["-1", "two", "1.5", "1025"])
def test_bad_torch_threads_are_refused(raw: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        settings.parse({"torch_threads": raw})
    assert "pgclip.torch_threads" in e.value.message
