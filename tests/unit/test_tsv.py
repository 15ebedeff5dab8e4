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
