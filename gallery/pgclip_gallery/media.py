"""Bytes for the page: thumbnails and photos from the stored ``bytea`` (thumbnails cached by
row version, which is also their ETag), videos with HTTP ranges so a player can start at a
moment, and the videos page."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response, request
from PIL import Image

from pgclip_gallery import queries, thumbs, uploads
from pgclip_gallery.app import PageError, gallery, int_arg, uploaded_image
from pgclip_gallery.catalog import Catalog, Column
from pgclip_gallery.views import page, query_text

CACHE = "private, max-age=300"
_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp",
          "BMP": "image/bmp"}
PLACEHOLDER = (b'<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256">'
               b'<rect width="100%" height="100%" fill="#ddd"/></svg>')


def _column(cat: Catalog, modality: str) -> Column:
    col = cat.find(request.args.get("t"), modality)
    if col is None:
        raise PageError("No such table.", 404)
    return col


def _any_column(cat: Catalog) -> Column:
    """An image column of the table named by ``t``: the album's, or the shop's."""
    name = request.args.get("t")
    col = cat.find(name, "image")
    if col is None and name:
        raise PageError("No such table.", 404)
    if col is None:
        raise PageError("No photo table.", 404)
    return col


def _stored(column: Callable[[Catalog], Column]) -> bytes | None:
    """The source bytes of row ``key`` of the request's table (None: no such row)."""
    with gallery().pool.connection() as conn:
        col = column(gallery().catalog(conn))
        return queries.source_bytes(conn, col, request.args.get("key", ""))


def register(app: Flask) -> None:
    @app.get("/thumb")
    def thumb() -> Response:
        key = request.args.get("key", "")
        g = gallery()
        with g.pool.connection() as conn:
            col = _any_column(g.catalog(conn))
            digest = queries.source_version(conn, col, key)
            if digest is None:
                raise PageError("No such photo.", 404)
            if request.if_none_match.contains(digest):
                return Response(status=304, headers={"ETag": f'"{digest}"', "Cache-Control": CACHE})
            data = g.thumbs.get(digest)
            if data is None:
                try:
                    data = thumbs.thumbnail(queries.source_bytes(conn, col, key) or b"")
                except (OSError, ValueError, Image.DecompressionBombError):
                    return Response(PLACEHOLDER, mimetype="image/svg+xml")
                g.thumbs.put(digest, data)
        resp = Response(data, mimetype="image/jpeg")
        resp.set_etag(digest)
        resp.headers["Cache-Control"] = CACHE
        return resp

    @app.get("/image")
    def image() -> Response:
        data = _stored(_any_column)
        kind = _TYPES.get(uploads.image_format(data or b"") or "")
        if data is None or kind is None:  # never served as anything but a known image type
            raise PageError("No such photo.", 404)
        resp = Response(data, mimetype=kind)
        resp.headers["Cache-Control"] = CACHE
        return resp

    @app.get("/video")
    def video() -> Response:
        data = _stored(lambda cat: _column(cat, "video"))
        if data is None:
            raise PageError("No such video.", 404)
        resp = Response(data, mimetype="video/mp4")
        resp.headers["Cache-Control"] = CACHE
        # Range requests (206): a player seeks to the moment without reading the whole file.
        return resp.make_conditional(request, accept_ranges=True, complete_length=len(data))

    @app.route("/videos", methods=["GET", "POST"])
    def videos() -> str:
        with gallery().pool.connection() as conn:
            cat = gallery().catalog(conn)
            col = cat.find(request.values.get("t"), "video")
            if col is None:
                return page("videos.html", cat, col=None, q="", moments=[], searched=False)
            q = query_text()
            query: str | bytes = uploaded_image() if request.method == "POST" else q
            k, per = int_arg("k", 8, 1, 50), int_arg("per_video", 2, 1, 10)
            moments = queries.search_video(conn, cat, col, query, k, per) if query else []
            return page("videos.html", cat, col=col, q=q, moments=moments, searched=bool(query))
