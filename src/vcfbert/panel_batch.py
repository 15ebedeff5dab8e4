"""A new batch of targets imputed with a trained panel in one process (``vcfbert impute``).

The same steps, in the same order and with the same settings, as the workflow's batch
(``snakemake --config trained_panel=DIR target_vcf=...``): the panel's files checked against
its manifest, the targets phased (passed through when already phased), put on the panel's
array, every chunk of windows imputed, one bgzipped VCF with its tabix index written from the
pieces, and the targets' QC summary. What it leaves out is Snakemake: no DAG to build, no
process per job, no files kept for a re-run of one chunk. For one batch on one machine, as
Beagle's ``java -jar beagle.jar ref= gt= out=`` is used; the workflow stays the way to run
many batches or a cluster.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import steps
from .errors import InputError

log = logging.getLogger(__name__)

VCF_SUFFIX = ".vcf.gz"


@dataclass(frozen=True)
class BatchSettings:
    """The workflow config's keys that a trained panel's batch reads, with config/config.yaml's
    defaults (a test holds the two equal): ``impute.*``, ``ingest.*``, ``phasing.*``,
    ``output.format_fields``, ``output.gp`` and ``device``."""

    batch_size: int = 32
    windows_per_job: int = 16
    copying_states: int = 0
    match_states: int = 96
    max_missing_array_fraction: float = 0.2
    multiallelic: str = "split"
    min_call_rate: float = 0.0
    phasing_tool: str = "beagle"
    beagle_command: str = "beagle"
    format_fields: tuple[str, ...] = field(default_factory=tuple)
    gp: bool = True
    device: str = "auto"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BatchSettings:
        """The settings a workflow config (a parsed config.yaml; missing keys keep their
        defaults) gives a batch."""
        impute = config.get("impute") or {}
        ingest = config.get("ingest") or {}
        phasing = config.get("phasing") or {}
        output = config.get("output") or {}
        d = cls()
        return cls(
            batch_size=int(impute.get("batch_size", d.batch_size)),
            windows_per_job=int(impute.get("windows_per_job", d.windows_per_job)),
            copying_states=int(impute.get("copying_states", d.copying_states)),
            match_states=int(impute.get("match_states", d.match_states)),
            max_missing_array_fraction=float(impute.get("max_missing_array_fraction",
                                                        d.max_missing_array_fraction)),
            multiallelic=str(ingest.get("multiallelic", d.multiallelic)),
            min_call_rate=float(ingest.get("min_call_rate", d.min_call_rate)),
            phasing_tool=str(phasing.get("tool", d.phasing_tool)),
            beagle_command=str(phasing.get("beagle_command", d.beagle_command)),
            format_fields=tuple(output.get("format_fields", d.format_fields)),
            gp=bool(output.get("gp", d.gp)),
            device=str(config.get("device", d.device)))

    def replace(self, **changes: Any) -> BatchSettings:
        """A copy with the given fields changed (``None`` values ignored: options not given)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def companion(out: str | os.PathLike[str], suffix: str) -> str:
    """A file written beside the imputed VCF: ``out.vcf.gz`` -> ``out<suffix>``."""
    out = str(out)
    return out[: -len(VCF_SUFFIX)] + suffix


def check_output(out: str | os.PathLike[str], *, force: bool) -> None:
    """Refuse an output that is not a ``.vcf.gz`` or that exists (unless ``force``), and a
    folder that does not exist: before any work."""
    path = Path(out)
    if not str(path).endswith(VCF_SUFFIX):
        raise InputError(f"-o {out}: the imputed VCF is bgzipped with a tabix index; give a "
                         f"name ending in {VCF_SUFFIX}")
    if not path.parent.is_dir():
        raise InputError(f"-o {out}: the folder {path.parent} does not exist")
    if path.exists() and not force:
        raise InputError(f"{out} exists: give --force to overwrite it, or another -o")


@dataclass(frozen=True)
class _Chromosome:
    """One chromosome of the batch: its names and the files its steps read and write."""

    contig: str
    label: str  # the panel's file-safe name (its folder)
    target_vcf: str
    reference_vcf: str
    work: Path
    panel: Path

    def panel_file(self, name: str) -> str:
        return str(self.panel / self.label / name)

    def work_file(self, name: str) -> str:
        return str(self.work / f"{self.label}.{name}")


def _chromosomes(panel_dir: Path, target_vcf: list[str], reference_vcf: list[str],
                 restrict: Sequence[str] | None, work: Path) -> list[_Chromosome]:
    """The chromosomes to impute, the panel's files checked (``steps.list_chromosomes``)."""
    from .io.tsv import read_rows

    table = work / "chromosomes.tsv"
    steps.list_chromosomes(reference_vcf=reference_vcf, target_vcf=target_vcf, out=str(table),
                           trained_panel=str(panel_dir), restrict=list(restrict or []))
    return [_Chromosome(contig=r["contig"], label=r["wildcard"], target_vcf=r["target_file"],
                        reference_vcf=r["reference_file"], work=work, panel=panel_dir)
            for r in read_rows(table)]


def _prepare_targets(c: _Chromosome, s: BatchSettings, *, panel_contigs: list[str],
                     threads: int, sample_table: str | None) -> None:
    """Phase (or pass through) the chromosome's targets, put them on the panel's array and
    write the final mask: rules phase_targets, parse_targets and refresh_mask."""
    from .phase import phase_targets

    phase_targets(contig=c.contig, target_vcf=c.target_vcf, reference_vcf=c.reference_vcf,
                  out=c.work_file("phased.vcf.gz"), tool=s.phasing_tool,
                  beagle_command=s.beagle_command, threads=threads,
                  reference_contigs=panel_contigs)
    steps.parse_targets(target_vcf=c.work_file("phased.vcf.gz"),
                        reference_h5=c.panel_file("reference.h5"), contig=c.contig,
                        multiallelic=s.multiallelic, min_call_rate=s.min_call_rate,
                        out=c.work_file("targets.h5"), qc_sites=c.work_file("qc_sites.tsv"),
                        qc_samples=c.work_file("qc_samples.tsv"),
                        array_sites=c.panel_file("array_sites.tsv"),
                        max_missing_array_fraction=s.max_missing_array_fraction,
                        panel=sample_table)
    steps.refresh_mask(targets_h5=c.work_file("targets.h5"), contig=c.contig, epoch="final",
                       drop_fraction=0.0, out=c.work_file("mask.h5"))


def _impute_chromosome(c: _Chromosome, s: BatchSettings, *, threads: int,
                       dr2_calibration: str, reference_at_sites_h5: str) -> list[str]:
    """Every chunk of the chromosome's windows imputed into its VCF piece (rule
    impute_chunk, one chunk after the other); the pieces in order."""
    from .windows import impute_chunks, read_window_table

    windows = c.panel_file("windows.tsv")
    chunks = impute_chunks(read_window_table(windows)["window_id"].tolist(), s.windows_per_job)
    pieces = []
    for chunk in chunks:
        piece = c.work_file(f"{chunk}.vcf.gz")
        steps.impute_chunk(checkpoint=str(c.panel / "model.pt"),
                           key_encoder=str(c.panel / "model.keys.npz"), contig=c.contig,
                           chunk=chunk, windows_per_job=s.windows_per_job,
                           reference_h5=c.panel_file("reference.h5"),
                           targets_h5=c.work_file("targets.h5"), windows_tsv=windows,
                           mask_h5=c.work_file("mask.h5"), out=piece, batch_size=s.batch_size,
                           device=s.device, threads=threads, copying_states=s.copying_states,
                           match_states=s.match_states, dr2_calibration=dr2_calibration,
                           format_fields=list(s.format_fields), gp=s.gp,
                           reference_at_sites_h5=reference_at_sites_h5)
        pieces.append(piece)
    return pieces


def impute_batch(*, panel_dir: str | os.PathLike[str], target_vcf: Sequence[str], out: str,
                 settings: BatchSettings = BatchSettings(), threads: int = 1,
                 reference_vcf: Sequence[str] = (), chromosomes: Sequence[str] | None = None,
                 sample_table: str | None = None, command: str = "",
                 work_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Impute ``target_vcf`` (one file, or one per chromosome) with the trained panel in
    ``panel_dir``; returns the contigs imputed.

    Writes ``out`` (a ``.vcf.gz``: every chromosome the panel and the targets share, in the
    panel's order, with the workflow's FORMAT and INFO fields) with its ``.tbi``, and beside
    it ``<out>.qc.tsv`` (the targets' QC, as ``results/qc/summary.tsv``). ``reference_vcf``
    is optional: checked against the panel, and what Beagle phases unphased targets against.
    Intermediate files go to ``work_dir`` (kept), or to a temporary folder beside ``out``
    (removed). ``command`` is recorded in the VCF header.
    """
    from .trained_panel import (
        DR2_CALIBRATION,
        REFERENCE_AT_ARRAY,
        has_reference_at_array,
        read_manifest,
    )

    panel = Path(panel_dir)
    manifest = read_manifest(panel)  # one line for a folder that is not a panel
    keep = work_dir is not None
    work = Path(work_dir) if keep else Path(tempfile.mkdtemp(
        prefix=".vcfbert-impute-", dir=Path(out).resolve().parent))
    work.mkdir(parents=True, exist_ok=True)
    try:
        chroms = _chromosomes(panel, list(target_vcf), list(reference_vcf), chromosomes, work)
        panel_contigs = [c["contig"] for c in manifest["contigs"]]
        calibration = str(panel / DR2_CALIBRATION) if DR2_CALIBRATION in manifest["files"] else ""
        with_copy = has_reference_at_array(manifest)  # panels built before it lack the copy
        pieces = []
        for c in chroms:
            log.info("%s: the targets on the panel's array", c.contig)
            _prepare_targets(c, settings, panel_contigs=panel_contigs, threads=threads,
                             sample_table=sample_table)
            log.info("%s: imputing", c.contig)
            pieces += _impute_chromosome(
                c, settings, threads=threads, dr2_calibration=calibration,
                reference_at_sites_h5=c.panel_file(REFERENCE_AT_ARRAY) if with_copy else "")
        steps.write_vcf(pieces=pieces, targets_h5=[c.work_file("targets.h5") for c in chroms],
                        reference_h5=[c.panel_file("reference.h5") for c in chroms], out=out,
                        command=command, threads=1, format_fields=list(settings.format_fields),
                        gp=settings.gp)
        steps.qc_summary(qc_sites=[c.work_file("qc_sites.tsv") for c in chroms],
                         qc_samples=[c.work_file("qc_samples.tsv") for c in chroms],
                         windows=[c.panel_file("windows.tsv") for c in chroms],
                         out=companion(out, ".qc.tsv"))
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    log.info("imputed %s: %s", ", ".join(c.contig for c in chroms), out)
    return [c.contig for c in chroms]
