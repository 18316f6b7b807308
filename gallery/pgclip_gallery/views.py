"""The album's pages: search (text, photo, photo + text), a photo's page, tags, duplicate
groups, and the status of every auto-embedded column."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request

from pgclip_gallery import queries
from pgclip_gallery.app import PageError, elapsed_ms, float_arg, gallery, int_arg, uploaded_image
from pgclip_gallery.catalog import Catalog, Column

MAX_LABELS, MAX_LABEL_CHARS, MAX_QUERY_CHARS = 20, 60, 500
MAX_GROUPS = 200  # a page of duplicate groups (10,000 photos at 0.01: 1,208 groups, 2 MB)
DEFAULT_LABELS = "circle, square, triangle, cross, diamond"


def album(cat: Catalog) -> Column:
    col = cat.find(request.values.get("t"), "image")
    if col is None:
        raise PageError("No such photo table: the gallery shows auto-embedded image columns "
                        "(clip_auto_embed(tbl, src, 'image')) of tables its role may read.", 404)
    return col


def query_text(name: str = "q") -> str:
    text = request.values.get(name, "").strip()
    if len(text) > MAX_QUERY_CHARS:
        raise PageError(f"Searches are up to {MAX_QUERY_CHARS} characters.")
    return text


def page(template: str, cat: Catalog, **kw: object) -> str:
    return render_template(template, catalog=cat, elapsed_ms=elapsed_ms, **kw)


def register(app: Flask) -> None:
    @app.get("/")
    def search() -> str:
        with gallery().pool.connection() as conn:
            cat = gallery().catalog(conn)
            col = album(cat)
            q, k = query_text(), int_arg("k", 24, 1, 200)
            hits = queries.search_text(conn, cat, col, q, k) if q else []
            return page("search.html", cat, col=col, q=q, hits=hits, searched=bool(q))

    @app.post("/search/photo")
    def search_photo() -> str:
        image = uploaded_image()  # refused here, before any query, if it is not an image
        with gallery().pool.connection() as conn:
            cat = gallery().catalog(conn)
            col = album(cat)
            modifier, k = query_text("modifier"), int_arg("k", 24, 1, 200)
            if modifier:
                weight = float_arg("weight", 1.0, 0.0, 4.0)
                hits = queries.search_fused(conn, cat, col, image, modifier, k, weight)
            else:
                hits = queries.search_image(conn, cat, col, image, k)
            return page("search.html", cat, col=col, q="", modifier=modifier, hits=hits,
                        searched=True, by_photo=True)

    @app.get("/photo")
    def photo() -> str:
        key = request.args.get("key", "")
        raw = request.args.get("labels", DEFAULT_LABELS)
        labels = [x.strip() for x in raw.split(",") if x.strip()]
        if len(labels) > MAX_LABELS or any(len(x) > MAX_LABEL_CHARS for x in labels):
            raise PageError(f"Up to {MAX_LABELS} labels of up to {MAX_LABEL_CHARS} characters.")
        with gallery().pool.connection() as conn:
            cat = gallery().catalog(conn)
            col = album(cat)
            row = queries.row(conn, col, key)
            if row is None:
                raise PageError(f"No photo {key!r} in {col.name}.", 404)
            ready = row["embedded"]
            similar = queries.similar(conn, cat, col, key, 12) if ready else []
            max_d = float_arg("max_distance", 0.01, 0.0, 2.0)
            dups = [h for h in similar if h.score <= max_d]
            scores = queries.classify(conn, cat, col, key, labels) if ready and labels else []
            return page("photo.html", cat, col=col, key=key, row=row, similar=similar,
                        duplicates=dups, max_distance=max_d, labels=", ".join(labels),
                        scores=scores)

    @app.get("/tags")
    def tags() -> str:
        tag = request.args.get("tag", "").strip()
        with gallery().pool.connection() as conn:
            cat = gallery().catalog(conn)
            col = album(cat)
            if not col.tags_column:
                raise PageError(f"{col.name} has no tags: clip_tagging_enable adds them.", 404)
            counts = queries.tag_counts(conn, col)
            hits = queries.with_tag(conn, col, tag, 200) if tag else []
            return page("tags.html", cat, col=col, counts=counts, tag=tag, hits=hits)

    @app.get("/duplicates")
    def duplicates() -> str:
        with gallery().pool.connection() as conn:
            cat = gallery().catalog(conn)
            col = album(cat)
            max_d = float_arg("max_distance", 0.01, 0.0, 0.5)
            groups = queries.duplicate_groups(conn, cat, col, max_d)
            return page("duplicates.html", cat, col=col, groups=groups[:MAX_GROUPS],
                        total=len(groups), max_distance=max_d)

    @app.get("/status")
    def status() -> str:
        with gallery().pool.connection() as conn:
            cat = gallery().catalog(conn)
            return page("status.html", cat, rows=queries.status(conn, cat))

    @app.get("/status.json")
    def status_json():  # noqa: ANN202 (a Flask response)
        with gallery().pool.connection() as conn:
            return jsonify(queries.status(conn, gallery().catalog(conn)))
