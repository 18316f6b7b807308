"""`make demo`: load generated sample images into the embedded cluster and search them by text.

Uses the project's own test model (pgclip-tiny), whose weights ship with pgclip; the default
model (ViT-B-32) needs its weights downloaded, which this machine may not be able to do.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from pgclip import shapes
from pgclip.video import samples as video_samples

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / ".pgclip" / "samples"
EXAMPLES = sorted((ROOT / "sql" / "examples").glob("*.sql"))
PG_CONFIG = os.environ.get("PG_CONFIG") or "pg_config"  # make demo PG=18 sets it
PSQL = str(Path(subprocess.check_output([PG_CONFIG, "--bindir"], text=True).strip()) / "psql")
QUERIES = [
    "a red circle",
    "a blue square",
    "a large yellow triangle",
    "a green cross",
    "a purple diamond on a white background",
]


def write_samples() -> list[tuple[str, Path]]:
    """Generated images and videos as files (sql/examples read them from this folder)."""
    video_samples.write_samples(SAMPLES)
    return [(p.stem.replace("_", " "), p) for p in shapes.write_samples(SAMPLES)
            if p.suffix == ".png"]


def main(url: str) -> None:
    samples = write_samples()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgclip CASCADE")
        conn.execute("ALTER EXTENSION pgclip UPDATE")  # a cluster kept from an older checkout
        db = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(
            f"ALTER DATABASE {psycopg.sql.Identifier(db).as_string(conn)} "
            "SET pgclip.model = 'pgclip-tiny'"
        )
        conn.execute("SET pgclip.model = 'pgclip-tiny'")
        info = conn.execute(
            "SELECT model, embedding_dim, device, load_seconds FROM clip_model_info()"
        ).fetchone()
        print(f"model {info[0]} ({info[1]}-d) on {info[2]}, loaded in {info[3]:.2f}s")
        conn.execute("DROP TABLE IF EXISTS demo_photos")
        conn.execute(
            f"CREATE TABLE demo_photos (id bigserial PRIMARY KEY, caption text, "
            f"image bytea, embedding vector({info[1]}))"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO demo_photos (caption, image, embedding) "
                "VALUES (%s, %s, clip_embed_image(%s))",
                [(cap, p.read_bytes(), p.read_bytes()) for cap, p in samples],
            )
        conn.execute("CREATE INDEX ON demo_photos USING hnsw (embedding vector_cosine_ops)")
        print(f"loaded {len(samples)} generated images into demo_photos\n")
        for q in QUERIES:
            rows = conn.execute(
                "SELECT caption, round(d::numeric, 3) FROM (SELECT caption, "
                "embedding <=> (SELECT clip_embed_text(%s)) AS d FROM demo_photos "
                "ORDER BY d LIMIT 3) s",
                (q,),
            ).fetchall()
            print(f"text -> image: {q!r}")
            for rank, (caption, dist) in enumerate(rows, 1):
                print(f"  {rank}. {caption}  (cosine distance {dist})")
    for example in EXAMPLES:
        print(f"\n##### {example.relative_to(ROOT)} #####", flush=True)
        subprocess.run(
            [PSQL, "-X", "-q", "-v", f"samples={SAMPLES}", "-d", url, "-f", str(example)],
            check=True,
        )
    psql = f"make psql PG={os.environ['PG']}" if os.environ.get("PG") else "make psql"
    print(
        f"\nTry it yourself: {psql}, then\n  SELECT caption FROM demo_photos "
        "ORDER BY embedding <=> (SELECT clip_embed_text('a small orange circle')) LIMIT 5;"
    )


if __name__ == "__main__":
    main(sys.argv[1])
