"""Coverage-guided fuzzing of pgclip's image path outside PostgreSQL (atheris / libFuzzer).

Each input is a whole "file": it goes through :func:`pgclip.images.decode_image` with the
default limits and, when that returns an image, through :func:`pgclip.embedding.embed_images`
with the test model (pgclip-tiny): preprocessing, forward pass and normalisation, exactly as
``clip_embed_image`` does. A
:class:`pgclip.errors.PgclipError` is the expected outcome for bad bytes; any other
exception, a crash, a hang (``-timeout``) or a memory blow-up (``-rss_limit_mb``,
``-malloc_limit_mb``) is a finding, saved by libFuzzer as ``crash-*`` / ``timeout-*`` /
``oom-*`` under ``-artifact_prefix``.

Usage: ``make fuzz`` (see fuzz/README.md), or directly::

    python fuzz/fuzz_images.py [libFuzzer flags] CORPUS_DIR [SEED_DIR ...]

``python fuzz/fuzz_images.py --write-seeds DIR`` writes the seed corpus (the valid files
and the malformed ones of tests/hostile/corpus.py) and exits.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plpython"), str(ROOT)]

# Heavy, uninstrumented imports first: only the decoding path is worth coverage feedback.
# PIL and pgclip must not be imported before atheris instruments them (in main()).
import numpy  # noqa: E402
import torch  # noqa: E402


def write_seeds(out: Path) -> int:
    from tests.hostile import corpus

    out.mkdir(parents=True, exist_ok=True)
    # Not the "aspect" cases: they are a known finding (see fuzz/README.md) that would stop
    # every run at its first input until it is fixed.
    cases = [c for c in corpus.generate() if c.category != "aspect"]
    for i, case in enumerate(cases):
        (out / f"{i:05d}-{case.category}").write_bytes(case.data)
    return len(cases)


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--write-seeds":
        print(f"{write_seeds(Path(argv[2]))} seeds written to {argv[2]}")
        return

    import atheris

    with atheris.instrument_imports(include=["PIL", "pgclip"]):
        from PIL import Image  # noqa: F401

        from pgclip import embedding, images, loading, registry
        from pgclip.errors import PgclipError

    # Pillow warns (UserWarning) about many corrupt headers; decode_image turns the one that
    # matters (DecompressionBombWarning) into an error itself.
    warnings.simplefilter("ignore", UserWarning)
    logging.getLogger("PIL").setLevel(logging.CRITICAL)
    torch.set_num_threads(1)
    lm = loading.get_model(loading.model_key(registry.TINY_MODEL, "", "cpu", "fp32"))
    limits = images.ImageLimits()

    def one_input(data: bytes) -> None:
        try:
            img = images.decode_image(data, limits)
        except PgclipError:
            return
        if img.mode != "RGB" or img.width < 1 or img.height < 1:
            raise AssertionError(f"decode_image returned a {img.mode} {img.size} image")
        # The server's own path from image to vector: preprocessing, forward pass, normalising.
        vec = embedding.embed_images(lm, [img])
        if vec.shape != (1, lm.embed_dim) or not numpy.isfinite(vec).all():
            raise AssertionError(f"embedding gave {vec.shape}: {vec}")

    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
