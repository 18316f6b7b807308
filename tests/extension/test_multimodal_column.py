"""One vector column fed by several sources of different modalities (clip_auto_embed called
again with the same vector_column; extension/sql/incremental/090-multimodal.sql and
plpython/pgclip/sql_api/autoembed.py) against a real cluster: every way rows arrive, the order
of preference, errors, async, backfill, partitions and search."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from tests.helpers import decoded, generated, notices

CAPTIONS = ["a red circle", "a blue square", "a green triangle"]


def make_mixed(conn: psycopg.Connection, name: str, **options: str) -> list[bytes]:
    """The issue's table: image rows and text rows, one vector column fed by both."""
    conn.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
    conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, type text, txt text, img bytea)")
    images = [b for _, b in generated(3, seed=15)]
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {name} VALUES (%s, 'image', NULL, %s)",
                        [(i, b) for i, b in enumerate(images, start=1)])
        cur.executemany(f"INSERT INTO {name} VALUES (%s, 'text', %s, NULL)",
                        [(10 + i, t) for i, t in enumerate(CAPTIONS, start=1)])
    extra = "".join(f", {k} => '{v}'" for k, v in options.items())
    for src, modality in (("img", "image"), ("txt", "text")):
        assert conn.execute(f"SELECT clip_auto_embed('{name}', '{src}', '{modality}', "
                            f"vector_column => 'features'{extra})").fetchone()[0] == "features"
    return images


def features(conn: psycopg.Connection, table: str) -> dict[int, np.ndarray | None]:
    return {i: None if v is None else v.to_numpy()
            for i, v in conn.execute(f"SELECT id, features FROM {table} ORDER BY id")}


def assert_close(got: np.ndarray | None, want: np.ndarray) -> None:
    assert got is not None
    assert np.max(np.abs(got - want)) <= 1e-5


def test_one_column_from_an_image_and_a_text_column(conn, ref) -> None:
    images = make_mixed(conn, "mm_basic")
    got = features(conn, "mm_basic")
    want_img = ref.image([decoded(b) for b in images])
    want_txt = ref.text(CAPTIONS)
    for i in range(3):
        assert_close(got[i + 1], want_img[i])
        assert_close(got[11 + i], want_txt[i])
    reg = conn.execute("SELECT source_column, modality, more_sources, more_modalities "
                       "FROM clip_columns WHERE table_oid = 'mm_basic'::regclass").fetchone()
    assert reg == ("img", "image", ["txt"], ["text"])
    status = conn.execute("SELECT total_rows, embedded_rows, pending_rows, failed_rows, "
                          "source_columns, modalities FROM clip_status "
                          "WHERE table_name = 'mm_basic'::regclass").fetchone()
    assert status == (6, 6, 0, 0, ["img", "txt"], ["image", "text"])
    # One HNSW index over the whole column (the second call did not add another).
    assert conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'mm_basic' "
                        "AND indexdef LIKE '%hnsw%'").fetchone()[0] == 1
    # Writes after set-up: a text row, an image row, through the same triggers.
    (_, b), = generated(1, seed=16)
    conn.execute("INSERT INTO mm_basic VALUES (20, 'text', 'a white cross', NULL), "
                 "(21, 'image', NULL, %s)", (b,))
    got = features(conn, "mm_basic")
    assert_close(got[20], ref.text(["a white cross"])[0])
    assert_close(got[21], ref.image([decoded(b)])[0])


def test_a_row_with_several_sources_takes_the_first_in_order_of_preference(conn, ref) -> None:
    images = make_mixed(conn, "mm_pref")
    want_img = ref.image([decoded(b) for b in images])
    # Both sources: the image (added first) wins; a change of the text alone keeps it.
    conn.execute("UPDATE mm_pref SET txt = 'a caption too' WHERE id = 1")
    assert_close(features(conn, "mm_pref")[1], want_img[0])
    conn.execute("UPDATE mm_pref SET img = NULL WHERE id = 1")  # now only the text
    assert_close(features(conn, "mm_pref")[1], ref.text(["a caption too"])[0])
    conn.execute("UPDATE mm_pref SET img = %s WHERE id = 11", (images[2],))  # text row + image
    assert_close(features(conn, "mm_pref")[11], want_img[2])
    conn.execute("UPDATE mm_pref SET img = NULL, txt = NULL WHERE id = 11")  # no source left
    assert features(conn, "mm_pref")[11] is None
    # A row inserted with both sources takes the image too.
    conn.execute("INSERT INTO mm_pref VALUES (30, 'both', 'a purple diamond', %s)", (images[1],))
    assert_close(features(conn, "mm_pref")[30], want_img[1])


def test_the_same_source_twice_is_a_pgclip_error_not_a_constraint_violation(conn) -> None:
    make_mixed(conn, "mm_twice")
    for src, modality in (("txt", "text"), ("img", "image")):
        with pytest.raises(psycopg.errors.DuplicateObject) as e:
            conn.execute(f"SELECT clip_auto_embed('mm_twice', '{src}', '{modality}', "
                         "vector_column => 'features')")
        assert e.value.diag.message_primary == (
            f'pgclip: public.mm_twice.features is already auto-embedded from "{src}"')
        assert "clip_auto_embed_remove()" in e.value.diag.message_hint
    assert conn.execute("SELECT more_sources FROM clip_columns "
                        "WHERE table_oid = 'mm_twice'::regclass").fetchone()[0] == ["txt"]


def test_a_video_column_takes_no_second_source(conn) -> None:
    conn.execute("DROP TABLE IF EXISTS mm_video CASCADE")
    conn.execute("CREATE TABLE mm_video (id int PRIMARY KEY, clip bytea, txt text)")
    conn.execute("SELECT clip_auto_embed('mm_video', 'txt', 'text', vector_column => 'v')")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as e:
        conn.execute("SELECT clip_auto_embed('mm_video', 'clip', 'video', vector_column => 'v')")
    assert "cannot take both a video and another source" in e.value.diag.message_primary
    assert "its own vector_column" in e.value.diag.message_hint


def test_the_second_source_keeps_the_columns_mode_and_says_so(conn, ref) -> None:
    conn.execute("DROP TABLE IF EXISTS mm_keep CASCADE")
    conn.execute("CREATE TABLE mm_keep (id int PRIMARY KEY, txt text, img bytea)")
    conn.execute("SELECT clip_auto_embed('mm_keep', 'img', 'image', vector_column => 'f', "
                 "mode => 'async', on_error => 'skip')")
    with notices(conn) as got:
        conn.execute("SELECT clip_auto_embed('mm_keep', 'txt', 'text', vector_column => 'f')")
    assert any("keeps its mode 'async', on_error 'skip'" in n for n in got), got
    assert conn.execute("SELECT mode, on_error FROM clip_columns "
                        "WHERE table_oid = 'mm_keep'::regclass").fetchone() == ("async", "skip")


def test_async_column_with_two_sources_is_embedded_by_the_worker(conn, ref) -> None:
    images = make_mixed(conn, "mm_async", mode="async")
    assert all(v is None for v in features(conn, "mm_async").values())
    assert conn.execute("SELECT count(*) FROM clip_queue "
                        "WHERE table_oid = 'mm_async'::regclass").fetchone()[0] == 6
    conn.execute("INSERT INTO mm_async VALUES (40, 'text', 'a black square', NULL)")
    conn.execute("CALL clip_worker('mm_async')")
    got = features(conn, "mm_async")
    want_img = ref.image([decoded(b) for b in images])
    for i in range(3):
        assert_close(got[i + 1], want_img[i])
    assert_close(got[40], ref.text(["a black square"])[0])
    # An update of the text of an image row does not change which source it is embedded from.
    conn.execute("UPDATE mm_async SET txt = 'ignored' WHERE id = 2")
    conn.execute("CALL clip_worker('mm_async')")
    assert_close(features(conn, "mm_async")[2], want_img[1])


def test_backfill_of_a_source_added_later(conn, ref) -> None:
    conn.execute("DROP TABLE IF EXISTS mm_later CASCADE")
    conn.execute("CREATE TABLE mm_later (id int PRIMARY KEY, txt text, img bytea)")
    conn.execute("SELECT clip_auto_embed('mm_later', 'img', 'image', vector_column => 'f')")
    conn.execute("INSERT INTO mm_later SELECT g, 'caption ' || g, NULL "
                 "FROM generate_series(1, 5) g")
    assert conn.execute("SELECT count(f) FROM mm_later").fetchone()[0] == 0
    conn.execute("SELECT clip_auto_embed('mm_later', 'txt', 'text', vector_column => 'f', "
                 "backfill => false)")
    assert conn.execute("SELECT pending_rows FROM clip_status "
                        "WHERE table_name = 'mm_later'::regclass").fetchone()[0] == 5
    conn.execute("CALL clip_backfill('mm_later', 'f')")
    got = [r[0].to_numpy() for r in conn.execute("SELECT f FROM mm_later ORDER BY id")]
    want = ref.text([f"caption {i}" for i in range(1, 6)])
    assert np.max(np.abs(np.stack(got) - want)) <= 1e-5


def test_a_bad_row_names_the_source_it_was_embedded_from(conn) -> None:
    make_mixed(conn, "mm_bad")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
        conn.execute("INSERT INTO mm_bad VALUES (50, 'image', 'fine text', 'not an image')")
    assert e.value.diag.message_primary.startswith("pgclip: could not embed row id = 50 of "
                                                   "public.mm_bad (img): ")
    make_mixed(conn, "mm_skip", on_error="skip")
    conn.execute("INSERT INTO mm_skip VALUES (50, 'image', NULL, 'not an image'), "
                 "(51, 'text', 'fine text', NULL)")
    assert features(conn, "mm_skip")[51] is not None
    assert conn.execute("SELECT row_key, sqlstate FROM clip_errors "
                        "WHERE table_oid = 'mm_skip'::regclass").fetchall() == [("50", "22023")]
    assert conn.execute("SELECT failed_rows, pending_rows FROM clip_status "
                        "WHERE table_name = 'mm_skip'::regclass").fetchone() == (1, 0)


def test_partitions_get_the_sources_too(conn, ref) -> None:
    conn.execute("DROP TABLE IF EXISTS mm_parted CASCADE")
    conn.execute("CREATE TABLE mm_parted (kind text, id int, txt text, img bytea, "
                 "PRIMARY KEY (kind, id)) PARTITION BY LIST (kind)")
    conn.execute("CREATE TABLE mm_parted_i PARTITION OF mm_parted FOR VALUES IN ('image')")
    conn.execute("CREATE TABLE mm_parted_t PARTITION OF mm_parted FOR VALUES IN ('text')")
    for src, modality in (("img", "image"), ("txt", "text")):
        conn.execute(f"SELECT clip_auto_embed('mm_parted', '{src}', '{modality}', "
                     "vector_column => 'features')")
    (_, b), = generated(1, seed=17)
    conn.execute("INSERT INTO mm_parted_t VALUES ('text', 1, 'straight into a partition', NULL)")
    conn.execute("INSERT INTO mm_parted VALUES ('image', 2, NULL, %s)", (b,))
    conn.execute("CREATE TABLE mm_parted_o PARTITION OF mm_parted FOR VALUES IN ('other')")
    conn.execute("INSERT INTO mm_parted_o VALUES ('other', 3, 'a partition made later', NULL)")
    got = {i: v.to_numpy() for i, v in conn.execute("SELECT id, features FROM mm_parted")}
    assert_close(got[1], ref.text(["straight into a partition"])[0])
    assert_close(got[2], ref.image([decoded(b)])[0])
    assert_close(got[3], ref.text(["a partition made later"])[0])


def test_search_over_the_column_with_a_type_filter(conn) -> None:
    make_mixed(conn, "mm_search")
    # Text -> images only, then text -> texts only, through one vector column.
    images = conn.execute("SELECT row_key FROM clip_search_text('mm_search', 'a red circle', 3, "
                          "'features', filter => 'type = ''image''')").fetchall()
    assert sorted(int(k) for k, in images) == [1, 2, 3]
    texts = conn.execute("SELECT row_key FROM clip_search_text('mm_search', 'a red circle', 1, "
                         "'features', filter => 'type = ''text''')").fetchall()
    assert texts == [("11",)]
    exact = conn.execute("SELECT id FROM mm_search ORDER BY features <=> "
                         "clip_embed_text('a red circle') LIMIT 6").fetchall()
    both = conn.execute("SELECT row_key FROM clip_search_text('mm_search', 'a red circle', 6, "
                        "'features')").fetchall()
    assert [int(k) for k, in both] == [i for i, in exact]


def test_readme_block_runs_as_written(new_conn) -> None:
    """README.md's "One column, several sources" block, in a schema of its own."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### One column, several sources", 1)[1].split("\n### ", 1)[0]
    block = section.split("```sql\n", 1)[1].split("```", 1)[0]
    c = new_conn()
    c.execute("DROP SCHEMA IF EXISTS readme_mm CASCADE")
    c.execute("CREATE SCHEMA readme_mm")
    c.execute("SET search_path = readme_mm, public")
    rows = None
    for statement in block.split(";")[:-1]:
        rows = c.execute(statement).fetchall() if "SELECT" in statement else c.execute(statement)
    assert rows == [(["img", "txt"], ["image", "text"])]
