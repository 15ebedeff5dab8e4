"""Parse VCFs into genotype stores and align target sites to the reference panel.

Alignment matches on position and alleles: exact matches are kept; REF/ALT swaps are undone
(alleles recoded); strand flips (complemented alleles) are repaired; strand-ambiguous sites
(A/T, C/G) are kept only when they match exactly; everything else is dropped with a reason.
Every count goes to the QC tables.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import __version__
from .errors import InputError
from .io.h5store import (
    ReferenceWriter,
    TargetSet,
    read_alleles_at,
    read_variant_table,
    reference_at_sites,
    write_targets,
)
from .io.tsv import write_table
from .io.vcf import (
    ReadStats,
    Variant,
    contig_lengths,
    iter_variant_blocks,
    iter_variants,
    list_contigs,
    normalize_contig,
    sample_ids,
)
from .ploidy import PloidyTracker, read_sex

log = logging.getLogger(__name__)

_COMPLEMENT = str.maketrans("ACGT", "TGCA")


def read_panel(path: str | os.PathLike[str] | None) -> dict[str, str]:
    """Sample -> population from a panel file (whitespace-separated, with a header).

    The header must name a ``sample`` column and a ``population`` (or ``pop``) column, as in
    1000 Genomes panel files. An empty ``path`` gives an empty mapping.
    """
    if not path:
        return {}
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: panel file not found; check `panel` in the config")
    import pandas as pd  # here: the jobs without a panel file start without it

    df = pd.read_csv(p, sep=r"\s+", dtype=str, engine="python")
    cols = {c.lower().lstrip("#"): c for c in df.columns}
    pop_col = cols.get("population") or cols.get("pop")
    if "sample" not in cols or pop_col is None:
        raise InputError(f"{p}: the panel file needs a header with columns 'sample' and "
                         f"'population' (found: {', '.join(df.columns)})")
    return dict(zip(df[cols["sample"]], df[pop_col], strict=True))


def write_contig_list(vcf_path: str | os.PathLike[str] | list[str],
                      out_tsv: str | os.PathLike[str], *,
                      target_vcf: str | list[str] | None = None, genetic_map: str = "",
                      restrict: list[str] | None = None) -> list[str]:
    """Write the chromosomes to impute as a TSV: ``contig``, ``wildcard``, ``reference_file``,
    ``target_file``, ``genetic_map_file``; return the contigs.

    ``wildcard`` is the file-name-safe label used in output paths. The reference and the
    targets may each be one file or one file per chromosome (:mod:`vcfbert.inputs`); the
    genetic map one file or a ``{chrom}`` pattern. With ``target_vcf``, contigs of the
    reference that the targets lack are left out (they cannot be imputed), and contigs of the
    targets that the reference lacks are reported in the log. ``restrict`` (config
    ``chromosomes``) keeps only the contigs named there (any naming: ``chr20`` or ``20``).
    """
    from .inputs import files_by_contig

    ref_files = [str(vcf_path)] if isinstance(vcf_path, str | os.PathLike) else \
        [str(f) for f in vcf_path]
    by_contig = files_by_contig(ref_files, list_contigs, normalize_contig, "reference_vcf")
    contigs = [c for f in ref_files for c in list_contigs(f)]
    names = ", ".join(ref_files)
    if not contigs:
        raise InputError(f"{names}: the reference VCF has no records")
    targets_by_contig: dict[str, str] = {}
    if target_vcf:
        tfiles = [str(target_vcf)] if isinstance(target_vcf, str | os.PathLike) else \
            [str(f) for f in target_vcf]
        targets_by_contig = files_by_contig(tfiles, list_contigs, normalize_contig,
                                            "target_vcf")
        tcontigs = [c for f in tfiles for c in list_contigs(f)]
        if not tcontigs:
            raise InputError(f"{', '.join(tfiles)}: the target VCF has no records")
        rnorm = {normalize_contig(c) for c in contigs}
        missing = sorted(set(targets_by_contig) - rnorm)
        if missing:
            log.warning("target contigs absent from the reference (not imputed): %s", missing)
        contigs = [c for c in contigs if normalize_contig(c) in targets_by_contig]
        if not contigs:
            raise InputError(
                f"{', '.join(tfiles)}: no contig in common with the reference {names} (targets: "
                f"{', '.join(tcontigs[:5])}; reference: {', '.join(by_contig)[:80]})")
    if restrict:
        wanted = {normalize_contig(str(c)) for c in restrict}
        unknown = sorted(wanted - {normalize_contig(c) for c in contigs})
        if unknown:
            raise InputError(f"chromosomes: {', '.join(unknown)} not in both the reference and "
                             f"the targets (those are: {', '.join(contigs)})")
        contigs = [c for c in contigs if normalize_contig(c) in wanted]
    rows = [{"contig": c, "wildcard": contig_wildcard(c),
             "reference_file": by_contig[normalize_contig(c)],
             "target_file": targets_by_contig.get(normalize_contig(c), ""),
             "genetic_map_file": map_file(genetic_map, c)} for c in contigs]
    from .inputs import CHROMOSOME_COLUMNS

    write_table(out_tsv, CHROMOSOME_COLUMNS, rows)
    return contigs


def map_file(genetic_map: str, contig: str) -> str:
    """The genetic map of ``contig``: the file itself, or the ``{chrom}`` pattern filled in
    with the contig's name as the reference spells it, or without or with ``chr``."""
    from .inputs import PLACEHOLDER

    if not genetic_map or PLACEHOLDER not in genetic_map:
        return genetic_map or ""
    bare = normalize_contig(contig)
    tried = list(dict.fromkeys([contig, bare, f"chr{bare}"]))
    for name in tried:
        path = genetic_map.replace(PLACEHOLDER, name)
        if os.path.exists(path):
            return path
    raise InputError(f"genetic_map: no map for {contig} (tried "
                     f"{', '.join(genetic_map.replace(PLACEHOLDER, n) for n in tried)})")


def contig_wildcard(contig: str) -> str:
    """File-name-safe label of a contig (``chr20`` -> ``chr20``, ``HLA-A*01`` -> ``HLA-A_01``)."""
    return "".join(ch if (ch.isalnum() or ch in "-.") else "_" for ch in contig)


def parse_reference(vcf_path: str | os.PathLike[str], contig: str,
                    out_h5: str | os.PathLike[str], *, panel: str | None = None,
                    multiallelic: str = "split", exclude_samples: list[str] | None = None,
                    genetic_map: str | None = None) -> ReadStats:
    """Parse one contig of a phased reference VCF into a reference store.

    With ``genetic_map`` (PLINK or HapMap, see :mod:`vcfbert.genetic_map`) the store also
    holds ``variant_cm``, every variant's genetic position, which the model's switch rates
    then follow; without one, the model uses a constant rate (``model.cm_per_mb``).

    Raises:
        InputError: when the panel is unphased, has missing genotypes, is not diploid, is
            unsorted, or has no variant on ``contig``.
    """
    pops = read_panel(panel)
    samples = sample_ids(vcf_path)
    if exclude_samples:
        drop = set(exclude_samples)
        samples = [s for s in samples if s not in drop]
        log.info("excluded %d reference samples that are also targets", len(drop))
    if len(samples) < 2:
        raise InputError(f"{vcf_path}: the reference panel needs at least 2 samples")
    stats = ReadStats()
    prov = {"tool": "vcfbert parse_reference", "version": __version__,
            "vcf": os.path.basename(str(vcf_path)), "contig": contig,
            "multiallelic": multiallelic}
    with ReferenceWriter(out_h5, contig=contig, samples=samples,
                         populations=[pops.get(s, "") for s in samples],
                         provenance=prov,
                         contig_length=contig_lengths(vcf_path).get(contig)) as writer:
        ploidy = PloidyTracker(samples, f"{vcf_path}, contig {contig}")
        region: list[np.ndarray] = []
        bar = tqdm(desc=f"parse reference {contig}", unit=" variant", file=sys.stderr,
                   mininterval=5, unit_scale=True)
        # a parser block of variants at a time (the reference has no missing genotype)
        for block in iter_variant_blocks(vcf_path, contig, role="reference",
                                         multiallelic=multiallelic, samples=samples,
                                         stats=stats, haploid="duplicate"):
            writer.add_block(block.position, block.ref, block.alt, block.vid,
                             block.haplotypes)
            region.append(ploidy.add_block(block.position, block.haploid))
            bar.update(len(block))
        bar.close()
        if writer.count == 0:
            raise InputError(f"{vcf_path}: no usable bi-allelic variant on contig {contig}")
        males = ploidy.males(read_sex(panel))
        in_region = np.concatenate(region)
        writer.set_ploidy(in_region, males)
        if males.any():
            log.info("%s: %d haploid (male) samples over %d variants outside the "
                     "pseudo-autosomal regions; their allele is kept on both haplotypes",
                     contig, int(males.sum()), int(in_region.sum()))
        if genetic_map:
            from .genetic_map import read_genetic_map

            gmap = read_genetic_map(genetic_map, contig)
            writer.add_variant_column("variant_cm", gmap.centimorgans)
            writer.set_attr("genetic_map", os.path.basename(str(genetic_map)))
        else:
            log.info("no genetic map: the model uses a constant recombination rate "
                     "(model.cm_per_mb, 1 cM/Mb by default)")
    log.info("reference %s: %s", contig, stats.as_dict())
    return stats


def _is_ambiguous(ref: str, alt: str) -> bool:
    return len(ref) == 1 and len(alt) == 1 and ref.translate(_COMPLEMENT) == alt


def align_targets(target_vcf: str | os.PathLike[str], reference_h5: str | os.PathLike[str],
                  contig: str, *, multiallelic: str = "split",
                  sex: dict[str, bool] | None = None
                  ) -> tuple[TargetSet, dict[str, int], dict[str, np.ndarray]]:
    """Align the targets' records on ``contig`` (any naming) to the reference store.

    Haploid calls (males outside the pseudo-autosomal regions) are read as their allele twice;
    the males are flagged (:mod:`vcfbert.ploidy`; ``sex``: sample -> male from the sample
    table) and written haploid again in the imputed VCF.

    Returns:
        (aligned targets, site counts by outcome, per-sample call rates: ``sample`` object
        [S], ``call_rate`` float [S] and ``phased`` bool [S]).
    """
    # positions only: each block of target records reads the alleles of the reference
    # variants at its positions (a whole chromosome's strings took seconds)
    table = read_variant_table(reference_h5, fields=("position", "haploid"))
    ref_pos = table["position"]
    tcontigs = {normalize_contig(c): c for c in list_contigs(target_vcf)}
    tname = tcontigs.get(normalize_contig(contig))
    if tname is None:
        raise InputError(f"{target_vcf}: no records on contig {contig} (or "
                         f"{normalize_contig(contig)}); the targets have: "
                         f"{', '.join(sorted(tcontigs.values())[:10])}")
    samples = sample_ids(target_vcf)
    stats = ReadStats()
    counts: Counter[str] = Counter()
    idx: list[int] = []
    cols: list[np.ndarray] = []
    phased_all = np.ones(len(samples), bool)
    used: set[int] = set()
    region = table["haploid"]
    ploidy = PloidyTracker(samples, f"{target_vcf}, contig {tname}")
    records = iter_variants(target_vcf, tname, role="target", multiallelic=multiallelic,
                            stats=stats, haploid="duplicate")
    for v, cands, alleles in _with_reference_alleles(records, ref_pos, reference_h5):
        if not cands:
            counts["dropped_not_in_reference"] += 1
            continue
        haps = v.haplotypes
        outcome = None
        for i in cands:
            r, a = alleles[i]
            if (v.ref, v.alt) == (r, a):
                outcome, hit = "matched", i
                break
            ambiguous = _is_ambiguous(r, a)
            if (v.ref, v.alt) == (a, r):
                outcome, hit = ("ambiguous" if ambiguous else "allele_swapped"), i
                break
            fr, fa = v.ref.translate(_COMPLEMENT), v.alt.translate(_COMPLEMENT)
            if (fr, fa) == (r, a) and not ambiguous:
                outcome, hit = "strand_flipped", i
                break
            if (fr, fa) == (a, r) and not ambiguous:
                outcome, hit = "strand_flipped_and_swapped", i
                break
        if outcome is None:
            counts["dropped_allele_mismatch"] += 1
            continue
        if outcome == "ambiguous":
            counts["dropped_strand_ambiguous"] += 1
            continue
        if hit in used:
            counts["dropped_duplicate"] += 1
            continue
        if outcome in ("allele_swapped", "strand_flipped_and_swapped"):
            haps = np.where(haps < 0, haps, 1 - haps).astype(np.int8)
        counts[outcome] += 1
        ploidy.add(v.position, v.haploid, (haps >= 0).reshape(-1, 2).all(1),
                   in_region=bool(region[hit]))
        used.add(hit)
        idx.append(hit)
        cols.append(haps)
        het = haps.reshape(-1, 2)
        het_calls = (het[:, 0] >= 0) & (het[:, 1] >= 0) & (het[:, 0] != het[:, 1])
        phased_all &= v.phased | ~het_calls
    for k, n in stats.as_dict().items():
        if (k.startswith("dropped_") or k == "split_multiallelic") and n:
            counts[f"vcf_{k}"] += n
    counts["target_records"] = stats.records
    if not idx:
        raise InputError(
            f"{target_vcf}: none of the {stats.records} target records on {tname} matches a "
            f"reference variant by position and alleles; check that both files use the same "
            "genome build")
    order = np.argsort(np.asarray(idx), kind="stable")
    ref_index = np.asarray(idx, dtype=np.int64)[order]
    haps = np.stack(cols, axis=1)[:, order] if cols else np.zeros((2 * len(samples), 0), np.int8)
    called = (haps >= 0).reshape(len(samples), 2, -1).all(1)
    call_rate = {"sample": np.asarray(samples, dtype=object), "call_rate": called.mean(1),
                 "phased": np.asarray(phased_all, bool)}
    counts["sites_used"] = len(idx)
    # coverage of the chromosome by typed sites: long gaps impute poorly (low DR2)
    typed_pos = ref_pos[ref_index]
    edges = np.concatenate([[ref_pos[0]], typed_pos, [ref_pos[-1]]])
    gaps = np.diff(edges)
    counts["max_gap_between_typed_sites_bp"] = int(gaps.max()) if gaps.size else 0
    big = np.flatnonzero(gaps > 1_000_000)
    counts["reference_variants_in_gaps_over_1Mb"] = int(sum(
        ((ref_pos > edges[i]) & (ref_pos < edges[i + 1])).sum() for i in big))
    males = ploidy.males(sex)
    if males.any():
        counts["haploid_samples"] = int(males.sum())
    return (TargetSet(contig=contig, variant_ref_index=ref_index, haplotypes=haps,
                      sample_id=samples, sample_phased=phased_all,
                      sample_haploid=males if region.any() else np.zeros_like(males)),
            dict(counts), call_rate)


def _with_reference_alleles(records: Iterator[Variant], ref_pos: np.ndarray,
                            reference_h5: str | os.PathLike[str], block: int = 4096
                            ) -> Iterator[tuple[Variant, range, dict[int, tuple[str, str]]]]:
    """Each target record with the reference variants at its position (a range of indices
    into the sorted positions ``ref_pos``, empty when none) and their (REF, ALT) by index:
    ``block`` records at a time, each block's alleles read at once (:func:`read_alleles_at`)."""
    while True:
        chunk = list(itertools.islice(records, block))
        if not chunk:
            return
        pos = np.fromiter((v.position for v in chunk), np.int64, len(chunk))
        first = np.searchsorted(ref_pos, pos, side="left")
        last = np.searchsorted(ref_pos, pos, side="right")
        spans = [np.arange(a, b) for a, b in zip(first, last, strict=True) if b > a]
        rows = np.unique(np.concatenate(spans)) if spans else np.zeros(0, np.int64)
        alleles = dict(zip(rows.tolist(), read_alleles_at(reference_h5, rows), strict=True))
        for v, a, b in zip(chunk, first.tolist(), last.tolist(), strict=True):
            yield v, range(a, b), alleles


def parse_targets(target_vcf: str | os.PathLike[str], reference_h5: str | os.PathLike[str],
                  contig: str, out_h5: str | os.PathLike[str],
                  qc_sites_tsv: str | os.PathLike[str], qc_samples_tsv: str | os.PathLike[str],
                  *, multiallelic: str = "split", min_call_rate: float = 0.0,
                  array_index: np.ndarray | None = None,
                  max_missing_array_fraction: float = 0.2,
                  panel: str | None = None) -> dict[str, int]:
    """Align targets to the reference and write the target store and the QC tables.

    ``panel``: the sample table; its ``sex`` column (when there is one) declares males.

    With ``array_index`` (a trained panel's array: int [M] sorted reference indices), the
    targets are put on that array: sites off the array are counted and ignored, array sites
    the targets lack become missing genotypes (imputed), and more than
    ``max_missing_array_fraction`` of them missing is an error.
    """
    targets, counts, rates = align_targets(target_vcf, reference_h5, contig,
                                           multiallelic=multiallelic, sex=read_sex(panel))
    if array_index is not None:
        from .trained_panel import check_array_coverage, project_to_array

        haps, extra = project_to_array(targets.haplotypes, targets.variant_ref_index,
                                       array_index)
        counts.update(extra)
        counts["sites_used"] -= extra["dropped_not_on_panel_array"]
        check_array_coverage(counts, array_index.size, max_missing=max_missing_array_fraction,
                             target_vcf=str(target_vcf), contig=contig)
        targets = dataclasses.replace(targets, variant_ref_index=array_index, haplotypes=haps)
    low = rates["sample"][rates["call_rate"] < min_call_rate].tolist()
    if low:
        raise InputError(
            f"{target_vcf}: {len(low)} sample(s) have a call rate below {min_call_rate} on "
            f"{contig} (first: {low[0]}); remove them or lower `targets.min_call_rate`")
    prov = {"tool": "vcfbert parse_targets", "version": __version__,
            "vcf": os.path.basename(str(target_vcf)), "contig": contig}
    # the key jobs of every training epoch and the imputation jobs read the panel at the
    # typed sites from here; a trained panel's batch writes none (it cost more than it saved
    # at 64 Mb: docs/model.md, the thirty-fourth session) and reads the panel's own copy,
    # reference_at_array.h5, written once when the panel is built
    write_targets(out_h5, targets, provenance=prov,
                  reference_haplotypes=None if array_index is not None else
                  reference_at_sites(reference_h5, targets.variant_ref_index))
    site_rows = [{"contig": contig, "outcome": k, "count": v} for k, v in sorted(counts.items())]
    write_table(qc_sites_tsv, ["contig", "outcome", "count"], site_rows)
    write_table(qc_samples_tsv, ["contig", "sample", "call_rate", "phased"],
                [{"contig": contig, "sample": sample, "call_rate": rate, "phased": phased}
                 for sample, rate, phased in zip(rates["sample"], rates["call_rate"],
                                                 rates["phased"], strict=True)],
                float_format="%.4f")
    log.info("targets %s: %s", contig, counts)
    return counts
