"""A trained panel: everything imputation needs that does not depend on the target batch.

Written once by ``snakemake trained_panel`` (rule ``trained_panel``), then used for batch after
batch with ``--config trained_panel=DIR target_vcf=batch.vcf.gz`` (no training job runs). The
directory holds::

    manifest.json            format, vcfbert version, config, fingerprints, checksums, metrics
    README.md                what is here and how to use it
    model.pt                 the selected model (weights and configuration; no optimiser state)
    model.keys.npz           its retrieval-key encoder (numpy arrays)
    metrics.csv              per-epoch training metrics (the run that trained the model)
    dr2_calibration.json     the model's DR2 recalibration (:mod:`vcfbert.calibration`), fitted
                             on the validation samples; absent in panels built before it
                             existed (their batches get an uncalibrated DR2)
    chromosomes.tsv          contig -> label used in paths
    <chrom>/reference.h5     the reference store (haplotypes, variants, allele frequencies,
                             and each variant's cM when a genetic map was given)
    <chrom>/windows.tsv      the window layout the model was trained on
    <chrom>/array_sites.tsv  the array: typed sites (reference index, position, REF, ALT)
    <chrom>/reference_at_array.h5  the reference's haplotypes at the array's sites (the copy a
                             training run's target store holds): an imputation job reads each
                             window's slots from it, not the window's whole span of
                             reference.h5; absent in panels built before it existed (read
                             as before)

No FAISS index is stored: a window's index depends on which array sites a batch has (the
reference keys are computed under the batch's observed sites), and the imputation job builds
it exactly from ``model.keys.npz`` and the reference in about 10 ms per window.

Every file is listed in the manifest with its size and SHA-256, checked before use
(:func:`verify`). The fingerprints name what a panel was built from: the reference's samples and
variants, the array's sites and the contigs' lengths, so that a mismatch is one line naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .atomic import sha256_file
from .errors import InputError, IntegrityError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FORMAT = "vcfbert-trained-panel"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DR2_CALIBRATION = "dr2_calibration.json"
REBUILD = "copy the panel again, or rebuild it with `snakemake --cores all trained_panel`"
REFERENCE_AT_ARRAY = "reference_at_array.h5"


def chrom_file(chrom: str, name: str) -> str:
    """Path of a per-chromosome file inside a panel, relative to its directory."""
    return f"{chrom}/{name}"


def _fingerprint(parts: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def _sites_bytes(contig: str, position: np.ndarray, alleles: np.ndarray) -> list[bytes]:
    """Bytes naming a site list: contig, positions (int64), alleles."""
    return [contig.encode(), np.ascontiguousarray(position, np.int64).tobytes(),
            "\t".join(f"{r}>{a}" for r, a in np.asarray(alleles)).encode()]


def reference_fingerprint(contigs: list[str], tables: list[dict[str, np.ndarray]],
                          samples: list[list[str]]) -> str:
    """SHA-256 over each contig's reference samples and variants (position, REF, ALT), from
    the stores' variant tables (:func:`vcfbert.io.h5store.read_variant_table`)."""
    parts: list[bytes] = []
    for contig, table, names in zip(contigs, tables, samples, strict=True):
        parts += _sites_bytes(contig, table["position"], table["alleles"])
        parts.append("\t".join(names).encode())
    return _fingerprint(parts)


def array_table(table: dict[str, np.ndarray], variant_ref_index: np.ndarray) -> pd.DataFrame:
    """The array's sites: ``variant_index`` (into the reference store), position, REF, ALT,
    from the store's variant table."""
    import pandas as pd  # here, not at the top: the Snakemake process imports this module

    idx = np.asarray(variant_ref_index, np.int64)
    return pd.DataFrame({"variant_index": idx, "position": table["position"][idx],
                         "ref": table["alleles"][idx, 0], "alt": table["alleles"][idx, 1]})


def read_array(path: str | os.PathLike[str]) -> np.ndarray:
    """int64 [M]: the array's sites as sorted indices into the panel's reference store
    (read with the csv module: the targets' job starts without pandas)."""
    from .io.tsv import read_column

    try:
        idx = np.array(read_column(path, "variant_index"), dtype=np.int64)
    except ValueError as exc:
        raise IntegrityError(f"{path}: unreadable array sites ({exc}); {REBUILD}") from exc
    if idx.size == 0 or (np.diff(idx) <= 0).any():
        raise IntegrityError(f"{path}: the array's sites are empty or not sorted; {REBUILD}")
    return idx


def _link_or_copy(src: str | os.PathLike[str], dst: Path) -> None:
    """Hard link ``src`` to ``dst`` when both are on one file system (our outputs are written
    atomically, so a later re-run replaces the source's inode, never edits it), else copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _weights_only_checkpoint(src: str, dst: Path) -> dict[str, Any]:
    """Re-save the selected checkpoint without optimiser, scheduler or RNG state."""
    from .checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

    state = load_checkpoint(src)
    save_checkpoint(dst, model_from_checkpoint(state), epoch=int(state["epoch"]),
                    step=int(state["step"]), train_config=state.get("train_config") or {},
                    metrics=state.get("metrics") or {})
    return dict(state.get("metrics") or {})


def _readme(manifest: dict[str, Any]) -> str:
    rows = "\n".join(f"| {c['contig']} | {c['variants']} | {c['array_sites']} | {c['windows']} |"
                     for c in manifest["contigs"])
    return f"""# vcfbert trained panel

Built by vcfbert {manifest['vcfbert_version']} from `{manifest['reference']['vcf']}`
({manifest['reference']['samples']} reference samples) for an array of
{sum(c['array_sites'] for c in manifest['contigs'])} sites.

| contig | reference variants | array sites | windows |
|---|---|---|---|
{rows}

Impute a batch of targets genotyped on this array (no training runs):

    snakemake --cores all --config trained_panel=$PWD/<this folder> target_vcf=batch.vcf.gz

`dr2_calibration.json`, when present, recalibrates INFO/DR2 of the imputed variants (fitted on
the training run's validation samples). `manifest.json` lists every file with its SHA-256
(checked before each use), the configuration
the model was trained with, and the fingerprints of the reference and the array. See
docs/trained_panel.md in the vcfbert repository.
"""


def build(*, out_dir: str | os.PathLike[str], contigs: list[str], labels: list[str],
          reference_h5: list[str], targets_h5: list[str], windows_tsv: list[str],
          model: str, key_encoder: str, metrics_csv: str, reference_vcf: str | list[str],
          config: dict[str, Any], command: str, dr2_calibration: str = "") -> dict[str, Any]:
    """Write a trained panel directory (see the module docstring) and return its manifest.
    ``dr2_calibration``: the model's DR2 recalibration file ("": none, DR2 uncalibrated).

    The directory is assembled under a temporary name and renamed into place, so a killed job
    never leaves something that looks like a finished panel.
    """
    import pandas as pd

    from .io.h5store import read_target_sites, read_variant_table, store_samples
    from .io.vcf import contig_lengths
    from .windows import read_windows

    final = Path(out_dir)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        metrics = _weights_only_checkpoint(model, tmp / "model.pt")
        _link_or_copy(key_encoder, tmp / "model.keys.npz")
        _link_or_copy(metrics_csv, tmp / "metrics.csv")
        if dr2_calibration:
            from .calibration import load as load_calibration

            load_calibration(dr2_calibration)  # refuse a damaged file now, not at imputation
            _link_or_copy(dr2_calibration, tmp / DR2_CALIBRATION)
        else:
            log.warning("no DR2 calibration: batches imputed with this panel get an "
                        "uncalibrated DR2")
        pd.DataFrame({"contig": contigs, "wildcard": labels}).to_csv(
            tmp / "chromosomes.tsv", sep="\t", index=False)
        ref_files = [reference_vcf] if isinstance(reference_vcf, str) else list(reference_vcf)
        lengths = {c: n for f in ref_files if f for c, n in contig_lengths(f).items()}
        contig_rows, array_parts = [], []
        tables = [read_variant_table(ref) for ref in reference_h5]
        samples = [store_samples(ref)[0] for ref in reference_h5]
        for contig, label, ref, tgt, win, table in zip(contigs, labels, reference_h5,
                                                       targets_h5, windows_tsv, tables,
                                                       strict=True):
            _link_or_copy(ref, tmp / chrom_file(label, "reference.h5"))
            _link_or_copy(win, tmp / chrom_file(label, "windows.tsv"))
            typed = read_target_sites(tgt)
            _write_reference_at_array(tmp / chrom_file(label, REFERENCE_AT_ARRAY), contig, ref,
                                      tgt, typed)
            array = array_table(table, typed)
            array.to_csv(tmp / chrom_file(label, "array_sites.tsv"), sep="\t", index=False)
            array_parts += _sites_bytes(contig, array["position"].to_numpy(),
                                        array[["ref", "alt"]].to_numpy())
            contig_rows.append({"contig": contig, "wildcard": label,
                                "length": lengths.get(contig),
                                "variants": int(table["position"].size),
                                "array_sites": len(array), "windows": len(read_windows(win))})
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "vcfbert_version": __version__,
            "command": command,
            "config": {k: config[k] for k in ("epochs", "windows", "mask", "model", "train")
                       if k in config},
            "reference": {"vcf": ", ".join(os.path.basename(f) for f in ref_files),
                          "samples": len(samples[0]),
                          "fingerprint": reference_fingerprint(contigs, tables, samples)},
            "array": {"fingerprint": _fingerprint(array_parts),
                      "sites": sum(r["array_sites"] for r in contig_rows)},
            "contigs": contig_rows,
            "genetic_map": _genetic_maps(contigs, reference_h5),
            "training": {"selected_epoch_metrics": metrics,
                         "epochs": pd.read_csv(metrics_csv).to_dict(orient="records")},
        }
        manifest["files"] = {
            rel: {"bytes": (tmp / rel).stat().st_size, "sha256": sha256_file(tmp / rel)}
            for rel in sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
        (tmp / "README.md").write_text(_readme(manifest))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("trained panel %s: %d contigs, %d files, %.1f MB", final, len(contigs),
             len(manifest["files"]),
             sum(f["bytes"] for f in manifest["files"].values()) / 1e6)
    return manifest


def has_reference_at_array(manifest: dict[str, Any]) -> bool:
    """Whether the panel holds every chromosome's ``reference_at_array.h5``."""
    return all(chrom_file(c["wildcard"], REFERENCE_AT_ARRAY) in manifest["files"]
               for c in manifest["contigs"])


def _write_reference_at_array(out: Path, contig: str, reference_h5: str, targets_h5: str,
                              index: np.ndarray) -> None:
    """``<chrom>/reference_at_array.h5``: the training run's target store's copy of the
    reference at its typed sites (the array: ``index`` int64 [M], the store's reference
    indices), or the same read from the reference store."""
    from .io.h5store import read_reference_at_sites, reference_at_sites, write_reference_at_sites

    haplotypes = read_reference_at_sites(targets_h5, 0, index.size)
    if haplotypes is None:
        haplotypes = reference_at_sites(reference_h5, index)
    write_reference_at_sites(out, contig=contig, variant_ref_index=index, haplotypes=haplotypes)


def _genetic_maps(contigs: list[str], reference_h5: list[str]) -> dict[str, str] | None:
    """Contig -> the genetic map its store's cM come from (in the store), or None."""
    import h5py

    maps = {}
    for contig, path in zip(contigs, reference_h5, strict=True):
        with h5py.File(path, "r") as h5:
            if "variant_cm" in h5:
                maps[contig] = str(h5.attrs.get("genetic_map", "?"))
    return maps or None


def read_manifest(panel_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The panel's manifest, after checking that it is one this vcfbert can read."""
    path = Path(panel_dir) / MANIFEST
    if not Path(panel_dir).is_dir():
        raise InputError(f"{panel_dir}: trained panel directory not found; check "
                         "`trained_panel` (build one with `snakemake --cores all trained_panel`)")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{panel_dir}: not a trained panel (no {MANIFEST}); build one with "
                         "`snakemake --cores all trained_panel`") from None
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{path}: unreadable manifest ({exc}); {REBUILD}") from exc
    if manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not a vcfbert trained panel manifest")
    if int(manifest.get("format_version", -1)) != FORMAT_VERSION:
        raise InputError(f"{path}: trained panel format {manifest.get('format_version')} is not "
                         f"{FORMAT_VERSION} (built by vcfbert {manifest.get('vcfbert_version')}); "
                         "rebuild it with this vcfbert")
    return manifest


def verify(panel_dir: str | os.PathLike[str], contigs: Iterable[str] | None = None
           ) -> dict[str, Any]:
    """Check the files of the manifest (present, size, SHA-256); return the manifest.

    ``contigs``: check only the files of these chromosomes (``<wildcard>/...``) and the panel's
    shared ones (the model, its keys, the DR2 calibration...): a batch that imputes one
    chromosome of a whole-genome panel reads no other chromosome's files, and hashing them
    (~30 GB at 6,000 haplotypes) would cost more than its imputation. None: every file.

    Raises:
        IntegrityError: naming the first file that is missing or damaged.
    """
    manifest = read_manifest(panel_dir)
    skip: set[str] = set()
    if contigs is not None:
        wanted = set(contigs)
        skip = {c["wildcard"] for c in manifest["contigs"] if c["contig"] not in wanted}
    for rel, meta in sorted(manifest["files"].items()):
        folder, sep, _ = rel.partition("/")
        if sep and folder in skip:  # another chromosome's file
            continue
        path = Path(panel_dir) / rel
        if not path.is_file():
            raise IntegrityError(f"{path}: missing from the trained panel; {REBUILD}")
        if path.stat().st_size != int(meta["bytes"]) or sha256_file(path) != meta["sha256"]:
            raise IntegrityError(f"{path}: does not match the checksum in the panel's manifest "
                                 f"(damaged or changed since the panel was built); {REBUILD}")
    return manifest


def panel_chromosomes(manifest: dict[str, Any], *, target_vcf: str | list[str], panel_dir: str,
                      reference_vcf: str | list[str] = "") -> list[dict[str, str]]:
    """The panel's contigs that the targets have, as rows ``{contig, wildcard}``.

    ``target_vcf`` and ``reference_vcf`` may be one file or one file per chromosome.

    Raises:
        InputError: when the targets share no contig with the panel, when a shared contig's
            length in the targets' header differs from the reference's (another genome
            build), or when ``reference_vcf`` is not the reference the panel was built from.
    """
    from .io.vcf import contig_lengths, list_contigs, normalize_contig

    if reference_vcf:
        check_reference(manifest, reference_vcf, panel_dir)
    target_files = [target_vcf] if isinstance(target_vcf, str) else list(target_vcf)
    target_vcf = ", ".join(target_files)
    tcontigs = [c for f in target_files for c in list_contigs(f)]
    tnorm = {normalize_contig(c): c for c in tcontigs}
    tlen = {normalize_contig(c): n for f in target_files for c, n in contig_lengths(f).items()}
    rows = []
    for c in manifest["contigs"]:
        key = normalize_contig(c["contig"])
        if key not in tnorm:
            continue
        if c.get("length") and key in tlen and int(tlen[key]) != int(c["length"]):
            raise InputError(
                f"{target_vcf}: contig {tnorm[key]} has length {tlen[key]} in its header but "
                f"{c['length']} in the trained panel's reference ({panel_dir}): another genome "
                "build? Lift the targets over to the panel's build")
        rows.append({"contig": c["contig"], "wildcard": c["wildcard"]})
    panel_names = [c["contig"] for c in manifest["contigs"]]
    if not rows:
        raise InputError(
            f"{target_vcf}: no contig in common with the trained panel {panel_dir} (targets: "
            f"{', '.join(tcontigs[:5])}; panel: {', '.join(panel_names[:5])}): the panel was "
            "built for another contig set")
    extra = sorted(set(tnorm) - {normalize_contig(c) for c in panel_names})
    if extra:
        log.warning("target contigs the trained panel lacks (not imputed): %s", extra)
    return rows


def check_reference(manifest: dict[str, Any], reference_vcf: str | list[str],
                    panel_dir: str) -> None:
    """Refuse a ``reference_vcf`` (one file, or one per chromosome) other than the panel's own
    (samples, contigs, lengths)."""
    from .io.vcf import contig_lengths, list_contigs, sample_ids

    files = [reference_vcf] if isinstance(reference_vcf, str) else list(reference_vcf)
    reference_vcf = ", ".join(files)
    n = len(sample_ids(files[0]))
    if n != int(manifest["reference"]["samples"]):
        raise InputError(f"{reference_vcf}: {n} samples, but the trained panel {panel_dir} was "
                         f"built from a reference of {manifest['reference']['samples']} "
                         f"({manifest['reference']['vcf']}): leave reference_vcf empty to use "
                         "the panel's own, or build a panel from this reference")
    have = {c for f in files for c in list_contigs(f)}
    lengths = {c: n for f in files for c, n in contig_lengths(f).items()}
    for c in manifest["contigs"]:
        if c["contig"] not in have:
            raise InputError(f"{reference_vcf}: lacks contig {c['contig']} of the trained panel "
                             f"{panel_dir}: not the reference the panel was built from")
        if c.get("length") and lengths.get(c["contig"]) not in (None, int(c["length"])):
            raise InputError(f"{reference_vcf}: contig {c['contig']} has length "
                             f"{lengths[c['contig']]}, the trained panel's reference "
                             f"{c['length']}: another genome build")


def project_to_array(haplotypes: np.ndarray, variant_ref_index: np.ndarray,
                     array_index: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Targets aligned to the panel's reference, put on the panel's array.

    Args:
        haplotypes: int8 [2T, K] target alleles at ``variant_ref_index`` (-1 missing).
        variant_ref_index: int [K] sorted reference indices of the targets' sites.
        array_index: int [M] sorted reference indices of the panel's array sites.

    Returns:
        (int8 [2T, M] alleles on the array, -1 where the targets lack the site; counts
        ``dropped_not_on_panel_array`` and ``panel_array_sites_missing``).
    """
    on_array = np.isin(variant_ref_index, array_index)
    out = np.full((haplotypes.shape[0], array_index.size), -1, np.int8)
    cols = np.searchsorted(array_index, variant_ref_index[on_array])
    out[:, cols] = haplotypes[:, on_array]
    return out, {"dropped_not_on_panel_array": int((~on_array).sum()),
                 "panel_array_sites_missing": int(array_index.size - on_array.sum())}


def check_array_coverage(counts: dict[str, int], n_array: int, *, max_missing: float,
                         target_vcf: str, contig: str) -> None:
    """Refuse targets that lack more than ``max_missing`` of the panel's array sites."""
    missing = counts["panel_array_sites_missing"]
    if n_array and missing / n_array > max_missing:
        raise InputError(
            f"{target_vcf}: lacks {missing} of the trained panel's {n_array} array sites on "
            f"{contig} ({missing / n_array:.0%}, more than impute.max_missing_array_fraction = "
            f"{max_missing}): another array (or genome build)? Build a trained panel for this "
            "array (`snakemake --cores all trained_panel` with these targets)")
