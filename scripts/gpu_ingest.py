"""GPU check, in the database: bulk ingest through the auto-embed trigger (COPY) and one call per
row, on a server whose backends see the GPU. Compares with scripts/gpu_bench.py's raw open_clip
numbers from the same machine. Usage: gpu_ingest.py DSN CHECKPOINT OUT.json [--images N]"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plpython"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dsn")
    ap.add_argument("checkpoint")
    ap.add_argument("out", type=Path)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    import psycopg

    from pgclip import shapes

    rng = random.Random(5)
    data = []
    for _ in range(args.images):
        buf = io.BytesIO()
        shapes.render(shapes.random_spec(rng), rng, pixels=256).save(buf, "JPEG", quality=90)
        data.append(buf.getvalue())
    res: dict = {"images": args.images, "batch": args.batch}
    with psycopg.connect(args.dsn, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pgclip CASCADE")
        c.execute("SET pgclip.model = 'ViT-B-32'")
        c.execute(f"SET pgclip.pretrained = '{args.checkpoint}'")
        c.execute(f"SET pgclip.batch_size = {args.batch}")
        t = time.perf_counter()
        info = c.execute(
            "SELECT device, dtype, embedding_dim, load_seconds FROM clip_model_info()"
        ).fetchone()
        res["first_call_seconds"] = round(time.perf_counter() - t, 3)
        res["device"], res["dtype"], res["dim"], res["load_seconds"] = info
        c.execute("DROP TABLE IF EXISTS gpu_photos")
        c.execute("CREATE TABLE gpu_photos (id int PRIMARY KEY, image bytea)")
        c.execute("SELECT clip_auto_embed('gpu_photos', 'image', 'image', backfill => false)")

        def copy(rows: list[tuple[int, bytes]]) -> float:
            t0 = time.perf_counter()
            with c.cursor() as cur, cur.copy("COPY gpu_photos (id, image) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
            return time.perf_counter() - t0

        copy([(-i - 1, data[i]) for i in range(args.batch)])  # warm-up
        runs = []
        for _rep in range(3):
            c.execute("DELETE FROM gpu_photos")
            runs.append(copy([(i, d) for i, d in enumerate(data)]))
        runs.sort()
        res["copy_trigger_images_per_s"] = round(args.images / runs[1], 1)
        assert c.execute("SELECT count(image_embedding) FROM gpu_photos").fetchone()[0] == len(data)
        t = time.perf_counter()
        n = min(200, len(data))
        for d in data[:n]:
            c.execute("SELECT clip_embed_image(%s)", (d,))
        res["per_call_images_per_s"] = round(n / (time.perf_counter() - t), 1)
        c.execute("UPDATE gpu_photos SET image_embedding = NULL")
        t = time.perf_counter()
        c.execute(f"CALL clip_backfill('gpu_photos', batch_size => {args.batch})")
        res["backfill_images_per_s"] = round(args.images / (time.perf_counter() - t), 1)
    args.out.write_text(json.dumps(res, indent=2, default=str))
    print(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
