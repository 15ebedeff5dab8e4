"""Train/validation split of the reference panel by sample, stratified by population."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .errors import InputError


def split_samples(samples: list[str], populations: list[str], *, val_fraction: float,
                  seed: int) -> pd.DataFrame:
    """Assign each sample to ``train`` or ``val``; every population contributes its share.

    Returns:
        DataFrame with columns sample, population, split (in the input order).
    """
    if not 0 <= val_fraction < 1:
        raise InputError(f"train.val_fraction must lie in [0, 1), not {val_fraction}")
    rng = np.random.default_rng(seed)
    pops = np.array([p or "unknown" for p in populations], dtype=object)
    split = np.array(["train"] * len(samples), dtype=object)
    for pop in sorted(set(pops)):
        idx = np.flatnonzero(pops == pop)
        n_val = int(round(val_fraction * idx.size))
        if val_fraction > 0 and idx.size >= 2:
            n_val = max(1, n_val)
        n_val = min(n_val, idx.size - 1)
        if n_val > 0:
            split[rng.permutation(idx)[:n_val]] = "val"
    if (split == "train").sum() < 2:
        raise InputError("fewer than 2 reference samples left for training; lower "
                         "train.val_fraction or use a larger panel")
    return pd.DataFrame({"sample": samples, "population": pops, "split": split})


def write_split(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False)


def read_split(path: str | os.PathLike[str]) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str)
