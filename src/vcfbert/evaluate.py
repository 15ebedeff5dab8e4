"""Accuracy of an imputed VCF against the targets' truth VCF, by reference-panel MAF bin.

Works on any imputed VCF with ``DS`` (vcfbert, Beagle 5.4, Minimac4) or only ``GT``. Metrics,
computed over (variant, sample) pairs of untyped reference-panel variants:

* ``r2``: aggregate dosage r² — squared Pearson correlation of DS and the true ALT count,
  pooled over all genotypes in the bin (as in Beagle's papers);
* ``concordance``: best-guess genotype equals the truth;
* ``nrd``: non-reference discordance, 1 - (correct among pairs where either call is non-ref);
* ``f1``: F1 of calling ALT carriers (true count >= 1 vs best-guess count >= 1).
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .errors import InputError
from .io.vcf import iter_variants, list_contigs, normalize_contig, sample_ids
from .maf_bins import BIN_LABELS, MAF_BINS, maf_bin  # noqa: F401 (the bins' old home)

log = logging.getLogger(__name__)



def true_dose(v) -> np.ndarray:
    """float64 [S] true ALT count of a :class:`vcfbert.io.vcf.Variant` read with
    ``haploid="duplicate"``: a haploid call counts its allele once; NaN where missing."""
    h = v.haplotypes.reshape(-1, 2).astype(np.float64)
    dose = np.where((h < 0).any(1), np.nan, h.sum(1))
    if v.haploid is not None:
        dose = np.where(v.haploid, dose / 2, dose)
    return dose


def best_guess(gt: np.ndarray) -> np.ndarray:
    """float32 [S] ALT count of cyvcf2 genotypes [S, ploidy + 1] (-2 pads a haploid call,
    -1 is missing); NaN where missing."""
    alleles = gt[:, :-1] if gt.shape[1] > 2 else gt[:, :1]
    missing = (alleles == -1).any(1)
    return np.where(missing, np.nan, (alleles > 0).sum(1)).astype(np.float32)


def best_guess_block(gt: np.ndarray) -> np.ndarray:
    """float32 [b, S] ALT counts of genotypes int16 [b, S, 3] (the layout of
    :mod:`vcfbert.io.vcf_text`: -2 pads a haploid call, -1 is missing), as
    :func:`best_guess` per record; NaN where missing."""
    a0, a1 = gt[..., 0], gt[..., 1]
    count = (a0 > 0).astype(np.float32) + (a1 > 0)
    count[(a0 == -1) | (a1 == -1)] = np.nan
    return count


def record_calls(rec, has_ds: bool, has_gt: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """(dose float32 [S], best guess float32 [S], INFO DR2 or R2) of one cyvcf2 record of an
    imputed VCF: the dose is FORMAT/DS, else the GT count; NaN where missing."""
    ds = rec.format("DS") if has_ds else None  # None too for a record without DS
    dose = ds[:, 0].astype(np.float32) if ds is not None else None
    if dose is None and not has_gt:
        raise InputError(f"record {rec.CHROM}:{rec.POS} has neither DS nor GT values")
    hard = best_guess(rec.genotype.array()) if has_gt else np.round(dose).astype(np.float32)
    val = rec.INFO.get("DR2", rec.INFO.get("R2"))
    dr2 = float(val[0] if isinstance(val, tuple) else val) if val is not None else np.nan
    return (hard if dose is None else dose), hard, dr2


@dataclasses.dataclass
class GenotypeMatrix:
    """Per-variant keys and a [V, S] matrix of doses (NaN missing)."""

    keys: pd.DataFrame  # contig, position, ref, alt
    dose: np.ndarray  # float32 [V, S]
    hard: np.ndarray  # float32 [V, S] best-guess ALT count
    samples: list[str]
    dr2: np.ndarray | None = None  # float [V] INFO/DR2 (or R2) when present


def read_truth(path: str | os.PathLike[str]) -> GenotypeMatrix:
    """True ALT counts from a (possibly multi-allelic) truth VCF."""
    samples = sample_ids(path)
    rows, doses = [], []
    for contig in list_contigs(path):
        for v in iter_variants(path, contig, role="target", haploid="duplicate"):
            d = true_dose(v).astype(np.float32)
            rows.append((normalize_contig(contig), v.position, v.ref, v.alt))
            doses.append(d)
    if not rows:
        raise InputError(f"{path}: the truth VCF has no variant")
    dose = np.stack(doses).astype(np.float32)
    keys = pd.DataFrame(rows, columns=["contig", "position", "ref", "alt"])
    return GenotypeMatrix(keys, dose, dose, samples)


def read_imputed(path: str | os.PathLike[str]) -> GenotypeMatrix:
    """Doses (FORMAT/DS, else GT) and best-guess genotypes (GT) of an imputed VCF."""
    import cyvcf2

    vcf = cyvcf2.VCF(str(path), gts012=False, lazy=True, threads=1)
    samples = list(vcf.samples)
    rows, doses, hards, dr2 = [], [], [], []
    has_ds = vcf.contains("DS")
    has_gt = vcf.contains("GT")
    if not (has_ds or has_gt):
        raise InputError(f"{path}: the imputed VCF has neither FORMAT/DS nor FORMAT/GT")
    from .io.vcf import parsed_records

    for rec in parsed_records(vcf, path):
        if len(rec.ALT) != 1:
            continue  # multi-allelic output records are not scored
        dose, hard, site_dr2 = record_calls(rec, has_ds, has_gt)
        rows.append((normalize_contig(rec.CHROM), int(rec.POS), rec.REF.upper(),
                     rec.ALT[0].upper()))
        doses.append(dose)
        hards.append(hard)
        dr2.append(site_dr2)
    vcf.close()
    if not rows:
        raise InputError(f"{path}: the imputed VCF has no bi-allelic record")
    keys = pd.DataFrame(rows, columns=["contig", "position", "ref", "alt"])
    return GenotypeMatrix(keys, np.stack(doses), np.stack(hards), samples, np.array(dr2))


def _align(sites: pd.DataFrame, gm: GenotypeMatrix, samples: list[str]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``gm`` for each site (swapped alleles flipped), columns for ``samples``.

    Returns:
        (dose [V, S], hard [V, S], found bool [V], dr2 [V]) with NaN where absent.
    """
    col = {s: i for i, s in enumerate(gm.samples)}
    missing = [s for s in samples if s not in col]
    if missing:
        raise InputError(f"sample {missing[0]} (and {len(missing) - 1} more) is missing from "
                         "the truth or imputed VCF; both must hold the same target samples")
    cols = np.array([col[s] for s in samples])
    k = gm.keys
    index = {(c, p, r, a): i for i, (c, p, r, a) in enumerate(
        zip(k.contig, k.position, k.ref, k.alt, strict=True))}
    n = len(sites)
    dose = np.full((n, len(samples)), np.nan, np.float32)
    hard = np.full_like(dose, np.nan)
    dr2 = np.full(n, np.nan)
    found = np.zeros(n, bool)
    for j, (c, p, r, a) in enumerate(zip(sites.contig, sites.position, sites.ref, sites.alt,
                                         strict=True)):
        i = index.get((c, p, r, a))
        flip = False
        if i is None:
            i = index.get((c, p, a, r))
            flip = i is not None
        if i is None:
            continue
        found[j] = True
        d, h = gm.dose[i, cols], gm.hard[i, cols]
        dose[j], hard[j] = (2 - d, 2 - h) if flip else (d, h)
        if gm.dr2 is not None:
            dr2[j] = gm.dr2[i]
    return dose, hard, found, dr2


def score(dose: np.ndarray, hard: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Aggregate metrics over all (variant, sample) pairs with a known truth."""
    ok = ~np.isnan(truth) & ~np.isnan(dose)
    d, t = dose[ok].astype(np.float64), truth[ok].astype(np.float64)
    h = np.where(np.isnan(hard[ok]), np.round(d), hard[ok])
    out = {"n_genotypes": int(ok.sum())}
    if d.size > 1 and d.std() > 0 and t.std() > 0:
        out["r2"] = float(np.corrcoef(d, t)[0, 1] ** 2)
    else:
        out["r2"] = float("nan")
    out["concordance"] = float((h == t).mean()) if d.size else float("nan")
    nonref = (h > 0) | (t > 0)
    out["nrd"] = float(1 - (h[nonref] == t[nonref]).mean()) if nonref.any() else float("nan")
    tp = float(((h >= 1) & (t >= 1)).sum())
    fp = float(((h >= 1) & (t < 1)).sum())
    fn = float(((h < 1) & (t >= 1)).sum())
    out["f1"] = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) > 0 else float("nan")
    out["true_alt_carriers"] = int((t >= 1).sum())
    return out


def per_variant_r2(dose: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Squared Pearson correlation per variant (rows) over samples; NaN if undefined."""
    ok = ~np.isnan(truth) & ~np.isnan(dose)
    n = ok.sum(1)
    d = np.where(ok, dose, 0.0).astype(np.float64)
    t = np.where(ok, truth, 0.0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        md, mt = d.sum(1) / n, t.sum(1) / n
        cov = (d * t).sum(1) / n - md * mt
        vd = (d * d).sum(1) / n - md**2
        vt = (t * t).sum(1) / n - mt**2
        r2 = cov**2 / (vd * vt)
    r2[(vd <= 1e-12) | (vt <= 1e-12) | (n < 2)] = np.nan
    return np.clip(r2, 0, 1)


def evaluate_dense(imputed_vcf: str | os.PathLike[str], truth_vcf: str | os.PathLike[str],
                   sites: pd.DataFrame, *, populations: dict[str, str] | None = None,
                   method: str = "vcfbert") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score an imputed VCF holding both files as full ``[V, S]`` matrices.

    The obviously correct reference of :func:`vcfbert.evaluate_stream.evaluate`, which
    gives the same tables in bounded memory; kept for the tests and small benchmarks.

    Args:
        sites: reference-panel variants with columns contig, position, ref, alt, ref_af,
            typed (bool). Contig names may use any naming.
        populations: sample -> population (per-population rows when given).

    Returns:
        (accuracy table, per-variant table).
    """
    sites = sites.copy()
    sites["contig"] = sites["contig"].map(normalize_contig)
    imputed = read_imputed(imputed_vcf)
    truth = read_truth(truth_vcf)
    samples = imputed.samples
    dose, hard, found, dr2 = _align(sites, imputed, samples)
    tdose, _, tfound, _ = _align(sites, truth, samples)
    sites["maf_bin"] = maf_bin(sites["ref_af"].to_numpy())
    sites["in_imputed"] = found
    sites["in_truth"] = tfound
    n_absent = int((~found & ~sites["typed"].to_numpy()).sum())
    if n_absent:
        log.warning("%s: %d untyped reference variants are absent from %s", method, n_absent,
                    imputed_vcf)
    untyped = ~sites["typed"].to_numpy() & tfound
    groups: list[tuple[str, np.ndarray]] = [("all", np.ones(len(samples), bool))]
    if populations:
        pops = np.array([populations.get(s, "") for s in samples])
        groups += [(p, pops == p) for p in sorted(set(pops)) if p]
    rows = []
    for gname, smask in groups:
        for label in [*BIN_LABELS, "overall"]:
            vmask = untyped & ((sites["maf_bin"] == label).to_numpy() | (label == "overall"))
            sub_d = np.where(found[vmask, None], dose[vmask], 0.0)[:, smask]
            sub_h = np.where(found[vmask, None], hard[vmask], 0.0)[:, smask]
            res = score(sub_d, sub_h, tdose[vmask][:, smask])
            rows.append({"method": method, "group": gname, "maf_bin": label,
                         "n_variants": int(vmask.sum()),
                         "n_absent": int((vmask & ~found).sum()), **res})
    acc = pd.DataFrame(rows)
    pv = sites[["contig", "position", "ref", "alt", "ref_af", "maf_bin", "typed"]].copy()
    pv["dr2"] = dr2
    pv["true_r2"] = per_variant_r2(dose, tdose)
    pv["true_alt_count"] = np.nansum(tdose, axis=1)
    pv = pv[tfound]
    return acc, pv


def site_table(reference_h5: list[str], targets_h5: list[str]) -> pd.DataFrame:
    """Reference-panel variants with their AF and typed flag, from the pipeline's stores."""
    from .io.h5store import read_targets, read_variant_table

    frames = []
    for rpath, tpath in zip(reference_h5, targets_h5, strict=True):
        table = read_variant_table(rpath)
        targets = read_targets(tpath)
        typed = np.zeros(table["position"].size, bool)
        typed[targets.variant_ref_index] = targets.site_called
        frames.append(pd.DataFrame({
            "contig": targets.contig, "position": table["position"],
            "ref": table["alleles"][:, 0], "alt": table["alleles"][:, 1],
            "ref_af": table["af"], "typed": typed}))
    return pd.concat(frames, ignore_index=True)


def write_tables(acc: pd.DataFrame, per_variant: pd.DataFrame, acc_path: str,
                 per_variant_path: str) -> None:
    """The accuracy table (TSV) and the per-variant table (BGZF-compressed TSV: any gzip
    reader takes it, and its bytes depend on the table alone)."""
    from .io.bgzf import BgzfWriter

    with atomic_path(acc_path) as tmp:
        acc.to_csv(tmp, sep="\t", index=False, float_format="%.5f")
    text = per_variant.to_csv(sep="\t", index=False, float_format="%.5f").encode()
    with atomic_path(per_variant_path) as tmp, BgzfWriter(tmp, threads=2) as out:
        out.write(text)
