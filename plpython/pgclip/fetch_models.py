"""Fill the Hugging Face cache with everything some models need, so that a server runs offline.

    python -m pgclip.fetch_models ViT-B-32:laion2b_s34b_b79k \
        xlm-roberta-base-ViT-B-32:laion5b_s13b_b90k

For each ``model:tag`` this builds the model with its pretrained weights and its tokenizer, as a
backend will, so that whatever they read from the hub (weights, a Hugging Face text tower's
``config.json``, tokenizer files) lands in the cache ``HF_HOME`` names. Then a server started
with ``HF_HUB_OFFLINE=1`` and the same ``HF_HOME`` loads them without network access.
``Dockerfile.postgres-gpu`` runs it at build time (``--build-arg PGCLIP_MODELS=...``).
With ``HF_HUB_OFFLINE=1`` it checks the cache instead, and fails naming what is missing.
"""

from __future__ import annotations

import argparse
import sys
import time

from pgclip import loading, registry
from pgclip.errors import PgclipError


def fetch(spec: str) -> str:
    """Load ``model[:tag]`` and its tokenizer on the CPU; a line saying what was loaded."""
    model, _, tag = spec.partition(":")
    t = time.perf_counter()
    lm = loading.load_model(loading.model_key(model, tag, "cpu", "fp32"))
    lm.tokenizer(["pgclip"])  # the tokenizer's files too, not only the weights
    towers = registry.towers(model)
    return (f"{model}:{tag or registry.DEFAULT_TAGS.get(model, '')} {lm.embed_dim}-d, "
            f"scoring {lm.scoring}, text {towers.text}, tokenizer {towers.tokenizer} "
            f"({time.perf_counter() - t:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="MODEL[:TAG]")
    args = parser.parse_args(argv)
    failed = 0
    for spec in args.models:
        try:
            print(f"[fetch] {fetch(spec)}", flush=True)
        except PgclipError as e:
            failed += 1
            print(f"[fetch] {spec}: pgclip: {e.message}\n  HINT: {e.hint}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
