"""top_rows: the largest entries of each row, largest first, ties by smaller id, against a
sort of the whole row."""

from __future__ import annotations

import numpy as np
import pytest

from vcfbert.top_rows import top_rows


def _reference(values: np.ndarray, want: int) -> np.ndarray:
    """Ids of the ``want`` largest entries per row by a full sort: value descending, then id
    (np.lexsort's last key is the primary one; -0.0 and 0.0 compare equal)."""
    ids = np.broadcast_to(np.arange(values.shape[1]), values.shape)
    return np.lexsort((ids, -values), axis=1)[:, :want]


@pytest.mark.parametrize("seed", range(6))
def test_top_rows_equals_a_full_sort(seed):
    """Random rows with many ties (values rounded to one decimal, signed zeros included), one
    constant row, a row with a single distinct maximum, and every ``want`` from none to all."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 700))
    values = rng.uniform(-1, 1, size=(5, n)).astype(np.float32)
    if seed % 2:
        values = np.round(values, 1)  # many ties, and -0.0 beside 0.0
    values[3] = 0.25  # all equal: the first ids
    values[4] = -0.5
    values[4, n // 2] = 0.75
    for want in sorted({0, 1, 2, n // 3, n // 2, n - 1, n}):
        ids, top = top_rows(values, want)
        expect = _reference(values, want)
        np.testing.assert_array_equal(ids, expect)
        np.testing.assert_array_equal(top, np.take_along_axis(values, expect, 1))
        assert ids.dtype == np.int64 and top.dtype == np.float32


def test_top_rows_sizes_of_the_imputation():
    """The imputation's shape (6,000 reference keys, 448 states) with tightly packed values:
    the wanted entries and the next ones share histogram bins."""
    rng = np.random.default_rng(7)
    values = (0.9 + rng.normal(scale=1e-4, size=(4, 6000))).astype(np.float32)
    values[:, 100:140] = values[:, 99:100]  # a run of exact ties around the cut
    ids, _ = top_rows(values, 448)
    np.testing.assert_array_equal(ids, _reference(values, 448))


def test_top_rows_refuses_what_it_cannot_rank():
    with pytest.raises(ValueError, match="wanted from rows of 4"):
        top_rows(np.zeros((2, 4), np.float32), 5)
    with pytest.raises(ValueError, match="finite"):
        top_rows(np.array([[0.0, np.nan, 1.0]], np.float32), 1)
    with pytest.raises(ValueError, match="matrix"):
        top_rows(np.zeros(4, np.float32), 1)
