"""The shop: products by text (photo, title, or both with weights) or by photo, and "more
like these" from a basket kept in a signed cookie."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, redirect, request, session, url_for
from werkzeug.wrappers import Response

from pgclip_gallery import queries
from pgclip_gallery.app import PageError, float_arg, gallery, int_arg, uploaded_image
from pgclip_gallery.catalog import Catalog, Column
from pgclip_gallery.views import page, query_text

MAX_BASKET = 20
MODES = ("both", "photo", "title")


def products(cat: Catalog) -> tuple[Column, Column]:
    pair = cat.shop(request.values.get("t"))
    if pair is None:
        raise PageError("No shop table: the shop needs a table with an auto-embedded photo "
                        "column and an auto-embedded title column.", 404)
    return pair


def basket() -> list[str]:
    keys = session.get("basket", [])
    return [k for k in keys if isinstance(k, str)][:MAX_BASKET]


def register(app: Flask) -> None:
    @app.get("/shop")
    def shop() -> str:
        with gallery().pool.connection() as conn:
            cat = gallery().catalog(conn)
            photo, title = products(cat)
            q, k = query_text(), int_arg("k", 12, 1, 100)
            mode = request.args.get("mode", "both")
            if mode not in MODES:
                raise PageError(f"mode is one of {', '.join(MODES)}")
            weight = float_arg("w", 0.5, 0.0, 1.0)
            hits = []
            if q and mode == "both":
                hits = queries.shop_fields(conn, cat, photo, title, q, weight, k)
            elif q:
                hits = queries.search_text(conn, cat, photo if mode == "photo" else title, q, k)
            keys = basket()
            liked = queries.labels(conn, photo, keys)
            more = queries.more_like_these(conn, cat, photo, [h.key for h in liked], k) \
                if liked else []
            return page("shop.html", cat, col=photo, q=q, mode=mode, w=weight, hits=hits,
                        basket=liked, more=more, by_photo=False)

    @app.post("/shop/photo")
    def shop_photo() -> str:
        image = uploaded_image()
        with gallery().pool.connection() as conn:
            cat = gallery().catalog(conn)
            photo, _ = products(cat)
            hits = queries.search_image(conn, cat, photo, image, int_arg("k", 12, 1, 100))
            liked = queries.labels(conn, photo, basket())
            return page("shop.html", cat, col=photo, q="", mode="photo", w=0.5, hits=hits,
                        basket=liked, more=[], by_photo=True)

    @app.post("/shop/basket")
    def shop_basket() -> Response:
        key, action = request.form.get("key", ""), request.form.get("action", "add")
        keys = basket()
        if action == "add" and key and key not in keys:
            keys = (keys + [key])[-MAX_BASKET:]
        elif action == "remove":
            keys = [k for k in keys if k != key]
        elif action == "empty":
            keys = []
        session["basket"] = keys
        # Back to the shop page the button was on (its search kept); only ever a shop page.
        back = request.form.get("back", "")
        parts = urlsplit(back)
        same_site = not parts.scheme and not parts.netloc and parts.path == url_for("shop")
        return redirect(back if same_site else url_for("shop"))
