"""The results of the fusion case (bench/fusion.py): its claims, and a markdown section that
``append`` adds to the results' .md after bench/report.py wrote it."""

from __future__ import annotations

from typing import Any

KINDS = ("visual", "text", "mixed", "all")


def _case(c: dict[str, Any]) -> dict[str, Any] | None:
    r = c.get("fusion", {}).get("all") if "fusion" in c else c
    return r if isinstance(r, dict) and "eval" in r else None


def _label(name: str, r: dict[str, Any]) -> str:
    t = r["tuning"]
    if name == "fixed tuned":
        w = t["best_fixed_image_weight"]
        return f"fixed, tuned (image {w:.1f} / title {1 - w:.1f})"
    if name == "attention":
        return f"attention (T = {t['default_temperature']})"
    if name == "gated":
        return "gated (fitted on the tuning queries' judgments)"
    return name


def targets(c: dict[str, Any]) -> list[dict[str, Any]]:
    r = _case(c)
    if r is None:
        return []
    e = r["eval"]
    fixed = max(e["fixed 0.5/0.5"]["all"]["ndcg"], e["fixed tuned"]["all"]["ndcg"])
    out = []
    for method in ("attention", "gated"):
        got = e[method]["all"]["ndcg"]
        out.append({"target": f"fusion: {method} beats the best fixed weight on held-out "
                              "queries (nDCG@10, mean of the kinds)",
                    "measured": f"{got:.3f} against {fixed:.3f}", "met": got > fixed})
    best_mixed = max(e["fixed 0.5/0.5"]["mixed"]["ndcg"], e["fixed tuned"]["mixed"]["ndcg"])
    for method in ("attention", "gated"):
        got = e[method]["mixed"]["ndcg"]
        out.append({"target": f"fusion: {method} beats the best fixed weight on mixed queries",
                    "measured": f"{got:.3f} against {best_mixed:.3f}", "met": got > best_mixed})
    for kind, single in (("visual", "image only"), ("text", "title only")):
        a, s = e["attention"][kind]["ndcg"], e[single][kind]["ndcg"]
        out.append({"target": f"fusion: attention keeps >= 90% of {single} on {kind} queries",
                    "measured": f"{a:.3f} against {s:.3f}", "met": a >= 0.9 * s})
    return out


def markdown(c: dict[str, Any]) -> str:
    r = _case(c)
    if r is None:
        err = c.get("fusion", {}).get("all", {}).get("error") if "fusion" in c else None
        return f"\n## Fusion\n\nerror: {err}\n" if err else ""
    e = r["eval"]
    q = r["queries"]
    rows = []
    for name, m in e.items():
        cells = [f"{m[k]['ndcg']:.3f} / {m[k]['recall']:.3f}" for k in KINDS]
        rows.append(f"| {_label(name, r)} | " + " | ".join(cells)
                    + f" | {r['ms_per_query'][name]:.1f} |")
    held = ", ".join(f"{q[k]['eval']} {k}" for k in ("visual", "text", "mixed"))
    tune = ", ".join(f"{q[k]['tune']} {k}" for k in ("visual", "text", "mixed"))
    t = r["tuning"]
    sweep = ", ".join(f"{w}: {v:.3f}" for w, v in t["fixed_image_weight"].items())
    temps = "\n".join(
        f"| {k} | " + " | ".join(f"{v[kind]['ndcg']:.3f}" for kind in KINDS) + " |"
        for k, v in t["attention_temperature"].items())
    claims = "\n".join(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |"
                       for t in targets(c))
    g = r["gate"]
    weights = ", ".join(f"{k} {v:.2f}" for k, v in g["mean_weights"].items())
    rel = ", ".join(f"{k} {v:.1f}" for k, v in r["relevant_per_query"].items())
    return (
        f"\n## Fusion: image and title of a generated shop\n\n"
        f"{r['products']} products (pgclip.shop, seed {r['seed']}): a photo (coloured shape) and "
        f"a title with the maker and the size, auto-embedded by pgclip-tiny. Held-out queries: "
        f"{held} (tuning: {tune}); relevant products per query: {rel}. nDCG@10 / recall@10, "
        f"\"all\" = mean of the three kinds; candidates = {r['candidates']} per field.\n\n"
        "| method | visual | text | mixed | all | ms/query |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n\n"
        f"Tuning half, nDCG@10 (all) by the image's fixed weight: {sweep}.\n\n"
        "Tuning half, nDCG@10 of attention by temperature:\n\n"
        "| temperature | visual | text | mixed | all |\n|---|---|---|---|---|\n"
        f"{temps}\n\n"
        f"Gate: {g['judgments']} judgments of {g['queries']} tuning queries, fitted in "
        f"{r['fit_seconds']:.1f} s; cross-entropy {g['loss']:.3f} (equal weights: "
        f"{g['loss_equal_weights']:.3f}); mean weights {weights}.\n\n"
        "| claim | measured | met |\n|---|---|---|\n" + claims + "\n"
    )

