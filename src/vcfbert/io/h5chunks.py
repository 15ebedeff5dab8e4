"""Column ranges of the stores' chunked haplotype matrices, decompressed by libdeflate.

The stores keep every haplotype matrix (``call_haplotype``, ``reference_call_haplotype``:
int8 [haplotypes, variants]) in chunks of all haplotypes over ~170 variants, shuffled and
deflated (gzip level 1). h5py reads a column range through HDF5's own filter pipeline (zlib):
0.2-0.4 s for a 6,000 x 16,500 window core of ``ooa_speed``. :func:`read_columns` reads the
same chunks' stored bytes (``read_direct_chunk``) and inflates them with libdeflate (the
``deflate`` package the VCF writer already uses): 0.08 s, the same array.

For one-byte elements the shuffle filter moves no byte, so a pipeline of shuffle and deflate
is inflated alone. Anything else — another filter, a multi-byte type, a contiguous dataset, a
chunk stored with a filter skipped or not stored at all, a chunk that does not inflate to its
size — is read by h5py, so the result never depends on the path taken.
"""

from __future__ import annotations

import deflate
import h5py
import numpy as np

_SHUFFLE = h5py.h5z.FILTER_SHUFFLE
_DEFLATE = h5py.h5z.FILTER_DEFLATE


def _inflatable(data: h5py.Dataset) -> bool:
    """Whether ``data`` is a chunked 2-D dataset of one-byte elements whose filters are
    deflate, alone or after shuffle (what :func:`read_columns` inflates itself)."""
    if data.ndim != 2 or data.dtype.itemsize != 1 or data.chunks is None:
        return False
    plist = data.id.get_create_plist()
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    return filters in ([_DEFLATE], [_SHUFFLE, _DEFLATE])


def read_columns(data: h5py.Dataset, lo: int, hi: int,
                 out: np.ndarray | None = None) -> np.ndarray:
    """``data[:, lo:hi]`` of a 2-D dataset, into ``out`` [rows, hi - lo] when given (else a
    fresh C-contiguous array); through libdeflate chunk by chunk where the dataset allows it
    (see the module docstring), else through h5py.

    Raises:
        ValueError: ``lo``/``hi`` outside the dataset's columns, or ``out`` of another shape
            or type.
    """
    rows, cols = data.shape
    if not 0 <= lo <= hi <= cols:
        raise ValueError(f"read_columns: columns {lo}:{hi} of a dataset of {cols}")
    if out is None:
        out = np.empty((rows, hi - lo), data.dtype)
    elif out.shape != (rows, hi - lo) or out.dtype != data.dtype:
        raise ValueError(f"read_columns: out is {out.dtype} {out.shape}, not {data.dtype} "
                         f"{(rows, hi - lo)}")
    if hi == lo or rows == 0:
        return out
    if not _inflatable(data):
        out[...] = data[:, lo:hi]
        return out
    chunk_rows, chunk_cols = data.chunks
    chunk_bytes = chunk_rows * chunk_cols  # one-byte elements
    for r0 in range(0, rows, chunk_rows):
        r1 = min(rows, r0 + chunk_rows)
        for c0 in range(lo - lo % chunk_cols, hi, chunk_cols):
            s0, s1 = max(lo, c0), min(hi, c0 + chunk_cols)
            chunk = _inflated_chunk(data, r0, c0, chunk_bytes)
            if chunk is None:
                out[r0:r1, s0 - lo:s1 - lo] = data[r0:r1, s0:s1]
            else:
                block = np.frombuffer(chunk, data.dtype).reshape(chunk_rows, chunk_cols)
                out[r0:r1, s0 - lo:s1 - lo] = block[:r1 - r0, s0 - c0:s1 - c0]
    return out


def read_selected_columns(data: h5py.Dataset, index: np.ndarray) -> np.ndarray:
    """``data[:, index]`` of a 2-D dataset for sorted column indices ``index`` int [M]
    (repeats allowed): each chunk that holds some of them is inflated once and only those
    columns are copied out of it, where reading whole column ranges (:func:`read_columns`)
    and picking the columns from them copied every chunk twice (a reference's array sites:
    ~3 of every chunk's ~170 columns; docs/model.md, "Inference speed").

    Raises:
        ValueError: ``index`` not sorted or outside the dataset's columns.
    """
    index = np.asarray(index, np.int64)
    rows, cols = data.shape
    if index.size and (index[0] < 0 or index[-1] >= cols or (np.diff(index) < 0).any()):
        raise ValueError(f"read_selected_columns: indices must be sorted within 0..{cols - 1}")
    out = np.empty((rows, index.size), data.dtype)
    if index.size == 0 or rows == 0:
        return out
    # a chunk at a time: inflated by libdeflate where the stores' filters allow it, else
    # read by h5py (a contiguous dataset in ranges of 4,096 columns)
    inflate = _inflatable(data)
    chunk_rows, chunk_cols = data.chunks or (rows, 4096)
    chunk_bytes = chunk_rows * chunk_cols  # one-byte elements, where inflated
    starts = np.arange(int(index[0]) - int(index[0]) % chunk_cols, int(index[-1]) + 1,
                       chunk_cols)
    bounds = np.searchsorted(index, np.append(starts, starts[-1] + chunk_cols))
    for c0, i0, i1 in zip(starts.tolist(), bounds[:-1].tolist(), bounds[1:].tolist(),
                          strict=True):
        if i1 == i0:
            continue
        local = index[i0:i1] - c0
        for r0 in range(0, rows, chunk_rows):
            r1 = min(rows, r0 + chunk_rows)
            chunk = _inflated_chunk(data, r0, c0, chunk_bytes) if inflate else None
            if chunk is None:
                c1 = min(cols, c0 + chunk_cols)
                out[r0:r1, i0:i1] = data[r0:r1, c0:c1][:, local]
            else:
                block = np.frombuffer(chunk, data.dtype).reshape(chunk_rows, chunk_cols)
                out[r0:r1, i0:i1] = block[:r1 - r0, local]
    return out


def _inflated_chunk(data: h5py.Dataset, r0: int, c0: int, size: int) -> bytes | None:
    """The chunk at (r0, c0) inflated (``size`` bytes); None when it is not stored, was
    stored with a filter skipped, or does not inflate to ``size`` bytes (h5py reads it)."""
    try:
        mask, raw = data.id.read_direct_chunk((r0, c0))
    except (OSError, KeyError, RuntimeError, ValueError):
        return None
    if mask:
        return None
    try:
        chunk = deflate.zlib_decompress(raw, size)
    except deflate.DeflateError:
        return None
    return chunk if len(chunk) == size else None
