import numpy as np
import pytest

from model.evaluation import Exclusions


def test_from_pairs_sorts_dedups_and_keeps_empty_rows():
    excl = Exclusions.from_pairs([2, 0, 2, 2, 0], [7, 3, 1, 7, 3], num_queries=4)

    np.testing.assert_array_equal(excl.indptr, [0, 1, 1, 3, 3])
    np.testing.assert_array_equal(excl.row(0), [3])
    np.testing.assert_array_equal(excl.row(1), [])
    np.testing.assert_array_equal(excl.row(2), [1, 7])
    np.testing.assert_array_equal(excl.row(3), [])
    assert excl.num_queries == 4
    assert excl.nnz == 3
    assert excl.indices.dtype == np.int64


def test_arrays_are_read_only_and_callers_arrays_are_not_frozen():
    indptr, indices = np.array([0, 1]), np.array([5])
    excl = Exclusions(indptr=indptr, indices=indices)

    assert not excl.indices.flags.writeable
    assert indptr.flags.writeable and indices.flags.writeable
    with pytest.raises(ValueError):
        excl.indices[0] = 1


def test_empty_and_slice_pairs():
    assert Exclusions.empty(3).nnz == 0
    excl = Exclusions.from_pairs([0, 1, 1, 2], [4, 5, 6, 7], num_queries=3)

    rows, items = excl.slice_pairs(1, 3)

    np.testing.assert_array_equal(rows, [0, 0, 1])
    np.testing.assert_array_equal(items, [5, 6, 7])


def test_contains_marks_queries_whose_item_is_excluded():
    excl = Exclusions.from_pairs([0, 0, 2], [1, 2, 9], num_queries=3)

    np.testing.assert_array_equal(excl.contains([2, 2, 8]), [True, False, False])


@pytest.mark.parametrize(
    ("rows", "items", "num_queries", "message"),
    [
        ([0, 3], [1, 1], 3, r"\[0, 3\)"),
        ([0], [-1], 1, "must be >= 0"),
        ([0, 1], [1], 2, "same shape"),
        ([0.5], [1], 2, "integers"),
    ],
)
def test_from_pairs_rejects_bad_input(rows, items, num_queries, message):
    with pytest.raises(ValueError, match=message):
        Exclusions.from_pairs(rows, items, num_queries)


@pytest.mark.parametrize(("indptr", "indices"), [([1, 2], [0, 1]), ([0, 2, 1], [0, 1]), ([0, 3], [0, 1]), ([], [])])
def test_constructor_validates_csr(indptr, indices):
    with pytest.raises(ValueError):
        Exclusions(indptr=np.array(indptr, np.int64), indices=np.array(indices, np.int64))


def test_row_out_of_range():
    with pytest.raises(IndexError, match="row 2"):
        Exclusions.empty(2).row(2)
