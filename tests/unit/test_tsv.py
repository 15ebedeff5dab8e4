"""vcfbert.io.tsv: the workflow's small tables read without pandas, as pandas read them."""

from __future__ import annotations

import pandas as pd
import pytest

from vcfbert.errors import InputError
from vcfbert.io.tsv import read_column, read_rows


def test_rows_and_columns_match_pandas_strings(tmp_path):
    path = tmp_path / "chromosomes.tsv"
    path.write_text("contig\twildcard\tgenetic_map_file\n"
                    "chr20\t20\t\n"
                    "NA\tNA\tmaps/chr21.map\n"
                    "01\t01\tx y.map\n")
    want = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    assert read_rows(path) == want.to_dict(orient="records")
    assert read_column(path, "wildcard") == ["20", "NA", "01"]
    assert read_column(path, "genetic_map_file") == ["", "maps/chr21.map", "x y.map"]


def test_a_header_only_table_has_no_rows(tmp_path):
    path = tmp_path / "w.tsv"
    path.write_text("window_id\tcore_start\n")
    assert read_rows(path) == []
    assert read_column(path, "window_id") == []


@pytest.mark.parametrize("text, message", [
    ("", "empty table"),
    ("a\tb\n1\t2\t3\n", "line 2 has more cells"),
])
def test_malformed_tables_are_refused(tmp_path, text, message):
    path = tmp_path / "t.tsv"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_rows(path)


def test_a_missing_column_is_named(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("contig\twildcard\n20\t20\n")
    with pytest.raises(InputError, match=r"no column 'window_id' \(columns: contig, wildcard\)"):
        read_column(path, "window_id")


def test_written_tables_are_pandas_text(tmp_path):
    """write_table writes what pandas' to_csv wrote for the same rows (the QC tables and
    ingest/chromosomes.tsv were written with it): bools, integers, formatted floats, NaN as an
    empty cell; and read_table reads it back."""
    import numpy as np

    from vcfbert.io.tsv import read_table, write_table

    rows = [{"contig": "20", "sample": "a b", "call_rate": np.float64(0.123456),
             "phased": np.bool_(True), "count": np.int64(3), "x": float("nan")},
            {"contig": "chr20", "sample": "c", "call_rate": 1.0, "phased": False, "count": 5,
             "x": 2.5}]
    header = ["contig", "sample", "call_rate", "phased", "count", "x"]
    write_table(tmp_path / "ours.tsv", header, rows, float_format="%.4f")
    pd.DataFrame(rows)[header].to_csv(tmp_path / "pandas.tsv", sep="\t", index=False,
                                      float_format="%.4f")
    assert (tmp_path / "ours.tsv").read_text() == (tmp_path / "pandas.tsv").read_text()
    assert read_table(tmp_path / "ours.tsv")[1][0] == {
        "contig": "20", "sample": "a b", "call_rate": "0.1235", "phased": "True", "count": "3",
        "x": ""}
