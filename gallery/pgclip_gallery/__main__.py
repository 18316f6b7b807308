"""``python -m pgclip_gallery --database-url URL``: serve the gallery (waitress) until Ctrl-C;
the last line printed before serving is the page's URL."""

from __future__ import annotations

import argparse
import logging
import sys
import time

import psycopg
import waitress
from flask import Flask

from pgclip_gallery.app import create_app


def warm_up(app: Flask, timeout: float = 600.0) -> None:
    """Wait until every session is open and has loaded the model (app._configure), so that
    no visitor waits for a model load."""
    start = time.monotonic()
    app.extensions["pgclip_gallery"].pool.wait(timeout)
    print(f"[gallery] sessions ready, model loaded, in {time.monotonic() - start:.1f} s",
          file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m pgclip_gallery", description=__doc__)
    p.add_argument("--database-url", required=True,
                   help="a libpq URL or connection string of a database with pgclip")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: local)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--sessions", type=int, default=2,
                   help="database sessions (each loads the model once, in PostgreSQL)")
    args = p.parse_args(argv)
    try:  # fail now, with libpq's reason, rather than have the pool retry for ever
        psycopg.connect(args.database_url, connect_timeout=10).close()
    except psycopg.Error as e:
        sys.exit(f"[gallery] cannot connect to the database: {e}")
    app = create_app(args.database_url, pool_size=args.sessions)
    warm_up(app)
    logging.getLogger("waitress").setLevel(logging.WARNING)
    server = waitress.create_server(app, host=args.host, port=args.port,
                                    threads=max(4, args.sessions * 2))
    print(f"http://{args.host}:{server.effective_port}/", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
