"""The validation metrics of a training epoch, summed window by window.

:func:`vcfbert.train.validate` scores held-out panel haplotypes over every window of every
chromosome. Keeping their dosages, truths and frequencies until the end held
``variants x samples`` values of each (with the bin of each as an object array): 24 bytes a
sample and variant, ~1 GB at the default 24 validation samples on a chromosome of 1.8 million
variants, ~13 GB with every one of 300. :class:`ValidationSums` keeps instead, per MAF bin, the centred moments that the squared
correlation needs (merged between windows as Chan et al. merge variances), the carrier counts
of the F1 scores and the log-loss sum: memory bounded by one window, whatever the chromosome.
"""

from __future__ import annotations

import math

import numpy as np

from .maf_bins import BIN_LABELS, bin_index

# rows of ValidationSums.moments: one per MAF bin, then every present pair (the "overall" r²)
OVERALL = len(BIN_LABELS)


def _moments(d: np.ndarray, t: np.ndarray) -> np.ndarray:
    """float64 [6]: count, means of ``d`` and ``t``, their centred sums of squares and of
    cross-products (``d``, ``t``: float64 [x])."""
    n = d.size
    if n == 0:
        return np.zeros(6)
    md, mt = d.mean(), t.mean()
    dc, tc = d - md, t - mt
    return np.array([n, md, mt, dc @ dc, tc @ tc, dc @ tc])


def _merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The moments of two sets of pairs together, from each set's (:func:`_moments`)."""
    na, nb = a[0], b[0]
    if nb == 0:
        return a
    if na == 0:
        return b.copy()
    n = na + nb
    delta_d, delta_t = b[1] - a[1], b[2] - a[2]
    w = na * nb / n
    return np.array([n, a[1] + delta_d * nb / n, a[2] + delta_t * nb / n,
                     a[3] + b[3] + delta_d * delta_d * w, a[4] + b[4] + delta_t * delta_t * w,
                     a[5] + b[5] + delta_d * delta_t * w])


def _r2(m: np.ndarray) -> float:
    """Squared correlation of the pairs behind moments ``m`` (nan for fewer than two pairs
    or a constant side)."""
    if m[0] < 2 or m[3] <= 0 or m[4] <= 0:
        return float("nan")
    return float(m[5] * m[5] / (m[3] * m[4]))


class ValidationSums:
    """Running sums of a validation pass; :meth:`add` each window, then :meth:`metrics`."""

    def __init__(self) -> None:
        self.moments = np.zeros((OVERALL + 1, 6))  # per MAF bin, then overall
        self.f1_counts = np.zeros((2, 3), np.int64)  # (present, rare) x (tp, fp, fn)
        self.ll_sum = 0.0
        self.ll_n = 0

    def add(self, probs: np.ndarray, truth: np.ndarray, af: np.ndarray) -> None:
        """One window: ALT probabilities ``probs`` and true alleles ``truth`` float32
        [2s, n] of ``s`` samples' haplotypes (in pairs), and each sample's leave-one-out panel
        ALT frequency ``af`` [s, n]. Pairs whose variant the rest of the panel does not carry
        (``af`` 0) count in the log-loss only."""
        p = np.clip(probs, 1e-6, 1 - 1e-6)
        self.ll_sum += float(-(truth * np.log(p) + (1 - truth) * np.log1p(-p)).sum())
        self.ll_n += truth.size
        dose = (probs[0::2] + probs[1::2]).astype(np.float64).ravel()
        true = (truth[0::2] + truth[1::2]).astype(np.float64).ravel()
        af = np.asarray(af, np.float64).ravel()
        present = af > 0
        maf = np.minimum(af, 1 - af)
        idx = bin_index(af)
        for b in range(OVERALL):
            sel = present & (idx == b)
            self.moments[b] = _merge(self.moments[b], _moments(dose[sel], true[sel]))
        self.moments[OVERALL] = _merge(self.moments[OVERALL],
                                       _moments(dose[present], true[present]))
        called = np.round(dose) >= 1
        carrier = true >= 1
        for row, sel in enumerate((present, present & (maf < 0.01))):
            c, k = called[sel], carrier[sel]
            self.f1_counts[row] += [(c & k).sum(), (c & ~k).sum(), (~c & k).sum()]

    def metrics(self) -> dict[str, float]:
        """``val_logloss``, ``val_r2_<bin>`` (nan where a bin has fewer than two pairs or no
        variation), ``val_r2_overall``, ``val_r2_mean_bins`` (the bins' mean, nans left
        out), ``val_f1`` and ``val_rare_f1`` (MAF < 1 %); {} when nothing was added."""
        if self.ll_n == 0:
            return {}
        out: dict[str, float] = {"val_logloss": self.ll_sum / self.ll_n}
        r2s = []
        for b, label in enumerate(BIN_LABELS):
            r2 = _r2(self.moments[b])
            out[f"val_r2_{label}"] = r2
            if not math.isnan(r2):
                r2s.append(r2)
        out["val_r2_overall"] = _r2(self.moments[OVERALL])
        out["val_r2_mean_bins"] = float(np.mean(r2s)) if r2s else float("nan")
        for name, (tp, fp, fn) in zip(("val_f1", "val_rare_f1"), self.f1_counts, strict=True):
            out[name] = float(2 * tp / (2 * tp + fp + fn)) if (tp + fp + fn) else float("nan")
        return out
