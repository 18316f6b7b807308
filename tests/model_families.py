"""The model families open_clip ships pretrained weights for, one representative each (the
smallest of its family), as the family tests and ``make bench`` (bench/families.py) load them.

Nothing here needs the network. Each representative gets random weights, written once as a
safetensors file (``torch.manual_seed(0)``, then ``open_clip.create_model``), and reference
outputs of open_clip's own model for a probe image, probe texts and the prompts of a zero-shot
classification; both live in a cache outside the checkout that survives runs and that the
postgres OS user can read (:func:`cache_root`). References are recomputed when anything they
depend on changes (package versions, probes, the weights file, the tokenizer files).

Hugging Face: three text towers build their architecture from a Hugging Face *model config*
(``AutoConfig.from_pretrained``). This project authors those config.json files
(``tests/hf_configs/``, the hyperparameters as published with xlm-roberta-base, roberta-base and
facebook/nllb-200-distilled-600M) and puts them into an offline Hugging Face cache
(:func:`hf_home`, hub layout) that the tests' server reads through ``HF_HOME``. Their tokenizer
files are not there: text through those models fails with 58P01, which the tests check. The
cache also holds a stand-in tokenizer for ``timm/ViT-B-16-SigLIP`` (:func:`write_siglip_stand_in`)
so that a SigLIP model's text tower and its sigmoid scoring are compared with open_clip's.

Writing the weights and references runs in a subprocess (``python -m tests.model_families
write NAME...``), with ``HF_HOME`` set, so that the caller's own imports (which fix the Hugging
Face cache at import time) and memory are not involved.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HF_CONFIGS = Path(__file__).resolve().parent / "hf_configs"
CACHE_ENV = "PGCLIP_TEST_CACHE"
DEFAULT_CACHE = Path("/tmp/pgclip-test-cache")
SIGLIP_STAND_IN = "timm/ViT-B-16-SigLIP"
STAND_IN_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")
OPEN_CLIP_BPE = "open_clip BPE"  # the tokenizer (and vocabulary) open_clip ships


@dataclass(frozen=True)
class Family:
    model: str  # open_clip's architecture name: the family's smallest with pretrained weights
    family: str
    scoring: str  # "softmax" (CLIP) or "sigmoid" (SigLIP: logit_scale and logit_bias)
    tokenizer: str  # OPEN_CLIP_BPE or the Hugging Face repository of its tokenizer
    tokenizer_offline: bool  # its tokenizer is in the test cache (or ships with open_clip)

    @property
    def hf_tokenizer(self) -> str | None:
        return None if self.tokenizer == OPEN_CLIP_BPE else self.tokenizer


FAMILIES: tuple[Family, ...] = (
    Family("ViT-B-32", "OpenAI / LAION ViT", "softmax", OPEN_CLIP_BPE, True),
    Family("RN50", "ModifiedResNet", "softmax", OPEN_CLIP_BPE, True),
    Family("convnext_base", "ConvNeXt (timm)", "softmax", OPEN_CLIP_BPE, True),
    # The stand-in tokenizer: a tiny vocabulary trained here, not SigLIP's own.
    Family("ViT-B-16-SigLIP", "SigLIP", "sigmoid", SIGLIP_STAND_IN, True),
    Family("ViT-B-32-SigLIP2-256", "SigLIP 2", "sigmoid", "timm/ViT-B-32-SigLIP2-256", False),
    Family("MobileCLIP-S1", "MobileCLIP", "softmax", OPEN_CLIP_BPE, True),
    Family("MobileCLIP2-S0", "MobileCLIP2", "softmax", OPEN_CLIP_BPE, True),
    Family("MobileCLIP-B", "MobileCLIP (timm ViT hybrid)", "softmax", OPEN_CLIP_BPE, True),
    Family("EVA02-B-16", "EVA (timm)", "softmax", OPEN_CLIP_BPE, True),
    Family("PE-Core-T-16-384", "Perception Encoder", "softmax", OPEN_CLIP_BPE, True),
    Family("ViTamin-S", "ViTamin", "softmax", OPEN_CLIP_BPE, True),
    Family("coca_ViT-B-32", "CoCa", "softmax", OPEN_CLIP_BPE, True),
    Family("ViT-L-14-CLIPA", "CLIPA", "softmax", "bert-base-uncased", False),
    Family("xlm-roberta-base-ViT-B-32", "Hugging Face text tower: XLM-RoBERTa", "softmax",
           "xlm-roberta-base", False),
    Family("roberta-ViT-B-32", "Hugging Face text tower: RoBERTa", "softmax", "roberta-base",
           False),
    Family("nllb-clip-base", "Hugging Face text tower: NLLB", "softmax",
           "facebook/nllb-200-distilled-600M", False),
)
BY_MODEL = {f.model: f for f in FAMILIES}

PROBE_TEXTS = ("a red circle", "a photo of a small blue square on a white background",
               "红色的圆形")
CLASSIFY_LABELS = ("red circle", "blue square", "green triangle")
# pgclip.classify.DEFAULT_TEMPLATES, what clip_classify uses when none are given.
CLASSIFY_TEMPLATES = ("a photo of a {}.", "a photo of the {}.", "an image of a {}.")


def prompts() -> list[str]:
    """The prompts of clip_classify(image, CLASSIFY_LABELS), grouped by label."""
    return [t.replace("{}", label) for label in CLASSIFY_LABELS for t in CLASSIFY_TEMPLATES]


# --- where things live ----------------------------------------------------------------------

def cache_root() -> Path:
    """``$PGCLIP_TEST_CACHE`` or /tmp/pgclip-test-cache (tests run as postgres with HOME=/tmp)."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def weights_dir() -> Path:
    return cache_root() / "families" / f"open_clip-{_version('open_clip_torch')}"


def hf_home() -> Path:
    """The Hugging Face home of the tests (HF_HOME); its hub cache is ``hf_home() / "hub"``."""
    return cache_root() / "hf"


def weights_path(model: str) -> Path:
    return weights_dir() / f"{model}-random.safetensors"


def _shared_dir(path: Path) -> Path:
    """A folder that the tests (postgres) and `make bench` (often root) both write and the
    server reads: each folder this creates is world-writable with the sticky bit, like /tmp."""
    root = cache_root()
    for p in reversed([path, *path.parents]):
        if p == root or root in p.parents:
            try:
                p.mkdir(parents=True)
            except FileExistsError:
                continue
            os.chmod(p, 0o1777)
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a new file and rename it into place: never rewrite a file that a backend may map."""
    _shared_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "none"


# --- the offline Hugging Face cache ---------------------------------------------------------

def _hub_snapshot(repo: str, files: dict[str, bytes]) -> None:
    """``files`` as the hub cache holds a download of ``repo``: snapshots/<rev>/ + refs/main.
    The revision is a digest of the files, so changed content is a new snapshot."""
    rev = hashlib.sha1(b"".join(k.encode() + v for k, v in sorted(files.items()))).hexdigest()
    folder = hf_home() / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / rev
    for name, data in files.items():
        if not (snapshot / name).is_file():
            _write_atomic(snapshot / name, data)
    ref = folder / "refs" / "main"
    if not ref.is_file() or ref.read_text() != rev:
        _write_atomic(ref, rev.encode())


def hf_config_repos() -> list[str]:
    """The repositories whose config.json this project authors (tests/hf_configs/)."""
    return sorted(p.stem.replace("--", "/") for p in HF_CONFIGS.glob("*.json"))


def prepare_hf_home() -> Path:
    """Fill the tests' Hugging Face cache (idempotent; cheap when it is filled)."""
    for path in sorted(HF_CONFIGS.glob("*.json")):
        _hub_snapshot(path.stem.replace("--", "/"), {"config.json": path.read_bytes()})
    write_siglip_stand_in()
    return hf_home()


def write_siglip_stand_in() -> None:
    """A STAND-IN for SigLIP's tokenizer under its repository name (``timm/ViT-B-16-SigLIP``):
    a Unigram tokenizer with a tiny vocabulary trained here on the probe texts and shape
    captions, with SigLIP's special tokens (``</s>`` ends every text and pads). It is not
    SigLIP's tokenizer; it lets the text tower and the sigmoid scoring run offline."""
    folder = hf_home() / "hub" / f"models--{SIGLIP_STAND_IN.replace('/', '--')}"
    ref = folder / "refs" / "main"
    if ref.is_file() and all((folder / "snapshots" / ref.read_text() / name).is_file()
                             for name in STAND_IN_FILES):
        return  # written once (a new vocabulary would make every SigLIP reference stale)
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    from pgclip import shapes

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<pad>", "</s>", "<unk>"]
    corpus = [*PROBE_TEXTS, *prompts()]
    corpus += [f"a {size} {color} {shape} on a {bg} background" for size in shapes.SIZES
               for color in shapes.COLORS for shape in shapes.SHAPES for bg in shapes.BACKGROUNDS]
    tok.train_from_iterator(corpus, trainers.UnigramTrainer(
        vocab_size=200, special_tokens=specials, unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 64,
              "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>",
              "comment": "pgclip test stand-in with a tiny vocabulary, not SigLIP's tokenizer"}
    # transformers' AutoTokenizer reads the repository's config.json too: timm's, as on the hub.
    model_config = {"architecture": "vit_base_patch16_siglip_224", "num_classes": 0}
    files = {"config.json": model_config, "tokenizer_config.json": config}
    _hub_snapshot(SIGLIP_STAND_IN, {"tokenizer.json": tok.to_str().encode(),
                                    **{k: json.dumps(v, indent=1).encode()
                                       for k, v in files.items()}})


# --- probes ---------------------------------------------------------------------------------

def probe_png() -> bytes:
    """A generated, non-square PNG (deterministic): what the tests send to clip_embed_image."""
    from pgclip import shapes

    rng = random.Random(14)
    spec = shapes.ShapeSpec("red", "circle", "large", "gray")
    img = shapes.render(spec, rng, pixels=200).resize((320, 200))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


# --- weights and references -----------------------------------------------------------------

def _tokenizer_digest(family: Family) -> str:
    if family.hf_tokenizer is None:
        return "bpe"
    repo = hf_home() / "hub" / f"models--{family.hf_tokenizer.replace('/', '--')}"
    ref = repo / "refs" / "main"
    return ref.read_text() if ref.is_file() else "missing"


def fingerprint(model: str) -> str:
    """What the reference outputs of ``model`` depend on, as a short digest."""
    weights = weights_path(model)
    stat = weights.stat()
    parts = {
        "packages": [_version(p) for p in ("torch", "open_clip_torch", "timm", "transformers",
                                           "tokenizers", "pillow", "numpy")],
        "weights": [stat.st_size, stat.st_mtime_ns],
        "tokenizer": _tokenizer_digest(BY_MODEL[model]),
        "probes": [hashlib.sha256(probe_png()).hexdigest(), PROBE_TEXTS, prompts()],
    }
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _reference_path(model: str) -> Path:
    return weights_dir() / f"{model}-random.reference.json"


def _current_reference(model: str) -> dict[str, Any] | None:
    path = _reference_path(model)
    if not weights_path(model).is_file() or not path.is_file():
        return None
    ref = json.loads(path.read_text())
    return ref if ref.get("fingerprint") == fingerprint(model) else None


def ensure(models: list[str] | tuple[str, ...]) -> dict[str, float]:
    """Write whatever is missing or stale (weights, references) for ``models``, in one
    subprocess. Returns the seconds it took (0.0 when everything was there)."""
    todo = [m for m in models if _current_reference(m) is None]
    if not todo:
        return {"seconds": 0.0}
    import time

    t = time.perf_counter()
    env = {**os.environ, "HF_HOME": str(prepare_hf_home()), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plpython")])}
    subprocess.run([sys.executable, "-m", "tests.model_families", "write", *todo],
                   cwd=ROOT, env=env, check=True)
    return {"seconds": time.perf_counter() - t, "written": len(todo)}


def random_weights(model: str) -> Path:
    """The random-weights checkpoint of ``model``, written once (0644)."""
    ensure([model])
    return weights_path(model)


def reference(model: str) -> dict[str, Any]:
    """open_clip's outputs for the probes with the weights of :func:`random_weights`:
    ``image`` (unit vector), ``texts`` and ``prompts`` (text -> unit vector; absent when the
    tokenizer is not offline), ``logit_scale`` (exp'd), ``logit_bias`` (None for softmax)."""
    ensure([model])
    ref = _current_reference(model)
    assert ref is not None, f"no reference for {model}"
    return ref


def _write(model: str) -> None:
    """In the subprocess: weights (if missing) and the reference of ``model``."""
    import time

    from pgclip import runtime

    torch = runtime.import_torch()  # MKL's strict mode and the OpenMP policy of a backend
    import open_clip
    import torch.nn.functional as F
    from PIL import Image
    from safetensors.torch import save_file

    family = BY_MODEL[model]
    path = weights_path(model)
    t = time.perf_counter()
    if path.is_file():  # open_clip's own loading of the file
        built, _, preprocess = open_clip.create_model_and_transforms(
            model, pretrained=str(path), weights_only=True)
        how = "loaded"
    else:
        torch.manual_seed(0)
        # pretrained_text=False: a Hugging Face text tower from its config, no download.
        built, _, preprocess = open_clip.create_model_and_transforms(
            model, pretrained=None, pretrained_text=False)
        _shared_dir(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({k: v.contiguous() for k, v in built.state_dict().items()}, str(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        how = "written"
    built.eval()
    ref: dict[str, Any] = {"fingerprint": fingerprint(model), "model": model}
    image = Image.open(io.BytesIO(probe_png())).convert("RGB")
    with torch.inference_mode():
        ref["image"] = F.normalize(built.encode_image(preprocess(image)[None]), dim=-1)[0].tolist()
        ref["logit_scale"] = float(built.logit_scale.exp())
        bias = getattr(built, "logit_bias", None)
        ref["logit_bias"] = None if bias is None else float(bias)
        if family.tokenizer_offline:
            tokenizer = open_clip.get_tokenizer(model)
            for key, texts in (("texts", list(PROBE_TEXTS)), ("prompts", prompts())):
                vectors = F.normalize(built.encode_text(tokenizer(texts)), dim=-1)
                ref[key] = dict(zip(texts, vectors.tolist(), strict=True))
    ref["seconds"] = time.perf_counter() - t
    _write_atomic(_reference_path(model), json.dumps(ref).encode())
    print(f"[model_families] {model}: weights {how}, reference in {ref['seconds']:.1f}s",
          flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "write":
        sys.exit("usage: python -m tests.model_families write MODEL...")
    for name in sys.argv[2:]:
        _write(name)
