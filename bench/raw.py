"""The baseline: open_clip in a plain Python process, driven by the benchmark over stdin/stdout
(one JSON command per line, one JSON reply per line). Run as ``python -m bench.raw``.

Commands: ``load`` (how: ``import`` = only import torch and open_clip, ``open_clip`` = its own
create_model_and_transforms, ``pgclip`` = pgclip.loading's fast path), ``embed_images`` /
``embed_texts`` (decode or tokenise, forward, normalise; batch 1 or N),
``embed_images_loader`` (the same for images, decoded and preprocessed by a torch
``DataLoader``'s worker processes while this one runs the forward passes), ``quit``.
"""

from __future__ import annotations

import io
import time
from typing import Any

from bench.worker_loop import serve

_state: dict[str, Any] = {}


def _load(how: str, model: str, pretrained: str, precision: str = "fp32") -> dict[str, Any]:
    t0 = time.perf_counter()
    import open_clip
    import torch

    t_import = time.perf_counter() - t0
    if how == "import":
        return {"import": t_import}
    from pgclip import loading, registry

    registry.register_configs()
    path = pretrained or str(registry.TINY_WEIGHTS)
    t1 = time.perf_counter()
    if how == "open_clip":
        m, _, preprocess = open_clip.create_model_and_transforms(
            model, pretrained=path, precision=precision, weights_only=True)
        m.eval()
        tokenizer = open_clip.get_tokenizer(model)
    else:
        lm = loading.load_model(loading.model_key(model, pretrained, "cpu", precision))
        m, preprocess, tokenizer = lm.model, lm.preprocess, lm.tokenizer
    _state.update(model=m, preprocess=preprocess, tokenizer=tokenizer,
                  dtype=m.visual.conv1.weight.dtype if hasattr(m.visual, "conv1") else None)
    torch.set_grad_enabled(False)
    return {"import": t_import, "load": time.perf_counter() - t1,
            "threads": torch.get_num_threads()}


def _embed_images(files: list[str], batch: int) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from PIL import Image

    data = [open(f, "rb").read() for f in files]
    m, preprocess, dtype = _state["model"], _state["preprocess"], _state["dtype"]
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for i in range(0, len(data), batch):
            imgs = [Image.open(io.BytesIO(b)).convert("RGB") for b in data[i:i + batch]]
            x = torch.stack([preprocess(im) for im in imgs])
            if dtype is not None and dtype != torch.float32:
                x = x.to(dtype)
            F.normalize(m.encode_image(x).float(), dim=-1).numpy()
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "n": len(data)}


class _Jpegs:
    """A map-style dataset of JPEG files held in memory: decode and preprocess one."""

    def __init__(self, data: list[bytes], preprocess: Any) -> None:
        self.data, self.preprocess = data, preprocess

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> Any:
        from PIL import Image

        return self.preprocess(Image.open(io.BytesIO(self.data[i])).convert("RGB"))


_loaders: dict[tuple[tuple[str, ...], int, int], Any] = {}


def _embed_images_loader(files: list[str], batch: int, workers: int, threads: int
                         ) -> dict[str, Any]:
    """A DataLoader with ``workers`` processes (kept between calls, so that only the first call
    pays for starting them) feeds forward passes on ``threads`` torch threads."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    key = (tuple(files), batch, workers)
    if key not in _loaders:
        data = [open(f, "rb").read() for f in files]
        _loaders[key] = DataLoader(_Jpegs(data, _state["preprocess"]),  # type: ignore[arg-type]
                                   batch_size=batch, num_workers=workers,
                                   persistent_workers=workers > 0)
    torch.set_num_threads(threads)
    m, dtype = _state["model"], _state["dtype"]
    t0, c0, n = time.perf_counter(), time.process_time(), 0
    with torch.inference_mode():
        for x in _loaders[key]:
            if dtype is not None and dtype != torch.float32:
                x = x.to(dtype)
            F.normalize(m.encode_image(x).float(), dim=-1).numpy()
            n += len(x)
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "n": n}


def _embed_texts(texts: list[str], batch: int) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    m, tokenizer = _state["model"], _state["tokenizer"]
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            F.normalize(m.encode_text(tokenizer(texts[i:i + batch])).float(), dim=-1).numpy()
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "n": len(texts)}


def main() -> None:
    serve({"load": _load, "embed_images": _embed_images,
           "embed_images_loader": _embed_images_loader, "embed_texts": _embed_texts})


if __name__ == "__main__":
    main()
