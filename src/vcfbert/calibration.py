"""DR2 recalibration: Platt scaling of the per-haplotype ALT probabilities, per MAF bin.

DR2 = var(DS) / (mean E[g²] − mean(DS)²) is the squared correlation between the dose and the
true genotype *if* the haplotype probabilities are calibrated. The model's are not quite:
e.g. a small ALT probability on every non-carrier haplotype of a rare variant, summed over
the samples, inflates the denominator and makes DR2 under-confident. Recalibration maps each
probability ``p`` to ``p' = sigmoid(a · logit(p) + b)``, with one ``(a, b)`` per reference-panel
MAF bin (:data:`vcfbert.evaluate.BIN_LABELS`), fitted by maximum likelihood against the true
alleles of held-out reference haplotypes (the validation split, imputed under the targets'
typed sites with their own sample excluded from retrieval; see
:func:`vcfbert.train.calibrate_dr2`). Only DR2 is computed from ``p'``; the written
dosages stay the model's.

The fit sees (haplotype, site) pairs through a histogram per MAF bin of ``logit(p)`` on a grid
of :data:`GRID_STEP` (pairs and ALT alleles per cell), so memory does not grow with the
number of pairs and the file keeps the data it was fitted on. Probabilities are clipped to
``[CLIP, 1 - CLIP]`` before the logit. A bin with fewer than ``min_alt_alleles`` ALT alleles
(or ALT-free / carrier-only) keeps the identity (a = 1, b = 0).

File: JSON (``format`` :data:`FORMAT`), written next to the selected model as
``results/train/dr2_calibration.json`` and carried by trained panels.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from typing import Any

import numpy as np

from .atomic import write_text_atomic
from .errors import InputError, IntegrityError
from .evaluate import BIN_LABELS, MAF_BINS

log = logging.getLogger(__name__)

FORMAT = "vcfbert-dr2-calibration"
FORMAT_VERSION = 1
METHOD = "platt_per_maf_bin"
CLIP = 1e-6
LOGIT_MAX = math.log((1 - CLIP) / CLIP)  # 13.8155...
GRID_STEP = 0.02  # histogram cell width in logit units
N_CELLS = int(round(2 * LOGIT_MAX / GRID_STEP)) + 1
MIN_ALT_ALLELES = 20


def logit(p: np.ndarray) -> np.ndarray:
    """float64 logit of ``p`` clipped to [CLIP, 1 - CLIP] (same shape)."""
    q = np.clip(np.asarray(p, np.float64), CLIP, 1 - CLIP)
    return np.log(q) - np.log1p(-q)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """float64 logistic function, overflow-free."""
    z = np.asarray(z, np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def bin_index(af: np.ndarray) -> np.ndarray:
    """int64 MAF bin (index into :data:`BIN_LABELS`) of each ALT frequency (same shape)."""
    a = np.asarray(af, np.float64)
    maf = np.minimum(a, 1 - a)
    return np.clip(np.searchsorted(MAF_BINS, maf, side="right") - 1, 0,
                   len(BIN_LABELS) - 1).astype(np.int64)


def cell_index(p: np.ndarray) -> np.ndarray:
    """int64 histogram cell of each probability (same shape): its clipped logit on the grid."""
    return np.clip(np.rint((logit(p) + LOGIT_MAX) / GRID_STEP), 0, N_CELLS - 1).astype(np.int64)


def cell_logit(cells: np.ndarray) -> np.ndarray:
    """float64 logit at the centre of histogram cells."""
    return np.asarray(cells, np.float64) * GRID_STEP - LOGIT_MAX


class PairHistogram:
    """(haplotype, site) pairs counted per MAF bin and ``logit(p)`` cell, to be fitted.

    Attributes:
        pairs: int64 [B, N_CELLS] pairs per (MAF bin, cell).
        alt: int64 [B, N_CELLS] of them, pairs whose true allele is ALT.
    """

    def __init__(self) -> None:
        self.pairs = np.zeros((len(BIN_LABELS), N_CELLS), np.int64)
        self.alt = np.zeros((len(BIN_LABELS), N_CELLS), np.int64)

    def add(self, prob: np.ndarray, allele: np.ndarray, af: np.ndarray) -> None:
        """Count a block of pairs.

        Args:
            prob: float [h, n] predicted ALT probability per haplotype and site.
            allele: int [h, n] true allele (0/1; negative: skip the pair).
            af: float [h, n] or [n] the reference-panel ALT frequency the prediction saw
                (leave-one-out for reference haplotypes); pairs at frequency 0 or 1 (the
                panel without this sample lacks one allele: nothing to impute) are skipped.
        """
        prob = np.asarray(prob)
        allele = np.asarray(allele)
        af = np.broadcast_to(np.asarray(af, np.float64), prob.shape)
        keep = (allele >= 0) & (af > 0) & (af < 1) & np.isfinite(prob)
        flat = bin_index(af[keep]) * N_CELLS + cell_index(prob[keep])
        size = self.pairs.size
        self.pairs += np.bincount(flat, minlength=size).reshape(self.pairs.shape)
        self.alt += np.bincount(flat, weights=(allele[keep] == 1),
                                minlength=size).astype(np.int64).reshape(self.alt.shape)

    def merge(self, other: PairHistogram) -> None:
        self.pairs += other.pairs
        self.alt += other.alt


def fit_platt(x: np.ndarray, n: np.ndarray, k: np.ndarray, *, max_steps: int = 50,
              tol: float = 1e-9) -> tuple[float, float, int]:
    """Maximum-likelihood ``(a, b)`` of ``P(ALT) = sigmoid(a x + b)`` by damped Newton (IRLS).

    Args:
        x: float [c] logits (histogram cell centres).
        n: [c] pairs at each ``x``; k: [c] of them ALT (binomial counts).
        max_steps: Newton steps at most; tol: stop when the step is this small.

    Returns:
        (a, b, Newton steps taken), starting from the identity (1, 0); each step is halved
        until the log-likelihood does not decrease.
    """
    x = np.asarray(x, np.float64)
    n = np.asarray(n, np.float64)
    k = np.asarray(k, np.float64)

    def loglik(a: float, b: float) -> float:
        z = a * x + b
        # k log s(z) + (n - k) log(1 - s(z)) = k z - n log(1 + e^z)
        return float((k * z - n * np.logaddexp(0.0, z)).sum())

    a, b = 1.0, 0.0
    ll = loglik(a, b)
    steps = 0
    for steps in range(1, max_steps + 1):  # noqa: B007
        q = sigmoid(a * x + b)
        r = k - n * q  # gradient terms
        w = n * q * (1 - q)
        grad = np.array([(r * x).sum(), r.sum()])
        hess = np.array([[(w * x * x).sum(), (w * x).sum()], [(w * x).sum(), w.sum()]])
        try:
            step = np.linalg.solve(hess + 1e-9 * np.eye(2), grad)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        while t > 1e-6:
            a_new, b_new = a + t * step[0], b + t * step[1]
            ll_new = loglik(a_new, b_new)
            if ll_new >= ll - 1e-12 * abs(ll):
                break
            t /= 2
        else:
            break
        a, b, ll = a_new, b_new, ll_new
        if np.abs(t * step).max() < tol:
            break
    return a, b, steps


@dataclasses.dataclass
class Recalibration:
    """Per MAF bin (:data:`BIN_LABELS` order, B bins): ``p' = sigmoid(a logit(p) + b)``.

    Attributes:
        a, b: float64 [B] slope and intercept (1 and 0 where not fitted).
        pairs, alt_alleles: int64 [B] (haplotype, site) pairs and true ALT alleles seen.
        fitted: bool [B] whether the bin had data enough to be fitted.
        min_alt_alleles: the threshold below which a bin keeps the identity.
        source: what the fit was made from (model, haplotypes, windows, ...).
        histogram: the pairs it was fitted on (None when not kept).
    """

    a: np.ndarray
    b: np.ndarray
    pairs: np.ndarray
    alt_alleles: np.ndarray
    fitted: np.ndarray
    min_alt_alleles: int = MIN_ALT_ALLELES
    source: dict[str, Any] = dataclasses.field(default_factory=dict)
    histogram: PairHistogram | None = None

    @classmethod
    def identity(cls) -> Recalibration:
        b = len(BIN_LABELS)
        return cls(a=np.ones(b), b=np.zeros(b), pairs=np.zeros(b, np.int64),
                   alt_alleles=np.zeros(b, np.int64), fitted=np.zeros(b, bool))

    def apply(self, prob: np.ndarray, af: np.ndarray) -> np.ndarray:
        """Recalibrated probabilities float32 [h, n] of ``prob`` [h, n] at sites of panel ALT
        frequency ``af`` [n]. A bin with the identity map passes ``p`` through unchanged (no
        clipping)."""
        prob = np.asarray(prob, np.float32)
        bins = bin_index(af)
        a, b = self.a[bins], self.b[bins]
        out = sigmoid(a * logit(prob) + b).astype(np.float32)
        identity = (a == 1.0) & (b == 0.0)
        return np.where(identity, prob, out)


def fit(hist: PairHistogram, *, min_alt_alleles: int = MIN_ALT_ALLELES,
        source: dict[str, Any] | None = None) -> Recalibration:
    """Fit the Platt map of every MAF bin of ``hist``; identity where a bin has fewer than
    ``min_alt_alleles`` ALT alleles or fewer REF alleles than that."""
    cal = Recalibration.identity()
    cal.min_alt_alleles, cal.source, cal.histogram = int(min_alt_alleles), dict(source or {}), hist
    x = cell_logit(np.arange(N_CELLS))
    for i, label in enumerate(BIN_LABELS):
        n, k = hist.pairs[i], hist.alt[i]
        cal.pairs[i], cal.alt_alleles[i] = int(n.sum()), int(k.sum())
        if cal.alt_alleles[i] < min_alt_alleles or cal.pairs[i] - cal.alt_alleles[i] < min_alt_alleles:
            log.info("DR2 calibration, MAF %s: %d ALT alleles in %d pairs, fewer than %d: "
                     "identity", label, cal.alt_alleles[i], cal.pairs[i], min_alt_alleles)
            continue
        nz = n > 0
        a, b, steps = fit_platt(x[nz], n[nz], k[nz])
        cal.a[i], cal.b[i], cal.fitted[i] = a, b, True
        log.info("DR2 calibration, MAF %s: a = %.4f, b = %.4f (%d ALT alleles in %d pairs, %d "
                 "Newton steps)", label, a, b, cal.alt_alleles[i], cal.pairs[i], steps)
    return cal


def to_json(cal: Recalibration) -> dict[str, Any]:
    """The file's content (see the module docstring)."""
    bins = []
    for i, label in enumerate(BIN_LABELS):
        row: dict[str, Any] = {"maf_bin": label, "a": float(cal.a[i]), "b": float(cal.b[i]),
                               "pairs": int(cal.pairs[i]), "alt_alleles": int(cal.alt_alleles[i]),
                               "fitted": bool(cal.fitted[i])}
        if cal.histogram is not None:
            cells = np.flatnonzero(cal.histogram.pairs[i])
            row["histogram"] = {"cell": cells.tolist(),
                                "pairs": cal.histogram.pairs[i, cells].tolist(),
                                "alt": cal.histogram.alt[i, cells].tolist()}
        bins.append(row)
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "method": METHOD,
            "clip": CLIP, "grid_step": GRID_STEP, "logit_max": LOGIT_MAX,
            "min_alt_alleles": cal.min_alt_alleles, "source": cal.source, "bins": bins}


def save(cal: Recalibration, path: str | os.PathLike[str]) -> None:
    """Write ``cal`` as JSON, atomically."""
    write_text_atomic(path, json.dumps(to_json(cal), indent=1, sort_keys=True))


def load(path: str | os.PathLike[str]) -> Recalibration:
    """Read a file written by :func:`save`.

    Raises:
        IntegrityError: the file is unreadable or not a DR2 calibration of this version.
    """
    try:
        d = json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{path}: unreadable DR2 calibration ({exc}); delete it and "
                             "re-run the workflow to fit it again") from exc
    if d.get("format") != FORMAT or int(d.get("format_version", -1)) != FORMAT_VERSION:
        raise IntegrityError(f"{path}: not a {FORMAT} file of version {FORMAT_VERSION}; delete "
                             "it and re-run the workflow to fit it again")
    if d.get("method") != METHOD or [r["maf_bin"] for r in d["bins"]] != BIN_LABELS:
        raise IntegrityError(f"{path}: method {d.get('method')!r} or MAF bins "
                             f"{[r.get('maf_bin') for r in d['bins']]} are not this vcfbert's "
                             f"({METHOD}, {BIN_LABELS}); re-fit it with this vcfbert")
    if float(d.get("grid_step", GRID_STEP)) != GRID_STEP or float(d.get("clip", CLIP)) != CLIP:
        raise IntegrityError(f"{path}: grid or clipping differ from this vcfbert's; re-fit it")
    rows = d["bins"]
    hist = None
    if all("histogram" in r for r in rows):
        hist = PairHistogram()
        for i, r in enumerate(rows):
            cells = np.asarray(r["histogram"]["cell"], np.int64)
            hist.pairs[i, cells] = r["histogram"]["pairs"]
            hist.alt[i, cells] = r["histogram"]["alt"]
    return Recalibration(a=np.array([r["a"] for r in rows], np.float64),
                         b=np.array([r["b"] for r in rows], np.float64),
                         pairs=np.array([r["pairs"] for r in rows], np.int64),
                         alt_alleles=np.array([r["alt_alleles"] for r in rows], np.int64),
                         fitted=np.array([r["fitted"] for r in rows], bool),
                         min_alt_alleles=int(d["min_alt_alleles"]), source=dict(d["source"]),
                         histogram=hist)


def check_min_alt(value: int) -> int:
    """``min_alt_alleles`` from the config, checked."""
    if int(value) < 1:
        raise InputError(f"dr2_calibration.min_alt_alleles must be at least 1, not {value}")
    return int(value)
