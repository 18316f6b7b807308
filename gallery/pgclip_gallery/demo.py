"""``python -m pgclip_gallery.demo ADMIN_URL``: make a database ready for the gallery.

- Loads the demo album, shop and videos (sql/examples: photo_album.sql, product_search.sql,
  video_search.sql, on generated sample images and videos) when the database has none of
  them. Run as a superuser: the examples read the sample files with pg_read_binary_file.
- Creates the page's own role, ``pgclip_gallery`` (LOGIN, nothing else), and grants it what
  the page needs: pgclip's functions (clip_grant_usage) and SELECT on the tables it shows.
- Prints the URL the page connects with (the admin URL, as that role) on stdout; what it
  did goes to stderr.

This runs once, before the page starts, in its own process: the page itself only connects."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "sql" / "examples"
DEMO = {"album_photos": "photo_album.sql", "products": "product_search.sql",
        "demo_videos": "video_search.sql"}
# The tables the page reads: the demo's and their video frame and segment tables.
DEMO_TABLES = ["album_photos", "products", "demo_videos", "demo_videos_video_frames",
               "demo_videos_video_segments"]
ROLE = "pgclip_gallery"


def write_samples(folder: Path) -> None:
    from pgclip import shapes  # the sample images (plpython/pgclip, PIL only)
    from pgclip.video import samples as video_samples
    shapes.write_samples(folder)
    video_samples.write_samples(folder)


def load_missing(url: str, samples: Path, psql: str = "psql") -> list[str]:
    """Run the examples whose table is missing; returns the tables loaded."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgclip CASCADE")
        missing = [t for t in DEMO if conn.execute(
            "SELECT pg_catalog.to_regclass(%s) IS NULL", (f"public.{t}",)).fetchone()[0]]
        if missing:
            db = conn.execute("SELECT pg_catalog.current_database()").fetchone()[0]
            # The demo's model, for the database's sessions (the page's too).
            conn.execute(sql.SQL("ALTER DATABASE {} SET pgclip.model = 'pgclip-tiny'").format(
                sql.Identifier(db)))
    if missing:
        write_samples(samples)
    for table in missing:
        # Its output (echo headings, results) is not ours to print: stdout is the URL.
        subprocess.run([psql, "-X", "-q", "-v", f"samples={samples}", "-d", url,
                        "-f", str(EXAMPLES / DEMO[table])], check=True,
                       stdout=subprocess.DEVNULL)
    return missing


def grant_role(url: str, role: str = ROLE, tables: list[str] = DEMO_TABLES) -> str:
    """Create ``role`` (LOGIN, no other attribute) if missing and grant it what the page
    needs; returns ``url`` with ``role`` as its user."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT true FROM pg_catalog.pg_roles WHERE rolname = %s",
                              (role,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        schema = conn.execute(
            "SELECT extnamespace::pg_catalog.regnamespace::pg_catalog.text "
            "FROM pg_catalog.pg_extension WHERE extname = 'pgclip'").fetchone()[0]
        conn.execute(sql.SQL("SELECT {}.clip_grant_usage(%s::pg_catalog.regrole)").format(
            sql.Identifier(schema)), (role,))
        for t in tables:
            if conn.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL",
                            (f"public.{t}",)).fetchone()[0]:
                conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(
                    sql.Identifier("public", t), sql.Identifier(role)))
    params = conninfo_to_dict(url)
    params["user"] = role
    params.pop("password", None)
    return make_conninfo(**params)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m pgclip_gallery.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("admin_url", help="a superuser's URL of the database")
    p.add_argument("--samples", type=Path, default=ROOT / ".pgclip" / "samples")
    p.add_argument("--psql", default="psql")
    args = p.parse_args(argv)
    loaded = load_missing(args.admin_url, args.samples, args.psql)
    print(f"[gallery] demo tables loaded: {', '.join(loaded)}" if loaded
          else "[gallery] demo tables present", file=sys.stderr)
    print(grant_role(args.admin_url), flush=True)


if __name__ == "__main__":
    main()
