"""The Flask application: a pool of database sessions (each loads the model once, in
PostgreSQL), the catalog of what there is to show, error pages, security headers."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psycopg
from flask import Flask, Response, g, render_template, request
from psycopg import sql
from psycopg_pool import ConnectionPool
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from pgclip_gallery import catalog, messages, thumbs, uploads

# No inline scripts or styles: what the page runs is in static/.
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self'; script-src 'self'; "
       "style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
CATALOG_SECONDS = 5.0  # how long the registry read is reused


@dataclass
class Gallery:
    pool: ConnectionPool
    thumbs: thumbs.Cache = field(default_factory=thumbs.Cache)
    _catalog: tuple[float, catalog.Catalog] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def catalog(self, conn: psycopg.Connection) -> catalog.Catalog:
        with self._lock:
            if self._catalog and time.monotonic() - self._catalog[0] < CATALOG_SECONDS:
                return self._catalog[1]
        cat = catalog.load(conn)
        with self._lock:
            self._catalog = (time.monotonic(), cat)
        return cat


def gallery() -> Gallery:
    from flask import current_app
    return current_app.extensions["pgclip_gallery"]


def _configure(conn: psycopg.Connection) -> None:
    """Each new session loads the album's model before it serves a page: the pool hands
    sessions out in turn, and a cold one would make some visitor wait for the load."""
    conn.execute("SET application_name = 'pgclip-gallery'")
    conn.execute("SET statement_timeout = '60s'")
    try:
        cat = catalog.load(conn)
    except LookupError:
        return  # no pgclip here: every page says so
    col = cat.default("image")
    if col is not None:
        from pgclip_gallery import queries
        with conn.transaction():
            queries.with_model(conn, col)
            conn.execute(sql.SQL("SELECT {}.clip_embed_text('warm-up')").format(
                sql.Identifier(cat.schema)))


class PageError(Exception):
    """A readable message for the page, with its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def create_app(dsn: str, pool_size: int = 4, max_upload: int = uploads.MAX_BYTES) -> Flask:
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=max_upload + 64 * 1024,  # the photo and the rest of the form
        MAX_UPLOAD=max_upload,
        SECRET_KEY=os.urandom(32),  # the basket's signed cookie; a restart empties baskets
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
    )
    # A fixed number of sessions, opened (and warmed) at the start, in the background.
    # Kept for a week, not psycopg_pool's hour: a new session loads the model again.
    pool = ConnectionPool(dsn, min_size=pool_size, max_size=pool_size, open=True,
                          configure=_configure, kwargs={"autocommit": True},
                          max_lifetime=7 * 86400.0, name="pgclip-gallery")
    app.extensions["pgclip_gallery"] = Gallery(pool)

    from pgclip_gallery import media, shop, views
    views.register(app)
    shop.register(app)
    media.register(app)

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "same-origin"
        if "started" in g:
            resp.headers["Server-Timing"] = f"app;dur={elapsed_ms():.1f}"
        return resp

    @app.errorhandler(PageError)
    def _page_error(e: PageError) -> tuple[str, int]:
        return render_template("error.html", message=str(e)), e.status

    @app.errorhandler(uploads.UploadRefused)
    def _refused(e: uploads.UploadRefused) -> tuple[str, int]:
        return render_template("error.html", message=str(e)), 400

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(e: RequestEntityTooLarge) -> tuple[str, int]:
        mb = app.config["MAX_UPLOAD"] // 1048576
        return render_template("error.html",
                               message=f"That file is too large: photos up to {mb} MB are "
                                       "accepted."), 413

    @app.errorhandler(psycopg.Error)
    def _sql_error(e: psycopg.Error) -> tuple[str, int]:
        state = e.diag.sqlstate or ""
        status = 400 if state[:2] in ("22", "54", "0A") else 503 if state[:2] == "53" else 500
        return render_template("error.html", message=messages.for_page(e)), status

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException) -> tuple[str, int]:
        return render_template("error.html", message=f"{e.code} {e.name}"), e.code or 500

    return app


def elapsed_ms() -> float:
    return (time.perf_counter() - g.started) * 1000.0


def int_arg(name: str, default: int, lo: int, hi: int) -> int:
    try:
        value = int(request.values.get(name, default))
    except ValueError as e:
        raise PageError(f"{name} must be a whole number") from e
    return max(lo, min(hi, value))


def float_arg(name: str, default: float, lo: float, hi: float) -> float:
    try:
        value = float(request.values.get(name, default))
    except ValueError as e:
        raise PageError(f"{name} must be a number") from e
    if value != value:  # NaN
        raise PageError(f"{name} must be a number")
    return max(lo, min(hi, value))


def uploaded_image(field_name: str = "photo") -> bytes:
    """The uploaded file's bytes, checked (size, format) before any query."""
    from flask import current_app
    f = request.files.get(field_name)
    data = f.read(current_app.config["MAX_UPLOAD"] + 1) if f else b""
    return uploads.check_image(data, current_app.config["MAX_UPLOAD"])
