"""The fast path (pgclip.mapped_load) against open_clip's own loading, family by family.

Building on the meta device and assigning the checkpoint's tensors leaves out whatever open_clip
creates at construction and does not save (masks, position ids, rotary tables, tensors computed
from others); the fast path is allowed only for the families in ``mapped_load.FAST_FAMILIES``,
and this module checks each of them: random weights written once as safetensors and as a torch
checkpoint, loaded both ways, every tensor of the model (parameters, buffers, plain tensor
attributes) and the outputs of encode_text / encode_image on a fixed input compared bit for bit,
at fp32 and bf16.

Most cases shrink the towers of a built-in config (width, depth; timm trunks are kept as they
are, since a timm name fixes the size), so that every family runs in seconds on two cores; the
``slow`` cases load built-in configs as shipped, at fp32 only.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from pgclip import loading, mapped_load, registry, runtime

# What a backend does before its first forward pass: MKL's strict reproducible mode, without which
# weights mapped at the file's alignment round differently (see pgclip.runtime). MKL reads it at
# its first call, and collection imports this module before any test runs.
runtime.import_torch()


@dataclass(frozen=True)
class Case:
    family: str  # what mapped_load.architecture_family says of the config
    config: str  # open_clip's built-in config it is made from
    full_size: bool = False  # the config as shipped; else its towers shrunk
    slow: bool = False  # then at fp32 only

    @property
    def model(self) -> str:
        """The name it is registered under with open_clip."""
        return self.config if self.full_size else f"pgclip-test-{self.config}"


CASES = [
    Case("CLIP/vit/text", "ViT-B-32"),
    Case("CLIP/vit/text", "ViT-S-32-alt", full_size=True),  # small enough as it is
    Case("CLIP/vit/text", "ViT-L-14-CLIPA"),
    Case("CLIP/modified-resnet/text", "RN50"),
    Case("CLIP/timm:convnext/text", "convnext_tiny"),
    Case("CLIP/timm:vision_transformer/text", "vit_medium_patch16_gap_256"),
    Case("CustomTextCLIP/timm:vision_transformer/text", "ViT-B-16-SigLIP"),
    Case("CustomTextCLIP/timm:vision_transformer_hybrid/text", "MobileCLIP-B"),
    Case("CustomTextCLIP/timm:fastvit/text", "MobileCLIP2-S0"),
    Case("CustomTextCLIP/timm:vitamin/text", "ViTamin-S"),
    Case("CoCa/vit/text", "coca_ViT-B-32"),
    Case("CLIP/vit/text", "ViT-B-32", full_size=True, slow=True),  # the default model
    Case("CLIP/modified-resnet/text", "RN50", full_size=True, slow=True),
]
PARAMS = [
    pytest.param(case, precision, id=f"{case.model}-{precision}",
                 marks=[pytest.mark.slow] if case.slow else [])
    for case in CASES for precision in (("fp32",) if case.slow else ("fp32", "bf16"))
]


def _shrink(config: dict[str, Any]) -> dict[str, Any]:
    """The same architecture with narrow, shallow towers (open_clip's own modules only)."""
    config = copy.deepcopy(config)
    vision, text = config["vision_cfg"], config["text_cfg"]
    text.update(width=32, heads=2, layers=1)
    # The tests feed token ids, not text: no tokenizer (a Hugging Face one needs the network).
    text.pop("hf_tokenizer_name", None)
    text.pop("tokenizer_kwargs", None)
    if "multimodal_cfg" in config:
        config["multimodal_cfg"].update(width=32, heads=2, layers=1, attn_pooler_heads=2)
    if "timm_model_name" not in vision:
        if isinstance(vision["layers"], list):  # ModifiedResNet: its attention pool is 32x wide
            vision.update(layers=[1, 1, 1, 1], width=4)
        else:
            vision.update(width=64, layers=1, head_width=32)
            if "attn_pooler_heads" in vision:
                vision["attn_pooler_heads"] = 2
    if vision.get("timm_proj") != "none":  # else the trunk's width is the embedding's
        config["embed_dim"] = 32
    return config


@pytest.fixture(scope="module")
def open_clip_configs() -> Iterator[pytest.MonkeyPatch]:
    """Miniature configs registered with open_clip until the module ends."""
    registry.register_configs()
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _register(mp: pytest.MonkeyPatch, name: str, config: dict[str, Any]) -> None:
    mp.setitem(open_clip.factory._MODEL_CONFIGS, name, config)


@dataclass
class Checkpoint:
    model: str
    safetensors: str
    torch_file: str
    write_seconds: float


def _random_weights(model_name: str) -> dict[str, torch.Tensor]:
    """open_clip's initialisation, moved off its initial values (zero biases, unit norms, batch
    norm statistics) with the signs kept, so that variances stay positive."""
    torch.manual_seed(0)
    model = open_clip.create_model(model_name, pretrained_image=False, pretrained_text=False)
    gen = torch.Generator().manual_seed(1)
    weights = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().clone()
        if tensor.is_floating_point():
            tensor = tensor * (1 + 0.1 * torch.rand(tensor.shape, generator=gen)) \
                + 0.01 * torch.rand(tensor.shape, generator=gen)
        weights[key] = tensor.contiguous()
    return weights


@pytest.fixture(scope="module")
def checkpoints(open_clip_configs: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Callable[[Case], Checkpoint]]:
    """A case's random weights, written once in both formats the fast path maps; the files of
    one case at a time are kept (the tests come in case order)."""
    kept: dict[Case, Checkpoint] = {}

    def remove() -> None:
        for written in kept.values():
            Path(written.safetensors).unlink()
            Path(written.torch_file).unlink()
        kept.clear()

    def get(case: Case) -> Checkpoint:
        if case not in kept:
            remove()
            kept[case] = _write_checkpoint(case, open_clip_configs, tmp_path_factory)
        return kept[case]

    yield get
    remove()


def _write_checkpoint(case: Case, mp: pytest.MonkeyPatch, tmp: pytest.TempPathFactory
                      ) -> Checkpoint:
    t = time.perf_counter()
    if not case.full_size:
        _register(mp, case.model, _shrink(open_clip.get_model_config(case.config)))
    assert mapped_load.architecture_family(open_clip.get_model_config(case.model)) == case.family
    assert case.family in mapped_load.FAST_FAMILIES
    weights = _random_weights(case.model)
    folder = tmp.mktemp(case.model)
    safetensors, torch_file = folder / "weights.safetensors", folder / "weights.pt"
    save_file(weights, safetensors)
    # As DDP training saves them: "module." prefixes, under "state_dict".
    torch.save({"state_dict": {f"module.{k}": v for k, v in weights.items()}}, torch_file)
    return Checkpoint(case.model, str(safetensors), str(torch_file), time.perf_counter() - t)


@pytest.fixture(scope="module")
def alignment_independent_math() -> None:
    """A batch-1 product with its weights at 4-byte alignment equals the one at 64 bytes."""
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(1, 768, generator=gen), torch.randn(512, 768, generator=gen)
    raw = torch.empty(w.numel() * 4 + 128, dtype=torch.uint8)
    start = (-raw.data_ptr()) % 64 + 4
    w4 = raw[start:start + w.numel() * 4].view(torch.float32).view(w.shape)
    w4.copy_(w)
    if not torch.equal(torch.nn.functional.linear(x, w4), torch.nn.functional.linear(x, w)):
        pytest.fail("MKL started before pgclip.runtime set MKL_CBWR: run with "
                    "MKL_CBWR=AUTO,STRICT in the environment")


def _all_tensors(model: Any) -> dict[str, torch.Tensor]:
    """Everything a forward pass can read: state dict, buffers (persistent or not), and tensors
    kept as plain module attributes."""
    found = {f"state_dict {k}": v for k, v in model.state_dict(keep_vars=True).items()}
    found.update({f"buffer {k}": v for k, v in model.named_buffers(remove_duplicate=False)})
    for mod_name, module in model.named_modules(remove_duplicate=False):
        found.update({f"attribute {mod_name}.{a}": v for a, v in vars(module).items()
                      if isinstance(v, torch.Tensor)})
    return found


def _assert_identical(fast: Any, reference: Any) -> None:
    a, b = _all_tensors(fast), _all_tensors(reference)
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        other = b[name]
        assert (tensor.dtype, tensor.shape, tensor.device, tensor.requires_grad) == \
            (other.dtype, other.shape, other.device, other.requires_grad), name
        assert torch.equal(tensor, other), name
    assert [type(m) for m in fast.modules()] == [type(m) for m in reference.modules()]


def _outputs(model: Any, model_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """encode_text and encode_image of fixed random token ids and pixels."""
    text_cfg = open_clip.get_model_config(model_name)["text_cfg"]
    size = model.visual.image_size
    size = size if isinstance(size, tuple) else (size, size)
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randint(1, text_cfg.get("vocab_size", 49408),
                           (2, text_cfg.get("context_length", 77)), generator=gen)
    # As pgclip.embedding does: at fp16/bf16 open_clip converts convolutions and linear layers.
    dtype = next(m.weight.dtype for m in model.visual.modules()
                 if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))
    pixels = torch.randn(1, 3, *size, generator=gen).to(dtype)
    with torch.inference_mode():
        return model.encode_text(tokens), model.encode_image(pixels)


def _outputs_or_error(model: Any, model_name: str) -> tuple[torch.Tensor, ...] | str:
    """The outputs, or the error the model raises (open_clip's CoCa text tower at bf16)."""
    try:
        return _outputs(model, model_name)
    except RuntimeError as e:
        return f"{type(e).__name__}: {e}"


@pytest.mark.parametrize(("case", "precision"), PARAMS)
def test_fast_path_is_bit_identical(case: Case, precision: str,
                                    checkpoints: Callable[[Case], Checkpoint],
                                    alignment_independent_math: None,
                                    record_property: Any) -> None:
    checkpoint = checkpoints(case)
    t = time.perf_counter()
    reference, _, ref_preprocess = open_clip.create_model_and_transforms(
        checkpoint.model, pretrained=checkpoint.safetensors, device="cpu", precision=precision,
        require_pretrained=True, weights_only=True)
    reference.eval()
    ref_outputs = _outputs_or_error(reference, checkpoint.model)
    for path, load_path in [(checkpoint.safetensors, mapped_load.PATH_SAFETENSORS),
                            (checkpoint.torch_file, mapped_load.PATH_TORCH)]:
        model, preprocess, got_path = mapped_load.load_mapped(
            checkpoint.model, path, precision, "cpu", {})
        model.eval()
        assert got_path == load_path
        _assert_identical(model, reference)
        assert repr(preprocess) == repr(ref_preprocess)
        outputs = _outputs_or_error(model, checkpoint.model)
        if isinstance(ref_outputs, str):
            assert outputs == ref_outputs
        else:
            for got, want in zip(outputs, ref_outputs, strict=True):
                assert torch.equal(got, want)
        del model
    record_property("seconds", round(time.perf_counter() - t, 2))
    record_property("write_seconds", round(checkpoint.write_seconds, 2))


def test_every_fast_family_is_tested() -> None:
    """The allow-list cannot grow without a case here."""
    assert {case.family for case in CASES} == mapped_load.FAST_FAMILIES


@pytest.mark.parametrize(("config", "family"), [
    ("EVA02-B-16", "CustomTextCLIP/timm:eva/text"),  # rotary tables: not in checkpoints
    ("PE-Core-T-16-384", "CustomTextCLIP/timm:eva/text"),
    ("swin_base_patch4_window7_224", "CLIP/timm:swin_transformer/text"),
    ("vit_relpos_medium_patch16_cls_224", "CLIP/timm:vision_transformer_relpos/text"),
    ("roberta-ViT-B-32", "CustomTextCLIP/vit/hf"),
    ("coca_roberta-ViT-B-32", "CoCa/vit/hf"),
    ("nllb-clip-base-siglip", "CustomTextCLIP/timm:vision_transformer/hf"),
])
def test_untested_families_are_not_fast(config: str, family: str) -> None:
    assert mapped_load.architecture_family(open_clip.get_model_config(config)) == family
    assert family not in mapped_load.FAST_FAMILIES


def test_untested_family_falls_back_to_open_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    """A family outside the allow-list loads through open_clip, saying why."""
    monkeypatch.setattr(loading, "_cache", type(loading._cache)())
    monkeypatch.setattr(mapped_load, "FAST_FAMILIES", frozenset())
    lm = loading.load_model(loading.model_key(registry.TINY_MODEL, "", "cpu", "fp32"))
    assert lm.load_path == loading.PATH_OPEN_CLIP
    assert "CLIP/vit/text" in lm.fallback_reason and "not one the fast path" in lm.fallback_reason
    assert "construct" not in lm.timings  # declined before building anything


def test_timm_image_tower_has_an_embedding_width(open_clip_configs: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """A CustomTextCLIP with a timm image tower has neither text_projection nor
    visual.output_dim; LoadedModel.embed_dim comes from the config."""
    name = "pgclip-test-timm-tower"  # no "siglip" in it: open_clip picks tokenizers by name
    config = _shrink(open_clip.get_model_config("ViT-B-16-SigLIP"))
    config["vision_cfg"]["timm_model_name"] = "vit_tiny_patch16_224"
    config["embed_dim"] = 192  # vit_tiny's width, since timm_proj is "none"
    _register(open_clip_configs, name, config)
    path = tmp_path / "weights.safetensors"
    save_file(_random_weights(name), path)
    lm = loading.load_model(loading.model_key(name, str(path), "cpu", "fp32"))
    assert lm.load_path == mapped_load.PATH_SAFETENSORS
    text, image = _outputs(lm.model, name)
    assert lm.embed_dim == text.shape[1] == image.shape[1] == 192
