"""Auto-embedding a partitioned table: every way rows arrive gets vectors (through the
parent, straight into a partition, into partitions created or attached later, sub-partitions,
rows moving between partitions), composite keys in clip_errors and the queue, async mode,
and triggers that carry their configuration (a copy of the table embeds without a registry
row: what a Citus shard needs)."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.helpers import generated

BAD = b"\x89PNG\r\n\x1a\n not an image"


def parted(conn: psycopg.Connection, name: str, mode: str = "sync",
           on_error: str = "raise") -> None:
    conn.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
    conn.execute(f"CREATE TABLE {name} (region text, id int, caption text, "
                 f"PRIMARY KEY (region, id)) PARTITION BY LIST (region)")
    conn.execute(f"CREATE TABLE {name}_eu PARTITION OF {name} FOR VALUES IN ('eu')")
    conn.execute(f"CREATE TABLE {name}_us PARTITION OF {name} FOR VALUES IN ('us')")
    conn.execute(f"SELECT clip_auto_embed('{name}', 'caption', 'text', mode => '{mode}', "
                 f"on_error => '{on_error}')")


def wrong(conn: psycopg.Connection, table: str) -> list[tuple]:
    """Rows whose vector is not the embedding of their caption."""
    return conn.execute(f"SELECT region, id FROM {table} WHERE ((caption_embedding <=> "
                        f"clip_embed_text(caption)) < 1e-5) IS NOT TRUE ORDER BY 1, 2").fetchall()


def test_every_way_rows_arrive_gets_vectors(conn) -> None:
    parted(conn, "pa_ways")
    conn.execute("INSERT INTO pa_ways VALUES ('eu', 1, 'a red circle'), ('us', 2, 'a dog')")
    conn.execute("INSERT INTO pa_ways_eu VALUES ('eu', 3, 'straight into a partition')")
    conn.execute("CREATE TABLE pa_ways_asia PARTITION OF pa_ways FOR VALUES IN ('asia')")
    conn.execute("INSERT INTO pa_ways_asia VALUES ('asia', 4, 'a partition created later')")
    # Sub-partitioned: the intermediate table and its leaves.
    conn.execute("CREATE TABLE pa_ways_af PARTITION OF pa_ways FOR VALUES IN ('af', 'af2') "
                 "PARTITION BY LIST (region)")
    conn.execute("CREATE TABLE pa_ways_af1 PARTITION OF pa_ways_af FOR VALUES IN ('af')")
    conn.execute("INSERT INTO pa_ways_af VALUES ('af', 5, 'into the middle table')")
    conn.execute("INSERT INTO pa_ways_af1 VALUES ('af', 6, 'into a leaf of it')")
    # Attached later, with a row already in it.
    conn.execute("CREATE TABLE pa_ways_sa (LIKE pa_ways INCLUDING ALL)")
    conn.execute("INSERT INTO pa_ways_sa VALUES ('sa', 7, 'there before attaching')")
    conn.execute("ALTER TABLE pa_ways ATTACH PARTITION pa_ways_sa FOR VALUES IN ('sa')")
    conn.execute("INSERT INTO pa_ways_sa VALUES ('sa', 8, 'after attaching')")
    assert wrong(conn, "pa_ways") == [("sa", 7)]  # pending: backfill embeds it
    assert conn.execute("SELECT pending_rows FROM clip_status "
                        "WHERE table_name = 'pa_ways'::regclass").fetchone()[0] == 1
    conn.execute("CALL clip_backfill('pa_ways')")
    assert wrong(conn, "pa_ways") == []
    # Moving between partitions (through the parent) keeps or renews the vector.
    conn.execute("UPDATE pa_ways SET region = 'us' WHERE id = 1")
    conn.execute("UPDATE pa_ways SET region = 'asia', caption = 'a cat' WHERE id = 3")
    assert wrong(conn, "pa_ways") == []
    assert conn.execute("SELECT region FROM pa_ways WHERE id = 3").fetchone()[0] == "asia"


def test_attach_notice_names_the_backfill(conn, new_conn) -> None:
    parted(conn, "pa_note")
    conn.execute("CREATE TABLE pa_note_x (LIKE pa_note INCLUDING ALL)")
    conn.execute("INSERT INTO pa_note_x VALUES ('x', 1, 'waiting')")
    c = new_conn()
    notices: list[str] = []
    c.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    c.execute("ALTER TABLE pa_note ATTACH PARTITION pa_note_x FOR VALUES IN ('x')")
    assert any("clip_backfill('public.pa_note')" in n for n in notices), notices


def test_composite_keys_in_errors_backfill_and_parallel(conn, new_conn) -> None:
    conn.execute("DROP TABLE IF EXISTS pa_img CASCADE")
    conn.execute("CREATE TABLE pa_img (shop text, id int, image bytea, PRIMARY KEY (shop, id)) "
                 "PARTITION BY HASH (id)")
    for r in range(4):
        conn.execute(f"CREATE TABLE pa_img_{r} PARTITION OF pa_img "
                     f"FOR VALUES WITH (MODULUS 4, REMAINDER {r})")
    data = [b for _, b in generated(40, seed=51)]
    rows = [("shop \"A\"", i, b) for i, b in enumerate(data)] + [("shop B", 99, BAD)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO pa_img VALUES (%s, %s, %s)", rows)
    conn.execute("SELECT clip_auto_embed('pa_img', 'image', 'image', backfill => false, "
                 "on_error => 'skip')")
    a, b = new_conn(), new_conn()
    from tests.extension.test_parallel import run_together, stats
    before = [stats(a), stats(b)]
    assert not run_together([a, b], "CALL clip_backfill('pa_img', batch_size => 3)")
    assert stats(a) + stats(b) - sum(before) == 40
    err = conn.execute("SELECT row_key FROM clip_errors WHERE table_oid = 'pa_img'::regclass"
                       ).fetchall()
    assert [json.loads(e[0]) for e in err] == [["shop B", 99]]
    # The key text joins back to the row through the primary key.
    joined = conn.execute(
        "SELECT t.id FROM clip_errors e JOIN pa_img t ON t.shop = e.row_key::jsonb->>0 "
        "AND t.id = (e.row_key::jsonb->>1)::int WHERE e.table_oid = 'pa_img'::regclass"
    ).fetchall()
    assert joined == [(99,)]
    assert conn.execute("SELECT count(*) FROM pa_img WHERE ((image_embedding <=> "
                        "clip_embed_image(image)) < 1e-5) IS NOT TRUE AND id <> 99"
                        ).fetchone()[0] == 0
    assert conn.execute("SELECT failed_rows, pending_rows FROM clip_status "
                        "WHERE table_name = 'pa_img'::regclass").fetchone() == (1, 0)


def test_async_partitioned_table(conn, new_conn) -> None:
    parted(conn, "pa_async", mode="async")
    conn.execute("INSERT INTO pa_async VALUES ('eu', 1, 'via the parent')")
    conn.execute("INSERT INTO pa_async_us VALUES ('us', 2, 'via a partition')")
    conn.execute("CREATE TABLE pa_async_x (LIKE pa_async INCLUDING ALL)")
    conn.execute("INSERT INTO pa_async_x VALUES ('x', 3, 'attached with a row')")
    conn.execute("ALTER TABLE pa_async ATTACH PARTITION pa_async_x FOR VALUES IN ('x')")
    keys = conn.execute("SELECT row_key FROM clip_queue WHERE table_oid = 'pa_async'::regclass "
                        "ORDER BY row_key").fetchall()
    assert [json.loads(k[0]) for k in keys] == [["eu", 1], ["us", 2], ["x", 3]]
    conn.execute("CALL clip_worker('pa_async')")
    assert wrong(conn, "pa_async") == []


def test_remove_drops_the_triggers_of_every_partition(conn) -> None:
    parted(conn, "pa_rm")
    conn.execute("SELECT clip_auto_embed_remove('pa_rm')")
    left = conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgclip_%' AND "
                        "tgrelid IN (SELECT relid FROM pg_partition_tree('pa_rm'))").fetchone()[0]
    assert left == 0
    conn.execute("INSERT INTO pa_rm_eu VALUES ('eu', 1, 'no longer embedded')")


def test_a_trigger_works_on_a_table_that_is_not_registered(conn) -> None:
    """The trigger carries the column's configuration: a copy of the table with the same
    trigger (as a Citus shard would have) embeds without a clip_columns row of its own."""
    conn.execute("DROP TABLE IF EXISTS pa_src, pa_copy")
    conn.execute("CREATE TABLE pa_src (id int PRIMARY KEY, caption text)")
    conn.execute("SELECT clip_auto_embed('pa_src', 'caption', 'text')")
    conn.execute("CREATE TABLE pa_copy (LIKE pa_src INCLUDING ALL)")
    defs = conn.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger "
                        "WHERE tgrelid = 'pa_src'::regclass AND tgname LIKE 'pgclip_%'"
                        ).fetchall()
    assert len(defs) == 2
    for (d,) in defs:
        conn.execute(d.replace(" ON public.pa_src ", " ON public.pa_copy "))
    conn.execute("INSERT INTO pa_copy VALUES (1, 'a shard row')")
    assert conn.execute("SELECT (caption_embedding <=> clip_embed_text('a shard row')) < 1e-5 "
                        "FROM pa_copy").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM clip_columns WHERE table_oid = 'pa_copy'::regclass"
                        ).fetchone()[0] == 0


def test_unrelated_ddl_by_a_role_without_pgclip_is_untouched(conn, cluster, new_conn) -> None:
    """The event trigger reads pgclip's registry as its owner: DDL of roles that were never
    granted pgclip keeps working."""
    conn.execute("DROP ROLE IF EXISTS pa_stranger")
    conn.execute("CREATE ROLE pa_stranger LOGIN")
    conn.execute("GRANT CREATE ON SCHEMA public TO pa_stranger")
    try:
        c = new_conn(cluster.dsn(user="pa_stranger"))
        c.execute("CREATE TABLE pa_theirs (k int) PARTITION BY RANGE (k)")
        c.execute("CREATE TABLE pa_theirs_1 PARTITION OF pa_theirs FOR VALUES FROM (0) TO (9)")
        c.execute("ALTER TABLE pa_theirs ADD COLUMN v text")
        c.execute("DROP TABLE pa_theirs")
        c.close()
    finally:
        conn.execute("REVOKE CREATE ON SCHEMA public FROM pa_stranger")
        conn.execute("DROP ROLE pa_stranger")


@pytest.mark.parametrize("vector_type", ["halfvec"])
def test_partitioned_halfvec_column(conn, vector_type: str) -> None:
    conn.execute("DROP TABLE IF EXISTS pa_half CASCADE")
    conn.execute("CREATE TABLE pa_half (region text, id int, caption text, "
                 "PRIMARY KEY (region, id)) PARTITION BY LIST (region)")
    conn.execute("CREATE TABLE pa_half_eu PARTITION OF pa_half FOR VALUES IN ('eu')")
    conn.execute(f"SELECT clip_auto_embed('pa_half', 'caption', 'text', "
                 f"vector_type => '{vector_type}')")
    conn.execute("INSERT INTO pa_half_eu VALUES ('eu', 1, 'half the memory')")
    typ = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
                       "attrelid = 'pa_half_eu'::regclass AND attname = 'caption_embedding'"
                       ).fetchone()[0]
    assert typ.startswith("halfvec(")
    close = conn.execute("SELECT caption_embedding::vector <=> clip_embed_text(caption) "
                         "FROM pa_half").fetchone()[0]
    assert close < 1e-3


def test_naming_a_partition_says_which_table_to_name(conn) -> None:
    parted(conn, "pa_name")
    with pytest.raises(psycopg.errors.UndefinedObject) as e:
        conn.execute("CALL clip_backfill('pa_name_eu')")
    assert e.value.diag.message_hint == "It is a partition of public.pa_name: name that table."
