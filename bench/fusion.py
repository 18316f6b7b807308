"""Case fusion: what each multi-field fusion strategy buys, on a generated shop (pgclip.shop).

Products have a photo (a coloured shape) and a title that says what the photo cannot show
(the maker and the product's size); both are auto-embedded with pgclip-tiny (``clip_auto_embed``,
HNSW indexes). Queries are visual (``a red circle``), text (``monza large``) or mixed (``red
monza``), each with known relevant products, split at random into a tuning half and a
held-out half. Every method runs as SQL against the cluster:

- image only, title only: ``clip_search_fields`` of that one field (100 candidates from its
  index, exact order; products with equal titles tie by id);
- fixed weights: ``clip_search_fields`` with 0.5/0.5, and with the image weight (0, 0.1 .. 1)
  that scores best on the tuning half;
- RRF: ``clip_rrf`` of each field's 100 nearest rows, ties by id (k = 60);
- attention: ``clip_search_fields_attention`` at the default temperature (the sweep on the
  tuning half is reported with it);
- gated: ``clip_fusion_fit`` on judgments of the tuning queries (shop.judgments: the relevant
  products and 20 others, half near misses), then ``clip_search_fields_gated``.

nDCG@10 and recall@10 per query kind on the held-out half; "all" is the mean of the three
kinds. The extension tests (tests/extension/test_field_fusion.py) run the same functions on a
smaller shop.

    bash scripts/cluster.sh start && .venv/bin/python -m bench.fusion
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import psycopg

from bench.common import cluster_url, connect, log, recreate_db, standalone
from pgclip import field_fusion, shop

DB = "pgclip_bench_fusion"
TABLE = "shop_products"
JUDGMENTS = "shop_judgments"
FIELDS = ("image_vec", "title_vec")
CANDIDATES = 100
WEIGHTS = tuple(round(i / 10, 1) for i in range(11))  # the image's weight; the title gets 1 - w
TEMPERATURES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
METHODS = ("image only", "title only", "fixed 0.5/0.5", "fixed tuned", "RRF", "attention",
           "gated")

Ranker = Callable[[Any], list[int]]  # query vector -> product ids, best first


def _png(product: shop.Product, seed: int) -> bytes:
    buf = io.BytesIO()
    shop.photo(product, seed).save(buf, "PNG")
    return buf.getvalue()


def load_shop(conn: psycopg.Connection, products: Sequence[shop.Product], seed: int,
              table: str = TABLE) -> None:
    """The products table, auto-embedded (photo -> image_vec, title -> title_vec)."""
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, maker text, size text, "
                 "color text, shape text, title text, photo bytea)")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        [(p.id, p.maker, p.size, p.photo.color, p.photo.shape, p.title,
                          _png(p, seed)) for p in products])
    conn.execute("SELECT clip_auto_embed(%s, 'photo', 'image', 'image_vec')", (table,))
    conn.execute("SELECT clip_auto_embed(%s, 'title', 'text', 'title_vec')", (table,))
    conn.execute(f"ANALYZE {table}")


def store_judgments(conn: psycopg.Connection, rows: Sequence[tuple[str, int, bool]],
                    table: str = JUDGMENTS) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (query text, row_key text, relevant boolean)")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)",
                        [(q, str(k), r) for q, k, r in rows])


def query_vectors(conn: psycopg.Connection, queries: Sequence[shop.Query]) -> dict[str, Any]:
    return {q.text: conn.execute("SELECT clip_embed_text(%s)", (q.text,)).fetchone()[0]
            for q in queries}


def rankers(conn: psycopg.Connection, table: str = TABLE) -> dict[str, Callable[..., Ranker]]:
    """Each method as a factory of rankers (its parameters in, a ranking function out)."""
    cols = list(FIELDS)

    def ids(sql: str, params: tuple) -> list[int]:
        return [int(r[0]) for r in conn.execute(sql, params)]

    def field(col: str) -> Ranker:  # through clip_search_fields: equal titles tie by key
        return lambda q: ids("SELECT row_key FROM clip_search_fields(%s, %s, %s, k => 10, "
                             "candidates => %s)", (table, q, [col], CANDIDATES))

    def fixed(w: float) -> Ranker:
        return lambda q: ids("SELECT row_key FROM clip_search_fields(%s, %s, %s, %s, k => 10, "
                             "candidates => %s)", (table, q, cols, [w, 1 - w], CANDIDATES))

    def rrf() -> Ranker:
        return lambda q: ids(
            f"SELECT id FROM clip_rrf(ARRAY(SELECT id FROM {table} ORDER BY image_vec <=> %s, id "
            f"LIMIT {CANDIDATES}), ARRAY(SELECT id FROM {table} ORDER BY title_vec <=> %s, id "
            f"LIMIT {CANDIDATES}), k => 60) LIMIT 10", (q, q))

    def attention(temperature: float = field_fusion.DEFAULT_TEMPERATURE) -> Ranker:
        return lambda q: ids("SELECT row_key FROM clip_search_fields_attention(%s, %s, %s, "
                             "temperature => %s, k => 10, candidates => %s)",
                             (table, q, cols, temperature, CANDIDATES))

    def gated() -> Ranker:
        return lambda q: ids("SELECT row_key FROM clip_search_fields_gated(%s, %s, %s, k => 10, "
                             "candidates => %s)", (table, q, cols, CANDIDATES))

    return {"image": lambda: field("image_vec"), "title": lambda: field("title_vec"),
            "fixed": fixed, "rrf": rrf, "attention": attention, "gated": gated}


def evaluate(rank: Ranker, queries: Sequence[shop.Query], vecs: dict[str, Any],
             times: list[float] | None = None) -> dict[str, dict[str, float]]:
    """nDCG@10 and recall@10 per kind (``all``: the mean of the kinds present)."""
    per: dict[str, list[tuple[float, float]]] = {}
    for q in queries:
        t = time.perf_counter()
        ranking = rank(vecs[q.text])
        if times is not None:
            times.append(time.perf_counter() - t)
        per.setdefault(q.kind, []).append(
            (shop.ndcg_at(ranking, q.relevant), shop.recall_at(ranking, q.relevant)))
    out = {k: {"ndcg": float(np.mean([a for a, _ in v])),
               "recall": float(np.mean([b for _, b in v])), "queries": len(v)}
           for k, v in per.items()}
    out["all"] = {m: float(np.mean([out[k][m] for k in per])) for m in ("ndcg", "recall")}
    return out


def run(conn: psycopg.Connection, products: int, seed: int, mixed: int | None,
        table: str = TABLE, judgments: str = JUDGMENTS) -> dict[str, Any]:
    """Build the shop in ``conn``'s database, tune, fit, and evaluate every method."""
    t0 = time.perf_counter()
    items = shop.catalogue(products, seed)
    queries = shop.queries(items, seed, mixed=mixed)
    tune = [q for q in queries if q.split == "tune"]
    held = [q for q in queries if q.split == "eval"]
    load_shop(conn, items, seed, table)
    vecs = query_vectors(conn, queries)
    built = time.perf_counter() - t0
    r = rankers(conn, table)
    tuning_fixed = {w: evaluate(r["fixed"](w), tune, vecs)["all"]["ndcg"] for w in WEIGHTS}
    best_w = max(WEIGHTS, key=lambda w: (tuning_fixed[w], -abs(w - 0.5)))
    tuning_att = {t: evaluate(r["attention"](t), tune, vecs) for t in TEMPERATURES}
    rows = shop.judgments(items, tune, seed)
    store_judgments(conn, rows, judgments)
    t = time.perf_counter()
    gate = conn.execute("SELECT clip_fusion_fit(%s, %s, %s)",
                        (table, list(FIELDS), judgments)).fetchone()[0]
    fit_s = time.perf_counter() - t
    methods: dict[str, Ranker] = {
        "image only": r["image"](), "title only": r["title"](),
        "fixed 0.5/0.5": r["fixed"](0.5), "fixed tuned": r["fixed"](best_w), "RRF": r["rrf"](),
        "attention": r["attention"](), "gated": r["gated"]()}
    results, ms = {}, {}
    for name, rank in methods.items():
        times: list[float] = []
        results[name] = evaluate(rank, held, vecs, times)
        ms[name] = 1000 * statistics.median(times)
    return {
        "products": products, "seed": seed, "makers": list(shop.MAKERS),
        "queries": {k: {s: sum(q.kind == k and q.split == s for q in queries)
                        for s in shop.SPLITS} for k in shop.KINDS},
        "relevant_per_query": {k: float(np.mean([len(q.relevant) for q in queries
                                                 if q.kind == k])) for k in shop.KINDS},
        "judgments": len(rows), "candidates": CANDIDATES,
        "tuning": {"fixed_image_weight": {str(w): v for w, v in tuning_fixed.items()},
                   "best_fixed_image_weight": best_w,
                   "attention_temperature": {str(t): v for t, v in tuning_att.items()},
                   "best_temperature": max(TEMPERATURES,
                                           key=lambda t: tuning_att[t]["all"]["ndcg"]),
                   "default_temperature": field_fusion.DEFAULT_TEMPERATURE},
        "gate": gate, "fit_seconds": fit_s, "eval": results, "ms_per_query": ms,
        "build_seconds": built, "seconds": time.perf_counter() - t0,
    }


def fusion_case(base_url: str, products: int = 480, seed: int = 2026,
                mixed: int | None = 48) -> dict[str, Any]:
    """The benchmark case, in its own database."""
    url = recreate_db(base_url, name=DB)
    log(f"fusion: a shop of {products} products (seed {seed})")
    with connect(url, "pgclip-tiny", **{"hnsw.ef_search": str(CANDIDATES)}) as conn:
        return run(conn, products, seed, mixed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=480)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    out = fusion_case(cluster_url(), args.products, args.seed)
    from bench.report_fusion import markdown

    standalone("fusion", out, markdown)


if __name__ == "__main__":
    main()
