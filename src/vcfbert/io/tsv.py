"""Small tab-separated tables (a header line, then rows) read with the csv module.

The Snakemake process reads the workflow's own tables (``ingest/chromosomes.tsv``,
``windows/<chrom>.tsv``) in its input functions; pandas would add ~0.3 s to every
``snakemake`` start (and, on a cluster, to every job's), for a few hundred rows of strings.
Values stay strings, empty cells empty strings (what ``pd.read_csv(..., dtype=str,
keep_default_na=False)`` gives).
"""

from __future__ import annotations

import csv
import os

from ..errors import InputError


def read_table(path: str | os.PathLike[str]) -> tuple[list[str], list[dict[str, str]]]:
    """The header and every row (``{column: value}``) of the table at ``path``, in one pass.

    Raises:
        InputError: the file has no header line, or a row has more cells than the header.
    """
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        if reader.fieldnames is None:
            raise InputError(f"{path}: empty table (no header line)")
        rows = []
        for row in reader:
            if None in row:
                raise InputError(f"{path}: line {reader.line_num} has more cells than the header")
            rows.append({k: ("" if v is None else v) for k, v in row.items()})
    return list(reader.fieldnames), rows


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Every row of the table at ``path`` as ``{column: value}`` (:func:`read_table`)."""
    return read_table(path)[1]


def read_column(path: str | os.PathLike[str], column: str) -> list[str]:
    """The values of ``column`` in the table at ``path``, in order.

    Raises:
        InputError: as :func:`read_table`, or the table has no such column.
    """
    header, rows = read_table(path)
    if column not in header:
        raise InputError(f"{path}: no column {column!r} (columns: {', '.join(header)})")
    return [row[column] for row in rows]
