from pgclip.index_health import Recall, query_recall, summarize


def test_all_found() -> None:
    assert query_recall([0.0, 0.1, 0.2], [0.0, 0.1, 0.2]) == 1.0


def test_missed_rows_lower_recall() -> None:
    # The index skipped the rows at 0.1 and 0.2 and returned farther ones instead.
    assert query_recall([0.0, 0.1, 0.2], [0.0, 0.3, 0.4]) == 1 / 3


def test_fewer_rows_found_than_asked() -> None:
    # hnsw.ef_search caps what one index scan returns.
    assert query_recall([0.0, 0.1, 0.2, 0.3], [0.0]) == 0.25


def test_ties_at_the_boundary_count() -> None:
    # Two rows tie at the 2nd distance: either one is a correct answer.
    assert query_recall([0.0, 0.5], [0.0, 0.5]) == 1.0
    assert query_recall([0.0, 0.5], [0.0, 0.5 + 1e-12]) == 1.0
    assert query_recall([0.0, 0.5], [0.0, 0.5001]) == 0.5


def test_extra_found_rows_are_ignored() -> None:
    assert query_recall([0.0], [0.0, 0.0, 0.0]) == 1.0


def test_no_exact_rows() -> None:
    assert query_recall([], []) == 1.0


def test_summarize() -> None:
    assert summarize([1.0, 0.5, 0.75]) == Recall(3, 0.75, 0.5)
    assert summarize([]) == Recall(0, None, None)
    assert summarize([0.1] * 50).mean == 0.1
