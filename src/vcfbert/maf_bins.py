"""The reference-panel MAF bins that accuracy is reported by (and DR2 recalibrated in).

A module of its own so that the imputation job reads them without importing the evaluation
(which needs pandas, ~0.3 s of a job's serial start: docs/model.md, "Inference speed").
"""

from __future__ import annotations

import numpy as np

MAF_BINS = [0.0, 0.001, 0.005, 0.01, 0.05, 0.5]
BIN_LABELS = ["[0,0.001)", "[0.001,0.005)", "[0.005,0.01)", "[0.01,0.05)", "[0.05,0.5]"]


def bin_index(af: np.ndarray) -> np.ndarray:
    """int64 MAF bin (index into :data:`BIN_LABELS`) of each ALT frequency (same shape), by
    MAF = min(af, 1 - af)."""
    a = np.asarray(af, np.float64)
    maf = np.minimum(a, 1 - a)
    return np.clip(np.searchsorted(MAF_BINS, maf, side="right") - 1, 0,
                   len(BIN_LABELS) - 1).astype(np.int64)


def maf_bin(af: np.ndarray) -> np.ndarray:
    """Bin label of each ALT frequency (by MAF = min(af, 1 - af))."""
    return np.array(BIN_LABELS, dtype=object)[bin_index(af)]
