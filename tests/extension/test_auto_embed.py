"""clip_auto_embed, its triggers, clip_status and the bad-input policy
(extension/sql/idempotent/020-auto-embed.sql) against a real cluster."""

from __future__ import annotations

import json
import math

import numpy as np
import psycopg
import pytest

from tests.helpers import decoded, generated


def stats(conn: psycopg.Connection) -> dict[str, int]:
    return json.loads(json.dumps(conn.execute("SELECT clip_backend_stats()").fetchone()[0]))


def make_photos(conn: psycopg.Connection, name: str, n: int = 0, seed: int = 1) -> list[bytes]:
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id bigserial PRIMARY KEY, caption text, image bytea)")
    rows = generated(n, seed)
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {name} (caption, image) VALUES (%s, %s)",
            [(s.caption(), b) for s, b in rows],
        )
    return [b for _, b in rows]


def vectors(conn: psycopg.Connection, table: str, column: str = "image_embedding") -> list:
    return [r[0] for r in conn.execute(f"SELECT {column} FROM {table} ORDER BY id")]


def test_setup_adds_column_triggers_index_registry_and_backfills(conn, ref) -> None:
    images = make_photos(conn, "ae_setup", 5)
    col = conn.execute("SELECT clip_auto_embed('ae_setup', 'image', 'image')").fetchone()[0]
    assert col == "image_embedding"
    typ = conn.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'ae_setup'::regclass AND attname = 'image_embedding'"
    ).fetchone()[0]
    assert typ == "vector(64)"
    storage = conn.execute("SELECT attstorage FROM pg_attribute WHERE attrelid = "
                           "'ae_setup'::regclass AND attname = 'image_embedding'").fetchone()[0]
    assert storage == "m"  # kept in the row, not TOASTed out of line
    trig = {
        r[0]
        for r in conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = "
            "'ae_setup'::regclass AND NOT tgisinternal"
        )
    }
    assert trig == {"pgclip_image_embedding_ins", "pgclip_image_embedding_upd"}
    idx = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'ae_setup' AND indexdef LIKE '%hnsw%'"
    ).fetchone()[0]
    assert "vector_cosine_ops" in idx
    reg = conn.execute(
        "SELECT source_column, modality, key_column, model, pretrained, "
        "embedding_dim, on_error FROM clip_columns "
        "WHERE table_oid = 'ae_setup'::regclass"
    ).fetchone()
    assert reg == ("image", "image", "id", "pgclip-tiny", "pgclip", 64, "raise")
    got = np.stack([v.to_numpy() for v in vectors(conn, "ae_setup")])
    want = ref.image([decoded(b) for b in images])
    assert np.max(np.abs(got - want)) <= 1e-5


def test_insert_update_and_null(conn, ref) -> None:
    make_photos(conn, "ae_rows")
    conn.execute("SELECT clip_auto_embed('ae_rows', 'image', 'image')")
    (_, a), (_, b) = generated(2, seed=7)
    conn.execute("INSERT INTO ae_rows (image) VALUES (%s), (NULL)", (a,))
    v = vectors(conn, "ae_rows")
    assert v[1] is None
    assert np.max(np.abs(v[0].to_numpy() - ref.image([decoded(a)])[0])) <= 1e-5
    conn.execute("UPDATE ae_rows SET image = %s WHERE id = (SELECT min(id) FROM ae_rows)", (b,))
    assert (
        np.max(np.abs(vectors(conn, "ae_rows")[0].to_numpy() - ref.image([decoded(b)])[0])) <= 1e-5
    )
    conn.execute("UPDATE ae_rows SET image = NULL WHERE id = (SELECT min(id) FROM ae_rows)")
    assert vectors(conn, "ae_rows")[0] is None
    conn.execute("UPDATE ae_rows SET image = %s WHERE image IS NULL", (a,))
    assert all(x is not None for x in vectors(conn, "ae_rows"))


def test_update_without_change_makes_no_model_call(conn) -> None:
    make_photos(conn, "ae_same", 6)
    conn.execute("SELECT clip_auto_embed('ae_same', 'image', 'image')")
    before = stats(conn)
    conn.execute("UPDATE ae_same SET image = image, caption = caption || '!'")
    after = stats(conn)
    assert after["model_calls"] == before["model_calls"]
    assert after["rows_embedded"] == before["rows_embedded"]
    assert after["trigger_statements"] > before["trigger_statements"]


def test_bulk_insert_embeds_in_batches(conn) -> None:
    conn.execute("SET pgclip.batch_size = 16")
    try:
        make_photos(conn, "ae_bulk")
        conn.execute("SELECT clip_auto_embed('ae_bulk', 'image', 'image')")
        conn.execute("CREATE TEMP TABLE staging AS SELECT 1 AS i LIMIT 0")
        rows = generated(100, seed=3)
        conn.execute("DROP TABLE IF EXISTS ae_stage")
        conn.execute("CREATE TABLE ae_stage (image bytea)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO ae_stage VALUES (%s)", [(b,) for _, b in rows])
        before = stats(conn)
        conn.execute("INSERT INTO ae_bulk (image) SELECT image FROM ae_stage")
        after = stats(conn)
        assert after["model_calls"] - before["model_calls"] == math.ceil(100 / 16)
        assert after["rows_embedded"] - before["rows_embedded"] == 100
        assert conn.execute("SELECT count(image_embedding) FROM ae_bulk").fetchone()[0] == 100
    finally:
        conn.execute("RESET pgclip.batch_size")


def _copy_with_corrupt(conn, table: str, n: int = 200) -> set[int]:
    rows = generated(n, seed=11)
    bad = {7, 50, 99, 150}  # 2%
    with conn.cursor() as cur, cur.copy(f"COPY {table} (id, caption, image) FROM STDIN") as cp:
        for i, (spec, data) in enumerate(rows, start=1):
            if i in bad:
                data = data[: len(data) // 3]  # truncated PNG
            cp.write_row((i, spec.caption(), data))
    return bad


def test_copy_skip_mode_keeps_every_row_and_logs_the_bad_ones(conn) -> None:
    make_photos(conn, "ae_skip")
    conn.execute("SELECT clip_auto_embed('ae_skip', 'image', 'image', on_error => 'skip')")
    bad = _copy_with_corrupt(conn, "ae_skip")
    assert conn.execute("SELECT count(*) FROM ae_skip").fetchone()[0] == 200
    nulls = {r[0] for r in conn.execute("SELECT id FROM ae_skip WHERE image_embedding IS NULL")}
    assert nulls == bad
    errs = conn.execute(
        "SELECT row_key::int, sqlstate, message FROM clip_errors "
        "WHERE table_oid = 'ae_skip'::regclass ORDER BY 1"
    ).fetchall()
    assert {e[0] for e in errs} == bad
    assert all(e[1] == "22023" and "image" in e[2] for e in errs)
    status = conn.execute(
        "SELECT total_rows, embedded_rows, pending_rows, failed_rows "
        "FROM clip_status WHERE table_name = 'ae_skip'::regclass"
    ).fetchone()
    assert status == (200, 196, 0, 4)
    # Fixing a bad row's source embeds it and clears its error.
    good = generated(1, seed=12)[0][1]
    conn.execute("UPDATE ae_skip SET image = %s WHERE id = 7", (good,))
    assert (
        conn.execute(
            "SELECT count(*) FROM clip_errors WHERE table_oid = 'ae_skip'::regclass"
        ).fetchone()[0]
        == 3
    )


def test_copy_raise_mode_stores_nothing_and_names_the_first_bad_row(conn) -> None:
    make_photos(conn, "ae_raise")
    conn.execute("SELECT clip_auto_embed('ae_raise', 'image', 'image')")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
        _copy_with_corrupt(conn, "ae_raise")
    msg = exc.value.diag.message_primary
    assert msg.startswith("pgclip: could not embed row id = 7 of public.ae_raise (image)"), msg
    assert "on_error => 'skip'" in exc.value.diag.message_hint
    assert conn.execute("SELECT count(*) FROM ae_raise").fetchone()[0] == 0


def test_text_column(conn, ref) -> None:
    conn.execute("DROP TABLE IF EXISTS ae_text")
    conn.execute("CREATE TABLE ae_text (id int PRIMARY KEY, title text)")
    conn.execute("INSERT INTO ae_text VALUES (1, 'a red circle'), (2, NULL)")
    conn.execute(
        "SELECT clip_auto_embed('ae_text', 'title', 'text', 'title_vec', create_index => false)"
    )
    v = vectors(conn, "ae_text", "title_vec")
    assert v[1] is None
    assert np.max(np.abs(v[0].to_numpy() - ref.text(["a red circle"])[0])) <= 1e-5


def test_column_stays_bound_to_its_model(conn, new_conn, ref) -> None:
    """A session whose pgclip.model differs still writes with the column's model."""
    make_photos(conn, "ae_bound")
    conn.execute("SELECT clip_auto_embed('ae_bound', 'image', 'image')")
    other = new_conn()
    other.execute("SET pgclip.model = 'ViT-B-32'")  # not loadable here: must not be used
    data = generated(1, seed=21)[0][1]
    other.execute("INSERT INTO ae_bound (image) VALUES (%s)", (data,))
    got = vectors(other, "ae_bound")[0].to_numpy()
    assert np.max(np.abs(got - ref.image([decoded(data)])[0])) <= 1e-5


@pytest.mark.parametrize(
    "call, sqlstate, words",
    [
        ("SELECT clip_auto_embed('ae_bad', 'nope', 'image')", "22023", "does not exist"),
        ("SELECT clip_auto_embed('ae_bad', 'caption', 'image')", "42804", "needs bytea"),
        ("SELECT clip_auto_embed('ae_bad', 'image', 'audio')", "22023", "modality"),
        (
            "SELECT clip_auto_embed('ae_bad', 'image', 'image', on_error => 'ignore')",
            "22023",
            "on_error",
        ),
        ("SELECT clip_auto_embed('ae_nokey', 'image', 'image')", "0A000", "primary key"),
    ],
)
def test_setup_errors(conn, call: str, sqlstate: str, words: str) -> None:
    make_photos(conn, "ae_bad")
    conn.execute("DROP TABLE IF EXISTS ae_nokey")
    conn.execute("CREATE TABLE ae_nokey (image bytea)")
    with pytest.raises(psycopg.Error) as exc:
        conn.execute(call)
    assert exc.value.diag.sqlstate == sqlstate
    assert words in exc.value.diag.message_primary
    assert exc.value.diag.message_hint


def test_remove(conn) -> None:
    make_photos(conn, "ae_remove", 2)
    conn.execute("SELECT clip_auto_embed('ae_remove', 'image', 'image')")
    conn.execute("SELECT clip_auto_embed_remove('ae_remove')")
    assert (
        conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = "
            "'ae_remove'::regclass AND NOT tgisinternal"
        ).fetchone()[0]
        == 0
    )
    assert (
        conn.execute(
            "SELECT count(*) FROM clip_columns WHERE table_oid = 'ae_remove'::regclass"
        ).fetchone()[0]
        == 0
    )
    assert conn.execute("SELECT count(image_embedding) FROM ae_remove").fetchone()[0] == 2
    conn.execute("SELECT clip_auto_embed('ae_remove', 'image', 'image')")
    conn.execute("SELECT clip_auto_embed_remove('ae_remove', drop_column => true)")
    assert (
        conn.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'ae_remove'::regclass"
            " AND attname = 'image_embedding' AND NOT attisdropped"
        ).fetchone()[0]
        == 0
    )
