"""Column ranges of chunked haplotype matrices (vcfbert.io.h5chunks)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from vcfbert.io import h5chunks
from vcfbert.io.h5chunks import read_columns


@pytest.fixture
def stores(tmp_path):
    """The same int8 matrix with the stores' filters, deflate alone, lzf, no compression and
    as float32; chunks that do not divide the shape; a dataset with unallocated chunks."""
    rng = np.random.default_rng(3)
    matrix = rng.integers(-1, 2, (13, 47)).astype(np.int8)
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("stores", data=matrix, chunks=(13, 6), compression="gzip",
                          compression_opts=1, shuffle=True)
        h5.create_dataset("row_chunks", data=matrix, chunks=(5, 7), compression="gzip")
        h5.create_dataset("lzf", data=matrix, chunks=(13, 6), compression="lzf")
        h5.create_dataset("plain", data=matrix)
        h5.create_dataset("floats", data=matrix.astype(np.float32), chunks=(13, 6),
                          compression="gzip", shuffle=True)
        sparse = h5.create_dataset("sparse", shape=(13, 47), dtype=np.int8, chunks=(13, 6),
                                   compression="gzip", fillvalue=-1)
        sparse[:, 10:20] = matrix[:, 10:20]
    expect_sparse = np.full_like(matrix, -1)
    expect_sparse[:, 10:20] = matrix[:, 10:20]
    h5 = h5py.File(path, "r")
    yield h5, {"stores": matrix, "row_chunks": matrix, "lzf": matrix, "plain": matrix,
               "floats": matrix.astype(np.float32), "sparse": expect_sparse}
    h5.close()


RANGES = [(0, 47), (0, 1), (5, 6), (6, 12), (7, 30), (46, 47), (20, 20)]


@pytest.mark.parametrize("name", ["stores", "row_chunks", "lzf", "plain", "floats", "sparse"])
def test_read_columns_equals_h5py(stores, name):
    h5, expect = stores
    for lo, hi in RANGES:
        got = read_columns(h5[name], lo, hi)
        assert got.dtype == expect[name].dtype and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expect[name][:, lo:hi])
        buf = np.zeros((20, 60), expect[name].dtype)
        view = buf[:13, 3:3 + hi - lo]  # a strided destination, as the window reader's buffer
        assert read_columns(h5[name], lo, hi, out=view) is view
        np.testing.assert_array_equal(view, expect[name][:, lo:hi])


def test_the_stores_filters_are_inflated_by_libdeflate(stores, monkeypatch):
    """The stores' pipeline (shuffle + deflate of one-byte elements) takes the libdeflate path:
    with h5py's reads forbidden it still reads; the other pipelines do not take it."""
    h5, expect = stores
    assert h5chunks._inflatable(h5["stores"]) and h5chunks._inflatable(h5["row_chunks"])
    for name in ("lzf", "plain", "floats"):
        assert not h5chunks._inflatable(h5[name])
    calls = []
    monkeypatch.setattr(h5py.Dataset, "__getitem__",
                        lambda self, key: calls.append(key) or np.zeros(0))
    np.testing.assert_array_equal(read_columns(h5["stores"], 4, 40), expect["stores"][:, 4:40])
    assert calls == []


def test_a_chunk_that_does_not_inflate_is_read_by_h5py(stores, monkeypatch):
    h5, expect = stores
    monkeypatch.setattr(h5chunks.deflate, "zlib_decompress",
                        lambda raw, size: b"\0" * (size - 1))  # short: not trusted
    np.testing.assert_array_equal(read_columns(h5["stores"], 0, 47), expect["stores"])


def test_bad_ranges_and_destinations_are_refused(stores):
    h5, _ = stores
    with pytest.raises(ValueError, match="columns 40:50"):
        read_columns(h5["stores"], 40, 50)
    with pytest.raises(ValueError, match="out is"):
        read_columns(h5["stores"], 0, 5, out=np.zeros((13, 4), np.int8))


INDEXES = [[], [0], [46], [5, 6], [3, 3, 4, 40], list(range(47)), [1, 7, 13, 19, 25, 31, 46],
           [12, 13, 14, 15, 16, 17, 18]]


@pytest.mark.parametrize("name", ["stores", "row_chunks", "lzf", "plain", "floats", "sparse"])
def test_selected_columns_equal_h5py(stores, name):
    """read_selected_columns (the reference at the targets' sites) against numpy's column
    selection of the whole matrix: single columns, repeats, every column, one per chunk,
    runs across a chunk's edge; through libdeflate or h5py."""
    h5, expect = stores
    for index in INDEXES:
        got = h5chunks.read_selected_columns(h5[name], np.array(index, np.int64))
        assert got.dtype == expect[name].dtype and got.shape == (13, len(index))
        np.testing.assert_array_equal(got, expect[name][:, index])


def test_selected_columns_of_the_stores_are_inflated_by_libdeflate(stores, monkeypatch):
    h5, expect = stores
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda *a: pytest.fail("h5py read"))
    for index in INDEXES:
        got = h5chunks.read_selected_columns(h5["stores"], np.array(index, np.int64))
        np.testing.assert_array_equal(got, expect["stores"][:, index])


def test_unsorted_or_outside_selections_are_refused(stores):
    h5, _ = stores
    for index in ([3, 2], [-1], [47]):
        with pytest.raises(ValueError, match="sorted within 0..46"):
            h5chunks.read_selected_columns(h5["stores"], np.array(index, np.int64))
