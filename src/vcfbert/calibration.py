"""DR2 recalibration: a DR2 conditioned on the variant being present, mapped to the true r²
learned on the validation split.

DR2 = var(DS) / (mean E[g²] − mean(DS)²) estimates the squared correlation between the dose
and the true genotype when the haplotype probabilities are calibrated. Two things keep the
model's DR2 below the true r² (docs/model.md, "DR2 recalibration"), and each step fixes one:

1. **Conditional DR2.** The true r² of a variant exists only where the imputed samples carry
   both alleles. For a rare variant, DR2 counts the chance that nobody carries it: a carrier
   found with p = 0.2 and small probabilities elsewhere gives DR2 ≈ 0.1, while whenever the
   variant is present that carrier has by far the highest dose (r² ≈ 1). The haplotype
   probabilities are therefore conditioned on the variant being polymorphic among the samples:
   ``p' = (p − A) / (1 − A − R)``, with ``A = Π p`` (every haplotype ALT) and
   ``R = Π (1 − p)`` (every haplotype REF), products over the samples' haplotypes (a haploid
   male's one allele counted once); ``p'`` is the probability of ALT given both alleles
   present, for independent haplotypes, and stays in [0, 1]. DR2 is computed from ``p'`` by
   the usual formula (:func:`conditional_dr2`). ``p'`` is affine in ``p`` per variant, so the
   whole computation runs on per-variant sums of ``p`` that add up over blocks of samples
   (:func:`dr2_sums`); the written dosages are untouched.
2. **A learned map.** Per reference-panel MAF bin (:data:`vcfbert.evaluate.BIN_LABELS`), an
   increasing map from conditional DR2 to the true r², fitted by isotonic regression (pool
   adjacent violators) on validation samples — held-out reference samples imputed under the
   targets' typed sites with their own sample excluded (:func:`vcfbert.train.calibrate_dr2`) —
   after grouping the variants into up to :data:`MAX_GROUPS` groups by conditional DR2
   (:func:`fit`). A bin with fewer than ``min_variants`` validation variants with a defined
   r² keeps the identity (the conditional DR2 itself).

Because the conditioning uses the samples' own probabilities, it adapts to the number of
samples: a map fitted on a few hundred validation samples carries over to a batch of a
thousand targets (measured in docs/model.md), which a map of the plain DR2 does not.

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

import numba
import numpy as np

from .atomic import write_text_atomic
from .errors import IntegrityError
from .kernels import ready
from .maf_bins import BIN_LABELS, bin_index

log = logging.getLogger(__name__)

FORMAT = "vcfbert-dr2-calibration"
FORMAT_VERSION = 1
METHOD = "conditional_dr2_isotonic_per_maf_bin"
MIN_VARIANTS = 200  # validation variants with a defined r² a MAF bin needs to be fitted
MAX_GROUPS = 40  # groups of variants (by conditional DR2) per MAF bin ...
MIN_GROUP = 25  # ... of at least this many variants each
SUM_ROWS = ("n_diploid", "s_dose", "s_dose2", "s_p1p2", "n_haploid", "s_hap", "s_hap2",
            "log_all_alt", "log_all_ref")


def dr2_sums(hap_prob: np.ndarray, haploid_samples: np.ndarray | None = None,
             haploid_variants: np.ndarray | None = None, use: np.ndarray | None = None,
             *, cells: int = 2_000_000) -> np.ndarray:
    """Per-variant sums behind the plain and the conditional DR2 over a block of samples, to
    be added up over blocks (rows :data:`SUM_ROWS`).

    Counted as the VCF writer counts them (:func:`vcfbert.vcf_cells.site_stats`):
    probabilities clipped to [0, 1]; a male (``haploid_samples``) at a haploid variant
    counts his one allele ``p1``.

    Args:
        hap_prob: float [2t, v] ALT probability per haplotype (sample ``s``: rows ``2s``,
            ``2s + 1``), an array or an HDF5 dataset.
        haploid_samples: bool [t] males (None: none).
        haploid_variants: bool [v] variants outside the pseudo-autosomal regions (None: none).
        use: bool [t, v] samples to count at each variant (None: all).
        cells: samples x variants read and summed at a time (bounds the memory of a block
            read from an HDF5 dataset).

    Returns:
        float64 [9, v]: diploid samples, Σ(p1 + p2), Σ(p1 + p2)², Σ p1 p2; haploid samples,
        Σ p1, Σ p1² (theirs); Σ log p and Σ log(1 − p) over the counted haplotypes.
    """
    n_t, v = hap_prob.shape[0] // 2, hap_prob.shape[1]
    male = (np.zeros(n_t, bool) if haploid_samples is None
            else np.asarray(haploid_samples, bool))
    hap_var = (np.zeros(v, bool) if haploid_variants is None
               else np.asarray(haploid_variants, bool))
    out = np.zeros((len(SUM_ROWS), v))
    step = max(1, cells // max(1, n_t))
    for lo in range(0, v, step):
        hi = min(v, lo + step)
        counted = (np.ones((n_t, hi - lo), bool) if use is None
                   else np.asarray(use[:, lo:hi], bool))
        out[:, lo:hi] = _block_sums(np.asarray(hap_prob[:, lo:hi]), male[:, None]
                                    & hap_var[None, lo:hi], counted)
    return out


# Σ log p and Σ log(1 − p) are logarithms of running float64 products, kept in the normal
# range by exact rescaling: a product below 2^-600 is multiplied by 2^600 (a power of two: no
# rounding) and the rescalings are counted. One sample multiplies in two float32 factors, each
# 0 or at least 2^-149 (the smallest float32 subnormal), so a product at least 2^-600 before
# a sample stays at least 2^-898 after it, above float64's smallest normal number (2^-1022).
_RESCALE_BELOW = 2.0 ** -600
_RESCALE_BY = 2.0 ** 600
_LOG_RESCALE = 600.0 * math.log(2.0)


@numba.njit(cache=True, nogil=True)
def _sums_kernel(hap_prob: np.ndarray, haploid_cell: np.ndarray, counted: np.ndarray,
                 plain: bool, out: np.ndarray) -> None:
    """Add the :func:`dr2_sums` of one block to ``out`` float64 [9, v]: ``hap_prob`` float32
    [2t, v], bool [t, v] cells written haploid and cells counted (both ignored when
    ``plain``: every cell diploid and counted).

    Σ log p and Σ log(1 − p) are each one logarithm per variant, of the float64 product of
    all the block's probabilities, rescaled exactly by powers of two as it shrinks (see
    ``_RESCALE_BELOW``): no logarithm per sample (a libm call the loop over variants cannot
    vectorise; one per two samples took two thirds of the kernel's time), and a product's
    rounding, not a sum of rounded logarithms."""
    n_t, v = hap_prob.shape[0] // 2, hap_prob.shape[1]
    f32 = np.float32
    prod_alt = np.ones(v)
    prod_ref = np.ones(v)
    rescaled_alt = np.zeros(v)  # the number of times each product was multiplied by 2^600
    rescaled_ref = np.zeros(v)
    for t in range(n_t):
        row1 = hap_prob[2 * t]
        row2 = hap_prob[2 * t + 1]
        for j in range(v):
            p1 = np.float64(min(max(row1[j], f32(0.0)), f32(1.0)))
            p2 = np.float64(min(max(row2[j], f32(0.0)), f32(1.0)))
            pa = prod_alt[j]
            pr = prod_ref[j]
            if plain or (counted[t, j] and not haploid_cell[t, j]):
                ds = p1 + p2
                out[0, j] += 1.0
                out[1, j] += ds
                out[2, j] += ds * ds
                out[3, j] += p1 * p2
                pa *= p1 * p2
                pr *= (1.0 - p1) * (1.0 - p2)
            elif counted[t, j]:  # a haploid cell: the one allele p1
                out[4, j] += 1.0
                out[5, j] += p1
                out[6, j] += p1 * p1
                pa *= p1
                pr *= 1.0 - p1
            small = pa < _RESCALE_BELOW
            prod_alt[j] = pa * _RESCALE_BY if small else pa
            rescaled_alt[j] += 1.0 if small else 0.0
            small = pr < _RESCALE_BELOW
            prod_ref[j] = pr * _RESCALE_BY if small else pr
            rescaled_ref[j] += 1.0 if small else 0.0
    for j in range(v):  # a zero product (a probability of exactly 0 or 1) stays zero: -inf
        out[7, j] += (math.log(prod_alt[j]) - rescaled_alt[j] * _LOG_RESCALE
                      if prod_alt[j] > 0.0 else -math.inf)
        out[8, j] += (math.log(prod_ref[j]) - rescaled_ref[j] * _LOG_RESCALE
                      if prod_ref[j] > 0.0 else -math.inf)


def _block_sums(hap_prob: np.ndarray, haploid_cell: np.ndarray,
                counted: np.ndarray) -> np.ndarray:
    """:func:`dr2_sums` of one block: ``hap_prob`` [2t, v] (an array), bool [t, v] cells
    written haploid, bool [t, v] cells counted -> float64 [9, v] (:func:`_sums_kernel`;
    the probabilities are taken in float32, as the VCF writer takes them)."""
    out = np.zeros((len(SUM_ROWS), hap_prob.shape[1]))
    plain = bool(not haploid_cell.any() and counted.all())
    ready(_sums_kernel)
    _sums_kernel(np.ascontiguousarray(hap_prob, np.float32),
                 np.ascontiguousarray(haploid_cell, np.bool_),
                 np.ascontiguousarray(counted, np.bool_), plain, out)
    return out


def _ratio(s_x: np.ndarray, s_x2: np.ndarray, s_e: np.ndarray, n: np.ndarray) -> np.ndarray:
    """DR2 from Σ dose, Σ dose², Σ E[g²] over ``n`` samples: var(DS) / (mean E[g²] −
    mean(DS)²), clipped to [0, 1]; 0 where the denominator is not above 1e-12."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s_x / n
        num = s_x2 / n - mean * mean
        den = s_e / n - mean * mean
        r2 = np.where(den > 1e-12, num / den, 0.0)
    return np.clip(np.nan_to_num(r2, nan=0.0), 0.0, 1.0)


def plain_dr2(sums: np.ndarray) -> np.ndarray:
    """float64 [v]: the writer's DR2 from :func:`dr2_sums` [9, v] (probabilities as they are)."""
    n_d, s1, s2, s12, n_h, h1, h2, _, _ = np.asarray(sums, np.float64)
    return _ratio(s1 + h1, s2 + h2, s1 + 2 * s12 + h1, n_d + n_h)


def conditional_dr2(sums: np.ndarray) -> np.ndarray:
    """float64 [v]: DR2 of the probabilities conditioned on the variant being polymorphic,
    ``p' = (p − A) / (1 − A − R)`` (module docstring), from :func:`dr2_sums` [9, v].

    With ``D = 1 − A − R``, a diploid sample's dose is ``(ds − 2A) / D`` and its E[g²] the
    dose plus ``2 (p1 p2 − A ds + A²) / D²``; a haploid one's dose and E[g²] are
    ``(p1 − A) / D``. 0 where ``D`` is 0 (every probability 0, or every one 1).
    """
    n_d, s1, s2, s12, n_h, h1, h2, log_a, log_r = np.asarray(sums, np.float64)
    a = np.exp(log_a)
    d = -np.expm1(np.logaddexp(log_a, log_r))  # 1 - A - R, accurate when A + R is near 1
    ok = d > 0
    d = np.where(ok, d, 1.0)
    s_x = (s1 - 2 * a * n_d + h1 - a * n_h) / d
    s_x2 = (s2 - 4 * a * s1 + 4 * a * a * n_d + h2 - 2 * a * h1 + a * a * n_h) / (d * d)
    s_e = s_x + 2 * (s12 - a * s1 + a * a * n_d) / (d * d)
    return np.where(ok, _ratio(s_x, s_x2, s_e, n_d + n_h), 0.0)


def isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to ``y`` [g] in weighted squared error (weights
    ``w`` [g] > 0), by pooling adjacent violators."""
    vals: list[float] = []
    wts: list[float] = []
    counts: list[int] = []
    for yi, wi in zip(np.asarray(y, np.float64), np.asarray(w, np.float64), strict=True):
        vals.append(float(yi))
        wts.append(float(wi))
        counts.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w_sum = wts[-2] + wts[-1]
            merged = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w_sum
            c = counts[-2] + counts[-1]
            del vals[-1], wts[-1], counts[-1]
            vals[-1], wts[-1], counts[-1] = merged, w_sum, c
    return np.repeat(vals, counts)


@dataclasses.dataclass
class Recalibration:
    """Per MAF bin (:data:`BIN_LABELS` order, B bins), an increasing piecewise-linear map
    from conditional DR2 to DR2 (flat beyond its end knots).

    Attributes:
        knots: per bin, (x float64 [g], y float64 [g]): conditional DR2 (group means,
            increasing) and the isotonic fit of the true r² there; ([0, 1], [0, 1]) where not
            fitted.
        groups: per bin, float64 [g, 3]: the data the fit saw — each group's mean conditional
            DR2, mean true r² and number of variants.
        variants: int64 [B] validation variants with a defined r² per bin.
        fitted: bool [B] whether the bin had ``min_variants`` of them.
        min_variants: the threshold.
        source: what the fit was made from (model, samples, windows, ...).
    """

    knots: list[tuple[np.ndarray, np.ndarray]]
    groups: list[np.ndarray]
    variants: np.ndarray
    fitted: np.ndarray
    min_variants: int = MIN_VARIANTS
    source: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def identity(cls) -> Recalibration:
        n = len(BIN_LABELS)
        return cls(knots=[(np.array([0.0, 1.0]), np.array([0.0, 1.0])) for _ in range(n)],
                   groups=[np.zeros((0, 3)) for _ in range(n)],
                   variants=np.zeros(n, np.int64), fitted=np.zeros(n, bool))

    def apply(self, dr2: np.ndarray, af: np.ndarray) -> np.ndarray:
        """float64 [v]: the recalibrated DR2 of conditional DR2 ``dr2`` [v] at variants of
        reference-panel ALT frequency ``af`` [v], in [0, 1]."""
        x = np.asarray(dr2, np.float64)
        bins = bin_index(af)
        out = x.copy()
        for i, (kx, ky) in enumerate(self.knots):
            sel = bins == i
            if sel.any():
                out[sel] = np.interp(x[sel], kx, ky)
        return np.clip(out, 0.0, 1.0)


def fit(x: np.ndarray, y: np.ndarray, af: np.ndarray, *, min_variants: int = MIN_VARIANTS,
        source: dict[str, Any] | None = None) -> Recalibration:
    """Fit the map of every MAF bin.

    Args:
        x: float [v] conditional DR2 of validation variants (:func:`conditional_dr2` over the
            validation samples).
        y: float [v] their true r² over the same samples (NaN where undefined: skipped).
        af: float [v] their reference-panel ALT frequency (the MAF bin).
        min_variants: fewer variants with a defined r² in a bin: the bin keeps the identity.
        source: provenance written into the file.

    Within a bin the variants are sorted by ``x`` and cut into up to :data:`MAX_GROUPS` groups
    of equal size (at least :data:`MIN_GROUP` variants each); the knots are the groups' mean
    ``x`` and the isotonic regression of their mean ``y`` (weighted by size).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    bins = bin_index(af)
    cal = Recalibration.identity()
    cal.min_variants, cal.source = int(min_variants), dict(source or {})
    for i, label in enumerate(BIN_LABELS):
        sel = (bins == i) & np.isfinite(y) & np.isfinite(x)
        cal.variants[i] = int(sel.sum())
        if cal.variants[i] < max(2, min_variants):
            log.info("DR2 calibration, MAF %s: %d validation variants with a defined r², fewer "
                     "than %d: the conditional DR2 is written as it is", label,
                     cal.variants[i], min_variants)
            continue
        order = np.argsort(x[sel], kind="stable")
        xs, ys = x[sel][order], y[sel][order]
        n_groups = int(min(MAX_GROUPS, max(2, xs.size // MIN_GROUP)))
        parts = np.array_split(np.arange(xs.size), n_groups)
        gx = np.array([xs[p].mean() for p in parts])
        gy = np.array([ys[p].mean() for p in parts])
        gn = np.array([p.size for p in parts], np.float64)
        fy = isotonic(gy, gn)
        # knots at distinct x (ties: the first group's fitted value, all equal after pooling
        # only when their y agree; average them to keep the map a function)
        ux, inv = np.unique(gx, return_inverse=True)
        uy = np.bincount(inv, weights=fy * gn) / np.bincount(inv, weights=gn)
        cal.knots[i] = (ux, uy)
        cal.groups[i] = np.stack([gx, gy, gn], 1)
        cal.fitted[i] = True
        log.info("DR2 calibration, MAF %s: %d validation variants, %d groups; conditional DR2 "
                 "0.5 -> %.3f, 0.8 -> %.3f, 0.9 -> %.3f", label, cal.variants[i], n_groups,
                 *np.interp([0.5, 0.8, 0.9], ux, uy))
    return cal


def to_json(cal: Recalibration) -> dict[str, Any]:
    """The file's content (see the module docstring)."""
    bins = []
    for i, label in enumerate(BIN_LABELS):
        kx, ky = cal.knots[i]
        bins.append({"maf_bin": label, "fitted": bool(cal.fitted[i]),
                     "variants": int(cal.variants[i]),
                     "knots": {"conditional_dr2": [round(float(v), 6) for v in kx],
                               "dr2": [round(float(v), 6) for v in ky]},
                     "groups": {"conditional_dr2": [round(float(v), 6) for v in cal.groups[i][:, 0]],
                                "true_r2": [round(float(v), 6) for v in cal.groups[i][:, 1]],
                                "variants": [int(v) for v in cal.groups[i][:, 2]]}})
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "method": METHOD,
            "min_variants": cal.min_variants, "source": cal.source, "bins": bins}


def save(cal: Recalibration, path: str | os.PathLike[str]) -> None:
    """Write ``cal`` as JSON, atomically."""
    write_text_atomic(path, json.dumps(to_json(cal), indent=1, sort_keys=True))


def load(path: str | os.PathLike[str]) -> Recalibration:
    """Read a file written by :func:`save`.

    Raises:
        IntegrityError: the file is unreadable, or not a DR2 calibration this vcfbert reads.
    """
    fix = "delete it and re-run the workflow to fit it again"
    try:
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{path}: unreadable DR2 calibration ({exc}); {fix}") from exc
    if d.get("format") != FORMAT or d.get("format_version") != FORMAT_VERSION:
        raise IntegrityError(f"{path}: not a {FORMAT} file of version {FORMAT_VERSION}; {fix}")
    labels = [b.get("maf_bin") for b in d.get("bins", [])]
    if d.get("method") != METHOD or labels != BIN_LABELS:
        raise IntegrityError(f"{path}: method {d.get('method')!r} with MAF bins {labels} is not "
                             f"this vcfbert's ({METHOD}, {BIN_LABELS}); {fix}")
    knots, groups = [], []
    for b in d["bins"]:
        kx = np.asarray(b["knots"]["conditional_dr2"], np.float64)
        ky = np.asarray(b["knots"]["dr2"], np.float64)
        if kx.size < 1 or kx.size != ky.size or (np.diff(kx) <= 0).any() or (np.diff(ky) < 0).any():
            raise IntegrityError(f"{path}: the knots of MAF bin {b['maf_bin']} are not an "
                                 f"increasing map; {fix}")
        knots.append((kx, ky))
        g = b["groups"]
        groups.append(np.stack([np.asarray(g["conditional_dr2"], np.float64),
                                np.asarray(g["true_r2"], np.float64),
                                np.asarray(g["variants"], np.float64)], 1).reshape(-1, 3))
    return Recalibration(knots=knots, groups=groups,
                         variants=np.array([b["variants"] for b in d["bins"]], np.int64),
                         fitted=np.array([b["fitted"] for b in d["bins"]], bool),
                         min_variants=int(d["min_variants"]), source=dict(d["source"]))
