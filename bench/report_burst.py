"""The results of the burst case (bench/burst.py): targets and a markdown section for
bench/report.py."""

from __future__ import annotations

from typing import Any

from bench.report_scale import _f, _keyed, _table

LABELS = {"direct": "direct, cold backends", "cap": "direct, max_model_backends = {cap}",
          "pool": "pgbouncer, warm pool of {size}"}


def _bursts(s: dict[str, Any]) -> dict[str, Any]:
    return s.get("bursts", {}) if isinstance(s, dict) else {}


def targets(c: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for model, r in _keyed(c, "burst"):
        sc = r.get("scenarios", {})
        cap = sc.get("cap", {})
        for n, b in _bursts(cap).items():
            heavy = b["memory"].get("peak_backends_over_100_mib")
            others = {k: v for k, v in b["errors"].items() if k != "53000"}
            out.append({"target": f"{model}, burst of {n}, max_model_backends = {cap['cap']}: "
                                  f"never more than {cap['cap']} backends with torch imported "
                                  "(> 100 MiB private, /proc); every client served or "
                                  "refused with 53000",
                        "measured": f"peak {heavy} such backends; {b['served']}/{n} served"
                                    + (f", errors {b['errors']}" if b["errors"] else ""),
                        "met": heavy is not None and heavy <= cap["cap"] and not others})
        pool = sc.get("pool", {})
        for n, b in _bursts(pool).items():
            out.append({"target": f"{model}, burst of {n} through pgbouncer (warm pool of "
                                  f"{pool['default_pool_size']}): every client served by the "
                                  "warm server backends (none opened)",
                        "measured": f"{b['served']}/{n} served, max "
                                    f"{_f(b['first_vector_max_s'], 2)} s; "
                                    f"{b['server_backends_after']} server backends after",
                        "met": b["served"] == b["clients"]
                        and b["server_backends_after"] <= pool["server_backends_warm"]})
    return out


def _x(r: float | None) -> str:
    """A ratio; a small one also as 1/N."""
    if r is None:
        return "-"
    return f"{r:.4f} x (1/{1 / r:,.0f})" if 0 < r < 0.1 else f"{r:.2f} x"


def _mem(b: dict[str, Any], key: str, digits: int = 0) -> str:
    return _f(b["memory"].get(key), digits) if isinstance(b.get("memory"), dict) else "-"


def markdown(c: dict[str, Any]) -> str:
    parts = []
    for model, r in _keyed(c, "burst"):
        if "scenarios" not in r:
            parts.append(f"\n## 10. Burst of new connections, {model}: failed: "
                         f"{r.get('error')}\n")
            continue
        rows, notes = [], []
        for name, s in r["scenarios"].items():
            label = LABELS[name].format(cap=s.get("cap"), size=s.get("default_pool_size"))
            if "skipped" in s or "error" in s:
                notes.append(f"- {label}: {'skipped' if 'skipped' in s else 'failed'}: "
                             f"{s.get('skipped') or s.get('error')}")
                continue
            for n, b in _bursts(s).items():
                rows.append([label, n, f"{b['served']}"
                             + (f" ({', '.join(f'{k}: {v}' for k, v in b['errors'].items())})"
                                if b["errors"] else ""),
                             _f(b["first_vector_p50_s"], 2), _f(b["first_vector_max_s"], 2),
                             _f(b["burst_seconds"], 2), _mem(b, "peak_private_mib"),
                             _mem(b, "peak_backends_over_100_mib"),
                             _mem(b, "peak_used_delta_mib"), " ".join(b["load_average_after"])])
        pool = r["scenarios"].get("pool", {})
        if "bursts" in pool:
            notes.append(
                f"- Pool warm-up ({pool['pgbouncer']}, pool_mode = transaction, "
                f"default_pool_size = {pool['default_pool_size']}): {pool['server_backends_warm']}"
                f" clients at once, {_f(pool['warm_up_seconds'], 1)} s; then "
                f"{pool['server_backends_warm']} server backends holding the model, "
                + ", ".join(f"{x:.0f}" for x in pool["server_private_mib_warm"])
                + " MiB private each.")
        cap = r.get("capacity_before") or {}
        if cap and "error" not in cap:
            notes.append(f"- Without a max_model_backends row the cap is {cap['cap_source']}: "
                         f"{cap['max_model_backends']} slots on this machine "
                         f"(default wait {_f(cap['wait_timeout_seconds'], 0)} s).")
        for which, title in (("pool_to_direct", "pool / direct"), ("cap_to_direct",
                                                                  "cap / direct")):
            ratios = r["ratios"].get(which, {})
            if ratios:
                notes.append(f"- {title}: " + "; ".join(
                    f"burst {n}: first vector p50 {_x(x.get('first_vector_p50_s'))}, "
                    f"max {_x(x.get('first_vector_max_s'))}, burst "
                    f"{_x(x.get('burst_seconds'))}, peak private "
                    f"{_x(x.get('peak_private_mib'))}" for n, x in ratios.items()))
        parts.append(
            f"\n## 10. Burst of new connections, {model}\n\n"
            "Clients start at once; each connects, runs `SELECT clip_embed_text('...')` once "
            "(a text of its own) in a transaction that sets the model with `SET LOCAL`, and "
            "disconnects. Times from the start of the burst, one run per size. Memory sampled "
            "every 100 ms: private = sum of Private_Clean + Private_Dirty "
            "(`/proc/<pid>/smaps_rollup`) over the bench database's backends, and how many of "
            "them were over 100 MiB (torch imported); used = MemTotal - MemAvailable against "
            "before the scenario (before the warm-up for the pool; the whole machine's, so "
            "other users' processes move it too).\n\n"
            + _table(["scenario", "clients", "served", "first vector p50 s",
                      "first vector max s", "burst s", "peak private MiB",
                      "backends > 100 MiB", "used + MiB", "load after"], rows)
            + ("\n" + "\n".join(notes) + "\n" if notes else ""))
    return "".join(parts)
