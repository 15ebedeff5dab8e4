"""Windows tile the chromosome; layouts map sites to intervals between slots."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vcfbert.errors import InputError
from vcfbert.layout import make_layout
from vcfbert.windows import define_windows, impute_chunks


@settings(max_examples=60, deadline=None)
@given(n_var=st.integers(1, 400), frac=st.floats(0.01, 1.0), core=st.integers(1, 20),
       flank=st.integers(0, 30), seed=st.integers(0, 10_000))
def test_every_variant_in_exactly_one_core(n_var, frac, core, flank, seed):
    rng = np.random.default_rng(seed)
    pos = np.cumsum(rng.integers(1, 500, n_var))
    typed = np.flatnonzero(rng.random(n_var) < frac)
    if typed.size == 0:
        typed = np.array([rng.integers(n_var)])
    df = define_windows(pos, typed, core_sites=core, flank_sites=flank)
    counts = np.zeros(n_var, int)
    for w in df.itertuples():
        counts[w.core_start:w.core_end] += 1
        assert w.start_idx <= w.core_start < w.core_end <= w.end_idx
        # flanks hold up to `flank` typed sites on each side
        left_typed = ((typed >= w.start_idx) & (typed < w.core_start)).sum()
        assert left_typed <= flank + 1
    assert (counts == 1).all()


def test_window_counts_and_flanks():
    pos = np.arange(1, 1001) * 10
    typed = np.arange(0, 1000, 10)  # 100 typed sites
    df = define_windows(pos, typed, core_sites=20, flank_sites=5)
    assert len(df) == 5
    mid = df.iloc[2]
    assert mid.n_typed == 30
    assert df.iloc[0].start_idx == 0 and df.iloc[-1].end_idx == 1000


def test_no_typed_site_error():
    with pytest.raises(InputError, match="no typed site"):
        define_windows(np.arange(10), np.array([], int), core_sites=2, flank_sites=1)


def test_layout_intervals_and_fractions():
    pos = np.array([100, 200, 300, 400, 500, 600])
    typed = np.array([1, 4])
    lay = make_layout(pos, typed, 0, 6, 0, 6)
    assert lay.slot_index.tolist() == [1, 4]
    # sites 0..5: before slot0 -> 0; slot0 itself -> 0; between -> 1; slot1 -> 1; after -> 2
    assert lay.site_interval.tolist() == [0, 0, 1, 1, 1, 2]
    assert lay.site_slot.tolist() == [-1, 0, -1, -1, 1, -1]
    np.testing.assert_allclose(lay.site_frac[2:4], [1 / 3, 2 / 3], rtol=1e-6)
    assert lay.slot_core_dist.tolist() == [0, 0]


def test_layout_core_distance():
    pos = np.arange(20) * 10
    typed = np.arange(0, 20, 2)  # 10 slots
    lay = make_layout(pos, typed, 0, 20, 8, 12)  # core holds slots 4 and 5
    assert lay.slot_core_dist.tolist() == [4, 3, 2, 1, 0, 0, 1, 2, 3, 4]


@pytest.mark.parametrize("n,per_job", [(1, 8), (10, 8), (16, 8), (17, 8), (51, 8), (5, 1)])
def test_impute_chunks_cover_the_windows_in_order(n, per_job):
    ids = [f"w{i:04d}" for i in range(n)]
    chunks = impute_chunks(ids, per_job)
    assert [w for c in chunks.values() for w in c] == ids
    assert len(chunks) == -(-n // per_job)
    sizes = [len(c) for c in chunks.values()]
    assert max(sizes) <= per_job and max(sizes) - min(sizes) <= 1
    with pytest.raises(InputError, match="windows_per_job"):
        impute_chunks(ids, 0)


def test_window_table_reads_what_the_dataframe_reader_reads(tmp_path):
    """The pandas-free reader of the imputation job (read_window_table) gives every column of
    windows.tsv as written (and read_windows, built on it, the same DataFrame), finds a window's row, and refuses a table without a
    column, with a malformed row, or an unknown window with the file's or window's name."""
    from vcfbert.windows import read_window_table, read_windows, write_windows

    rng = np.random.default_rng(4)
    pos = np.cumsum(rng.integers(1, 500, 300))
    typed = np.flatnonzero(rng.random(300) < 0.2)
    path = tmp_path / "windows.tsv"
    df = define_windows(pos, typed, core_sites=7, flank_sites=5)  # what the file holds
    write_windows(df, path)
    table = read_window_table(path)
    # the DataFrame reader reads the same (it is built on the table)
    assert read_windows(path).equals(df)
    assert len(table) == len(df) > 3
    for column in df.columns:
        np.testing.assert_array_equal(table[column], df[column].to_numpy())
    assert table["window_id"].tolist() == df["window_id"].tolist()
    third = df.iloc[2]
    assert table.row(third.window_id) == {c: int(third[c]) for c in df.columns[1:]}
    with pytest.raises(InputError, match="w9999 is not in the windows table"):
        table.row("w9999")
    lines = path.read_text().splitlines()
    (tmp_path / "cut.tsv").write_text("\n".join(
        "\t".join(line.split("\t")[:-1]) for line in lines) + "\n")
    with pytest.raises(InputError, match=r"cut.tsv: windows table lacks columns \['n_core'\]"):
        read_window_table(tmp_path / "cut.tsv")
    (tmp_path / "bad.tsv").write_text("\n".join([*lines, "w0099\t1\tx"]) + "\n")
    with pytest.raises(InputError, match="bad.tsv: a row of the windows table is malformed"):
        read_window_table(tmp_path / "bad.tsv")


def test_windows_wider_than_the_kernel_takes_are_refused_when_laid_out():
    """A window of more typed sites than the imputation kernel takes (its match runs are
    int16) is refused when the windows are defined, naming the settings to lower, rather than
    at imputation, after training."""
    from vcfbert.windows import MAX_WINDOW_SLOTS

    pos = np.arange(1, MAX_WINDOW_SLOTS + 2) * 10
    typed = np.arange(pos.size)
    with pytest.raises(InputError, match="16,001 typed sites.*windows.core_sites"):
        define_windows(pos, typed, core_sites=MAX_WINDOW_SLOTS + 1, flank_sites=0)
    df = define_windows(pos, typed, core_sites=MAX_WINDOW_SLOTS // 2, flank_sites=0)
    assert df["n_typed"].max() <= MAX_WINDOW_SLOTS
