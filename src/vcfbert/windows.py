"""Window splitting: overlapping windows whose cores tile the chromosome.

Windows are laid out on the targets' typed sites: each core holds about ``core_sites`` typed
sites, and the window adds ``flank_sites`` typed sites on each side. Every reference variant lies
in exactly one core (cores are contiguous and cover ``[0, V)``), so it is predicted exactly once,
from a window where it has typed flanks on both sides (except at chromosome ends).

Columns of ``windows.tsv`` (indices are 0-based into the reference store, ``end`` exclusive):
``window_id, start_idx, end_idx, core_start, core_end, start_bp, end_bp, n_typed, n_core``.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import TYPE_CHECKING

import numpy as np

from .atomic import atomic_path
from .errors import InputError

if TYPE_CHECKING:  # pandas is imported where a DataFrame is made: the imputation job reads
    import pandas as pd  # its windows with read_window_table and never imports it

# the most typed sites (slots) a window may hold: the imputation kernel's match runs are int16
# (vcfbert.model.copy_kernel); refused here, when the windows are laid out, not after training
MAX_WINDOW_SLOTS = 16_000

COLUMNS = ["window_id", "start_idx", "end_idx", "core_start", "core_end", "start_bp", "end_bp",
           "n_typed", "n_core"]


def define_windows(position: np.ndarray, typed_index: np.ndarray, *, core_sites: int,
                   flank_sites: int) -> pd.DataFrame:
    """Lay out windows over ``V = len(position)`` variants.

    Args:
        position: int [V] sorted base-pair positions of the reference variants.
        typed_index: int [M] indices (into ``position``) of the typed sites, M >= 1.
        core_sites: typed sites per core (the last core absorbs the remainder).
        flank_sites: typed sites added on each side of the core.
    """
    if core_sites < 1 or flank_sites < 0:
        raise InputError("windows.core_sites must be >= 1 and windows.flank_sites >= 0")
    n_var = int(len(position))
    typed = np.unique(np.asarray(typed_index, dtype=np.int64))
    m = int(typed.size)
    if m == 0:
        raise InputError("no typed site: the targets share no site with the reference panel")
    if n_var == 0:
        raise InputError("the reference store has no variant")
    n_win = max(1, int(round(m / core_sites)))
    bounds = np.linspace(0, m, n_win + 1).round().astype(np.int64)
    rows = []
    core_starts = [0]
    for b in bounds[1:-1]:
        mid = (position[typed[b - 1]] + position[typed[b]]) / 2.0
        core_starts.append(int(np.searchsorted(position, mid, side="right")))
    core_starts.append(n_var)
    for k in range(n_win):
        cs, ce = core_starts[k], core_starts[k + 1]
        lo_t = max(0, int(bounds[k]) - flank_sites)
        hi_t = min(m - 1, int(bounds[k + 1]) - 1 + flank_sites)
        start = 0 if lo_t == 0 else min(cs, int(typed[lo_t]))
        end = n_var if hi_t == m - 1 else max(ce, int(typed[hi_t]) + 1)
        n_typed = int(((typed >= start) & (typed < end)).sum())
        rows.append({"window_id": f"w{k:04d}", "start_idx": start, "end_idx": end,
                     "core_start": cs, "core_end": ce, "start_bp": int(position[start]),
                     "end_bp": int(position[end - 1]), "n_typed": n_typed, "n_core": ce - cs})
    widest = max(row["n_typed"] for row in rows)
    if widest > MAX_WINDOW_SLOTS:
        raise InputError(f"a window holds {widest:,} typed sites, more than the "
                         f"{MAX_WINDOW_SLOTS:,} the imputation kernel takes: lower "
                         "windows.core_sites / windows.flank_sites")
    import pandas as pd

    df = pd.DataFrame(rows, columns=COLUMNS)
    check_windows(df, n_var)
    return df


def check_windows(df: pd.DataFrame, n_variants: int) -> None:
    """Raise ``ValueError`` unless the cores tile ``[0, n_variants)`` inside their windows."""
    cs = df["core_start"].to_numpy()
    ce = df["core_end"].to_numpy()
    if cs[0] != 0 or ce[-1] != n_variants or (cs[1:] != ce[:-1]).any() or (ce <= cs).any():
        raise ValueError("window cores do not tile the variants")
    if (df["start_idx"] > df["core_start"]).any() or (df["end_idx"] < df["core_end"]).any():
        raise ValueError("a window does not contain its core")


def write_windows(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False)


def read_windows(path: str | os.PathLike[str]) -> pd.DataFrame:
    """``windows.tsv`` as a DataFrame: :func:`read_window_table`'s columns."""
    import pandas as pd

    return pd.DataFrame(read_window_table(path).columns)


@dataclasses.dataclass(frozen=True)
class WindowTable:
    """``windows.tsv`` as columns (:data:`COLUMNS`), read without pandas
    (:func:`read_window_table`): ``table["window_id"]`` is str [W], the other columns int64
    [W], as a DataFrame's columns would be."""

    columns: dict[str, np.ndarray]

    def __getitem__(self, column: str) -> np.ndarray:
        return self.columns[column]

    def __len__(self) -> int:
        return int(self.columns["window_id"].shape[0])

    def row(self, window_id: str) -> dict[str, int]:
        """The integer columns of window ``window_id``."""
        hit = np.flatnonzero(self.columns["window_id"] == window_id)
        if hit.size == 0:
            raise InputError(f"window {window_id} is not in the windows table")
        return {c: int(self.columns[c][hit[0]]) for c in COLUMNS[1:]}


def read_window_table(path: str | os.PathLike[str]) -> WindowTable:
    """``windows.tsv`` (:func:`write_windows`) as a :class:`WindowTable`, with the csv module:
    the same columns as :func:`read_windows`, for the jobs that need no DataFrame."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        rows = list(reader)
    if header is None:
        raise InputError(f"{path}: the windows table is empty")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: windows table lacks columns {missing}")
    at = {c: header.index(c) for c in COLUMNS}
    try:
        columns = {c: (np.array([r[at[c]] for r in rows], dtype=str) if c == "window_id"
                       else np.array([int(r[at[c]]) for r in rows], dtype=np.int64))
                   for c in COLUMNS}
    except (IndexError, ValueError) as e:
        raise InputError(f"{path}: a row of the windows table is malformed ({e})") from e
    return WindowTable(columns)


def impute_chunks(window_ids: list[str], windows_per_job: int) -> dict[str, list[str]]:
    """Consecutive windows imputed by one job: ``{"c0000": ["w0000", ...], ...}``.

    ``ceil(W / windows_per_job)`` chunks of as-equal-as-possible size, so that a job's start-up
    (Python, torch, the model) is paid once per chunk rather than once per window, and the
    chunks' cores are contiguous (each chunk's output covers one range of variants).
    """
    if windows_per_job < 1:
        raise InputError("impute.windows_per_job must be >= 1")
    n = len(window_ids)
    n_chunks = max(1, -(-n // windows_per_job))
    bounds = np.linspace(0, n, n_chunks + 1).round().astype(int)
    return {f"c{k:04d}": list(window_ids[bounds[k]:bounds[k + 1]]) for k in range(n_chunks)}
