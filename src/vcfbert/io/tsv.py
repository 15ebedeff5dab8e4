"""Small tab-separated tables (a header line, then rows) read with the csv module.

The Snakemake process reads the workflow's own tables (``ingest/chromosomes.tsv``,
``windows/<chrom>.tsv``) in its input functions; pandas would add ~0.3 s to every
``snakemake`` start (and, on a cluster, to every job's), for a few hundred rows of strings.
Values stay strings, empty cells empty strings (what ``pd.read_csv(..., dtype=str,
keep_default_na=False)`` gives). The small jobs write their tables with :func:`write_table`
(pandas' ``to_csv`` text), for the same reason.
"""

from __future__ import annotations

import csv
import numbers
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


def format_cell(value: object, float_format: str = "%.6g") -> str:
    """A cell as pandas' ``to_csv`` writes it: ``True`` / ``False``, integers as they are,
    floats with ``float_format`` (``nan`` as an empty cell), None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b":
        return str(bool(value))  # numpy's bool is not a numbers.Integral
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return "" if value != value else float_format % value
    return str(value)


def write_table(path: str | os.PathLike[str], header: list[str], rows: list[dict[str, object]],
                float_format: str = "%.6g") -> None:
    """Write ``rows`` (``{column: value}``, every column of ``header``) as a table that
    :func:`read_table` and ``pd.read_csv(path, sep="\\t")`` read, atomically (written under a
    temporary name, then renamed)."""
    from ..atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        out = csv.writer(fh, delimiter="\t", lineterminator="\n")
        out.writerow(header)
        for row in rows:
            out.writerow([format_cell(row[c], float_format) for c in header])
