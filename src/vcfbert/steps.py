"""One function per workflow rule: what ``scripts/<rule>.py`` calls (and the CLI too).

Each function takes plain paths and values (no Snakemake objects), does one job, and writes
its outputs atomically.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

# pandas is imported inside the steps that use it: an index job starts without it (its import
# took longer than the job's work)
from .atomic import atomic_path, write_text_atomic
from .errors import InputError

log = logging.getLogger(__name__)


def inject_failure(rule: str, fields: dict[str, Any]) -> None:
    """Testing hook: fail on purpose when ``VCFBERT_INJECT_FAILURE`` names this job.

    Format: one or more ``rule`` or ``rule:key=value,key=value`` separated by ``;`` (e.g.
    ``compile_kernels;build_index:epoch=0,window_id=w0001``); a job fails when one of them
    names its rule and every key it gives matches. Used by the SLURM test to show that the
    other jobs go on (keep-going) and that a failed shard is re-submitted alone. Unset in
    normal use.
    """
    for spec in os.environ.get("VCFBERT_INJECT_FAILURE", "").split(";"):
        name, _, wanted_text = spec.strip().partition(":")
        if name != rule:
            continue
        wanted = dict(kv.split("=", 1) for kv in wanted_text.split(",") if "=" in kv)
        if all(str(fields.get(k)) == v for k, v in wanted.items()):
            raise RuntimeError(f"failure injected on purpose ({spec.strip()})")


def simulate(*, params: dict[str, Any], reference_vcf: str, target_vcf: str, truth_vcf: str,
             panel: str) -> None:
    from .simulate import SimulatedPaths, simulation_config_from_dict
    from .simulate import simulate as run

    run(simulation_config_from_dict(params),
        SimulatedPaths(reference_vcf, target_vcf, truth_vcf, panel))


def list_chromosomes(*, reference_vcf: str | list[str], target_vcf: str | list[str], out: str,
                     trained_panel: str = "", genetic_map: str = "",
                     restrict: list[str] | None = None) -> None:
    """The chromosomes to impute: the reference's (or the trained panel's) that the targets
    have, each with the files that hold it. With a trained panel, ``reference_vcf`` is
    optional and checked against it, and the panel's files that the batch will read (those of
    its chromosomes, and the shared ones) are checked against the manifest (size, SHA-256:
    :func:`vcfbert.trained_panel.verify`) before any job reads one; a job of its own for the
    check cost the batch one more process start."""
    if trained_panel:
        from . import trained_panel as tp
        from .inputs import CHROMOSOME_COLUMNS, files_by_contig
        from .io.tsv import write_table
        from .io.vcf import list_contigs, normalize_contig

        manifest = tp.read_manifest(trained_panel)
        rows = tp.panel_chromosomes(manifest, target_vcf=target_vcf, panel_dir=trained_panel,
                                    reference_vcf=reference_vcf)
        targets = files_by_contig([target_vcf] if isinstance(target_vcf, str) else target_vcf,
                                  list_contigs, normalize_contig, "target_vcf")
        refs = files_by_contig([reference_vcf] if isinstance(reference_vcf, str)
                               else reference_vcf, list_contigs, normalize_contig,
                               "reference_vcf") if reference_vcf else {}
        wanted = {normalize_contig(str(c)) for c in restrict or []}
        rows = [{**r, "reference_file": refs.get(normalize_contig(r["contig"]), ""),
                 "target_file": targets[normalize_contig(r["contig"])], "genetic_map_file": ""}
                for r in rows if not wanted or normalize_contig(r["contig"]) in wanted]
        if not rows:
            raise InputError(f"chromosomes: none of {sorted(wanted)} is in the trained panel "
                             "and the targets")
        contigs = [r["contig"] for r in rows]
        tp.verify(trained_panel, contigs=contigs)
        log.info("trained panel %s: the files of %s and its shared files match the manifest",
                 trained_panel, contigs)
        write_table(out, CHROMOSOME_COLUMNS, rows)
        log.info("chromosomes to impute with the trained panel %s: %s", trained_panel, contigs)
        return
    from .ingest import write_contig_list

    contigs = write_contig_list(reference_vcf, out, target_vcf=target_vcf,
                                genetic_map=genetic_map, restrict=restrict)
    log.info("chromosomes to impute: %s", contigs)


def trained_panel(*, out_dir: str, chromosomes_tsv: str, reference_h5: list[str],
                  targets_h5: list[str], windows_tsv: list[str], model: str, key_encoder: str,
                  metrics_csv: str, reference_vcf: str | list[str], config: dict[str, Any],
                  command: str, dr2_calibration: str = "") -> None:
    import pandas as pd

    from .trained_panel import build

    table = pd.read_csv(chromosomes_tsv, sep="\t", dtype=str)
    build(out_dir=out_dir, contigs=table["contig"].tolist(), labels=table["wildcard"].tolist(),
          reference_h5=reference_h5, targets_h5=targets_h5, windows_tsv=windows_tsv,
          model=model, key_encoder=key_encoder, metrics_csv=metrics_csv,
          reference_vcf=reference_vcf, config=config, command=command,
          dr2_calibration=dr2_calibration)


def contig_of(chromosomes_tsv: str, label: str) -> str:
    """The VCF contig name behind a chromosome label used in paths (the table read with the
    csv module: every shard job calls this)."""
    from .io.tsv import read_rows

    for row in read_rows(chromosomes_tsv):
        if row.get("wildcard") == label:
            return row["contig"]
    raise InputError(f"chromosome {label} is not in {chromosomes_tsv}")


def overlapping_samples(reference_vcf: str, target_vcf: str) -> list[str]:
    from .io.vcf import sample_ids

    targets = set(sample_ids(target_vcf))
    return [s for s in sample_ids(reference_vcf) if s in targets]


def parse_reference(*, reference_vcf: str, target_vcf: str, contig: str, panel: str | None,
                    multiallelic: str, overlap: str, out: str,
                    genetic_map: str | None = None) -> None:
    from .ingest import parse_reference as run

    shared = overlapping_samples(reference_vcf, target_vcf)
    exclude = None
    if shared:
        if overlap == "error":
            raise InputError(
                f"{len(shared)} sample(s) are both in the reference and in the targets (first: "
                f"{shared[0]}): imputing a sample from itself is leakage; remove them from one "
                "file or set `ingest.overlapping_samples: exclude_from_reference`")
        exclude = shared
        log.warning("excluding %d samples present in both files from the reference",
                    len(shared))
    run(reference_vcf, contig, out, panel=panel or None, multiallelic=multiallelic,
        exclude_samples=exclude, genetic_map=genetic_map or None)


def parse_targets(*, target_vcf: str, reference_h5: str, contig: str, multiallelic: str,
                  min_call_rate: float, out: str, qc_sites: str, qc_samples: str,
                  array_sites: str = "", max_missing_array_fraction: float = 0.2,
                  panel: str | None = None) -> None:
    """Align the targets to the reference; with ``array_sites`` (a trained panel's
    ``array_sites.tsv``) put them on that array."""
    from .ingest import parse_targets as run

    array = None
    if array_sites:
        from .trained_panel import read_array

        array = read_array(array_sites)
    run(target_vcf, reference_h5, contig, out, qc_sites, qc_samples, multiallelic=multiallelic,
        min_call_rate=min_call_rate, array_index=array,
        max_missing_array_fraction=max_missing_array_fraction, panel=panel or None)


def define_windows(*, reference_h5: str, targets_h5: str, core_sites: int, flank_sites: int,
                   out: str) -> None:
    from .io.h5store import read_target_sites, read_variant_table
    from .windows import define_windows as run
    from .windows import write_windows

    table = read_variant_table(reference_h5, fields=("position",))
    typed = read_target_sites(targets_h5)
    df = run(table["position"], typed, core_sites=core_sites, flank_sites=flank_sites)
    write_windows(df, out)
    log.info("%d windows (%d variants, %d typed sites)", len(df), table["position"].size,
             typed.size)


def split_samples(*, reference_h5: str, val_fraction: float, seed: int, out: str) -> None:
    from .io.h5store import store_samples
    from .split import split_samples as run
    from .split import write_split

    samples, pops = store_samples(reference_h5)
    df = run(samples, pops, val_fraction=val_fraction, seed=seed)
    write_split(df, out)
    log.info("split: %s", df["split"].value_counts().to_dict())


def refresh_mask(*, targets_h5: str, contig: str, epoch: str, drop_fraction: float,
                 out: str) -> None:
    from .io.h5store import read_targets
    from .masks import epoch_mask, write_mask

    targets = read_targets(targets_h5)
    n = targets.variant_ref_index.size
    if epoch == "final":  # the targets' sites: those at least one target has a call at
        observed, frac = targets.site_called, 0.0
        if not observed.any():
            raise InputError(f"{targets_h5}: no target has a called genotype on {contig}")
    else:
        observed, frac = epoch_mask(n, int(epoch), contig, drop_fraction), drop_fraction
    write_mask(out, observed, version=epoch, contig=contig, drop_fraction=frac)
    log.info("mask %s for %s: %d of %d slots observed", epoch, contig, observed.sum(), n)


def lowest_priority() -> None:
    """Run the rest of this process at the lowest CPU priority (nice 19): for the side jobs
    that hold no core of Snakemake's count (``side_job_threads`` in rules/common.smk)."""
    with contextlib.suppress(OSError):
        os.nice(19)


def compile_kernels(*, out: str) -> None:
    """Fill numba's cache with the pipeline's kernels (:mod:`vcfbert.kernels`) and record the
    seconds each took in ``out`` (JSON): near zero when the cache was already filled."""
    import numba

    from .kernels import KERNELS
    from .kernels import compile_kernels as run

    inject_failure("compile_kernels", {})
    # the jobs beside it (parsing the reference, which keeps more than one core busy, then
    # the key jobs) go first, and this takes the cycles they leave
    lowest_priority()
    seconds = run()
    missing = sorted(set(KERNELS) - set(seconds))
    write_json(out, {"numba": numba.__version__, "seconds": seconds, "not_compiled": missing})
    log.info("%d of %d kernels ready in numba's cache (%.1f s)", len(seconds), len(KERNELS),
             sum(seconds.values()))


def init_model(*, model_config: dict[str, Any], seed: int, out: str,
               reference_h5: str = "") -> None:
    """The initial checkpoint; its switch rate is scaled to the panel's haplotype count (read
    from ``reference_h5``)."""
    from .train import init_model as run

    n_haps = 0
    if reference_h5:
        from .io.h5store import store_samples

        n_haps = 2 * len(store_samples(reference_h5)[0])
    run(model_config, out, seed=seed, n_reference_haplotypes=n_haps)
    log.info("initial switch rate scaled to %d reference haplotypes", n_haps)


def _chromosome(contig: str, reference_h5: str, targets_h5: str, windows_tsv: str):
    from .windowdata import Chromosome

    return Chromosome.load(contig, reference_h5, targets_h5, windows_tsv)


def encode(*, key_encoder: str, contig: str, window_id: str, reference_h5: str,
           targets_h5: str, windows_tsv: str, mask_h5: str, out: str) -> None:
    """Keys of one window with the exported (numpy) key encoder: no torch, no GPU needed."""
    from . import keyencoder
    from .encode import encode_window

    t0 = time.time()
    params = keyencoder.load(key_encoder)
    chrom = _chromosome(contig, reference_h5, targets_h5, windows_tsv)
    encode_window(params, chrom, window_id, mask_h5, out)
    log.info("encoded in %.3f s", time.time() - t0)


def build_index(*, keys_npy: str, out: str, meta: dict[str, Any], key_encoder: str) -> None:
    from .atomic import sha256_file
    from .index import build_index as run

    inject_failure("build_index", meta)
    t0 = time.time()
    keys = np.load(keys_npy, allow_pickle=False)
    side = run(keys, out, meta={**meta, "key_encoder_sha256": sha256_file(key_encoder)})
    log.info("index %s: %d x %d, %.1f bytes per haplotype-window, %.3f s", out, side["count"],
             side["dimension"], side["bytes_per_haplotype_window"], time.time() - t0)


def train_epoch(*, epoch: int, previous: str, contigs: list[str], reference_h5: list[str],
                targets_h5: list[str], windows_tsv: list[str], masks: list[str],
                final_masks: list[str], indexes: list[str], split_tsv: str, out_model: str,
                out_metrics: str, train_config: dict[str, Any], device: str,
                rank: int = 0, world_size: int = 1) -> None:
    """One training epoch in this process (rank ``rank`` of ``world_size`` under torchrun:
    :func:`vcfbert.ddp.train_epoch` starts several)."""
    from .train import TrainConfig
    from .train import train_epoch as run

    chroms = [_chromosome(c, r, t, w) for c, r, t, w in
              zip(contigs, reference_h5, targets_h5, windows_tsv, strict=True)]
    index_paths = {}
    for path in indexes:  # the sidecar says which (contig, window) a shard belongs to
        side = json.loads(Path(path).with_suffix(".json").read_text())
        index_paths[(str(side["contig"]), str(side["window_id"]))] = path
    run(epoch=epoch, previous_checkpoint=previous, chroms=chroms, masks=masks,
        final_masks=final_masks, index_paths=index_paths, split_tsv=split_tsv,
        out_checkpoint=out_model, out_metrics=out_metrics,
        partial_dir=str(Path(out_model).parent) + ".partial",
        cfg=TrainConfig.from_dict(train_config), device=device, rank=rank,
        world_size=world_size)


def select_model(*, models: list[str], metrics: list[str], out_model: str,
                 out_csv: str, criterion: str = "val_r2_mean_bins") -> None:
    """Keep the epoch with the best validation score; write the per-epoch metrics table."""
    import shutil

    import pandas as pd

    rows = [json.loads(Path(m).read_text()) for m in metrics]
    df = pd.DataFrame(rows).sort_values("epoch")
    scores = df[criterion].fillna(-np.inf) if criterion in df else pd.Series(
        -np.asarray(df["epoch"]), index=df.index)
    best = int(df.loc[scores.idxmax(), "epoch"])
    df["selected"] = df["epoch"] == best
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    from .keyencoder import companion_path

    src = [m for m, r in zip(models, rows, strict=True) if int(r["epoch"]) == best][0]
    with atomic_path(companion_path(out_model)) as tmp:
        shutil.copyfile(companion_path(src), tmp)
    with atomic_path(out_model) as tmp:
        shutil.copyfile(src, tmp)
    log.info("selected epoch %d by %s", best, criterion)


def calibrate_dr2(*, model: str, contigs: list[str], reference_h5: list[str],
                  targets_h5: list[str], windows_tsv: list[str], final_masks: list[str],
                  split_tsv: str, out: str, samples: int, device: str, threads: int = 1,
                  copying_states: int = 0, match_states: int = 0, windows: int = 0) -> None:
    """The DR2 recalibration of the selected model, fitted on validation samples
    (:func:`vcfbert.train.calibrate_dr2`) in ``windows`` windows spread over the chromosomes
    (0: all)."""
    from .train import calibrate_dr2 as run

    chroms = [_chromosome(c, r, t, w) for c, r, t, w in
              zip(contigs, reference_h5, targets_h5, windows_tsv, strict=True)]
    run(checkpoint=model, chroms=chroms, final_masks=final_masks, split_tsv=split_tsv, out=out,
        samples=samples, device=device, threads=threads, copying_states=copying_states,
        match_states=match_states, windows=windows)


def impute_chunk(*, checkpoint: str, key_encoder: str, contig: str, chunk: str,
                 windows_per_job: int, reference_h5: str, targets_h5: str, windows_tsv: str,
                 mask_h5: str, out: str, batch_size: int, device: str, threads: int = 1,
                 copying_states: int = 0, dr2_calibration: str = "",
                 format_fields: list[str] | None = None, match_states: int = 0,
                 gp: bool = True, reference_at_sites_h5: str = "") -> None:
    """One chunk of consecutive windows imputed into its VCF piece (+ sidecar);
    ``reference_at_sites_h5``: a trained panel's copy of the reference at its array sites
    ("": none, or a training run's target store, which holds its own)."""
    from .impute import impute_chunk as run
    from .windows import impute_chunks, read_window_table

    chunks = impute_chunks(read_window_table(windows_tsv)["window_id"].tolist(), windows_per_job)
    if chunk not in chunks:
        raise InputError(f"chunk {chunk} is not among the {len(chunks)} chunks of {contig}")
    run(checkpoint=checkpoint, key_encoder=key_encoder, contig=contig,
        window_ids=chunks[chunk], reference_h5=reference_h5, targets_h5=targets_h5,
        windows_tsv=windows_tsv, mask_h5=mask_h5, out=out, batch_size=batch_size,
        device=device, threads=threads, copying_states=copying_states,
        dr2_calibration=dr2_calibration, format_fields=format_fields or [],
        match_states=match_states, gp=gp, reference_at_sites_h5=reference_at_sites_h5)


def _as_list(files: str | list[str]) -> list[str]:
    return [files] if isinstance(files, str) else list(files)


def write_vcf(*, pieces: str | list[str], targets_h5: str | list[str],
              reference_h5: str | list[str], out: str, command: str, threads: int = 1,
              format_fields: list[str] | None = None, gp: bool = True) -> None:
    """One imputed VCF for one chromosome, or for several (in the order given), from the
    imputation jobs' pieces."""
    from .impute import write_vcf as run

    run(pieces=_as_list(pieces), targets_h5=_as_list(targets_h5),
        reference_h5=_as_list(reference_h5), out=out, command=command, threads=threads,
        format_fields=format_fields, gp=gp)


def imputed_manifest(*, vcfs: list[str], chromosomes_tsv: str, out: str) -> None:
    """``results/imputed/chromosomes.tsv``: each chromosome's imputed VCF, its index, size and
    SHA-256 (what an imputation server lists beside its downloads). Read and written with the
    csv module (:mod:`vcfbert.io.tsv`): the job's whole work is a hash, and pandas' import took
    longer."""
    from .atomic import sha256_file
    from .io.tsv import read_column, write_table

    contigs = read_column(chromosomes_tsv, "contig")
    if len(contigs) != len(vcfs):
        raise InputError(f"{chromosomes_tsv} lists {len(contigs)} chromosomes and "
                         f"{len(vcfs)} imputed VCFs were given")
    fields = ["contig", "vcf", "index", "bytes", "sha256"]
    rows = [{"contig": contig, "vcf": os.path.basename(vcf),
             "index": os.path.basename(vcf) + ".tbi", "bytes": os.path.getsize(vcf),
             "sha256": sha256_file(vcf)} for contig, vcf in zip(contigs, vcfs, strict=True)]
    write_table(out, fields, rows)
    log.info("imputed VCFs: %s", ", ".join(r["vcf"] for r in rows))


def evaluate(*, imputed_vcf: str | list[str], truth_vcf: str | list[str], reference_h5: list[str],
             targets_h5: list[str], panel: str | None, out_accuracy: str,
             out_per_variant: str) -> None:
    from .evaluate import site_table, write_tables
    from .evaluate_stream import evaluate as run
    from .ingest import read_panel

    acc, pv = run(imputed_vcf, truth_vcf, site_table(reference_h5, targets_h5),
                  populations=read_panel(panel) if panel else None,
                  tmp_dir=os.path.dirname(os.path.abspath(out_accuracy)))
    write_tables(acc, pv, out_accuracy, out_per_variant)
    overall = acc[(acc["group"] == "all")]
    log.info("accuracy:\n%s", overall.to_string(index=False))


def plots(*, accuracy: str | None, per_variant: str | None, metrics_csv: str | None,
          qc_sites: list[str], outputs: dict[str, str]) -> None:
    import pandas as pd

    from . import plots as p

    if "r2_by_maf" in outputs:
        p.r2_by_maf(pd.read_csv(accuracy, sep="\t"), outputs["r2_by_maf"])
    if "calibration" in outputs:
        p.dr2_calibration(pd.read_csv(per_variant, sep="\t"), outputs["calibration"])
    if "training" in outputs:
        p.training_curves(pd.read_csv(metrics_csv), outputs["training"])
    if "qc" in outputs:
        p.qc_table(pd.concat([pd.read_csv(q, sep="\t") for q in qc_sites]), outputs["qc"])


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True))


def qc_summary(*, qc_sites: list[str], qc_samples: list[str], out: str,
               windows: list[str] | None = None) -> None:
    """One table of the targets' QC, like the imputation servers' reports.

    Rows: per contig, each site outcome (matched, allele_swapped, strand_flipped, dropped by
    reason) and sample call-rate statistics.
    """
    import pandas as pd

    rows = []
    for path in qc_sites:
        df = pd.read_csv(path, sep="\t", dtype={"contig": str})
        rows += [{"contig": r.contig, "section": "sites", "metric": r.outcome,
                  "value": r.count} for r in df.itertuples()]
    for path in qc_samples:
        df = pd.read_csv(path, sep="\t", dtype={"contig": str, "sample": str})
        if df.empty:
            continue
        contig = df["contig"].iloc[0]
        rate = df["call_rate"]
        rows += [
            {"contig": contig, "section": "samples", "metric": "samples", "value": len(df)},
            {"contig": contig, "section": "samples", "metric": "call_rate_min",
             "value": round(float(rate.min()), 4)},
            {"contig": contig, "section": "samples", "metric": "call_rate_mean",
             "value": round(float(rate.mean()), 4)},
            {"contig": contig, "section": "samples", "metric": "samples_call_rate_below_0.9",
             "value": int((rate < 0.9).sum())},
            {"contig": contig, "section": "samples", "metric": "samples_unphased",
             "value": int((~df["phased"].astype(bool)).sum())},
        ]
    site_contigs = [str(pd.read_csv(p, sep="\t", dtype={"contig": str})["contig"].iloc[0])
                    for p in qc_sites]
    for path, contig in zip(windows or [], site_contigs, strict=False):  # both per chromosome
        df = pd.read_csv(path, sep="\t", dtype={"window_id": str})
        rows += [{"contig": contig, "section": "windows", "metric": "windows", "value": len(df)},
                 {"contig": contig, "section": "windows", "metric": "windows_without_typed_core",
                  "value": int((df["n_typed"] == 0).sum())},
                 {"contig": contig, "section": "windows", "metric": "max_window_span_bp",
                  "value": int((df["end_bp"] - df["start_bp"]).max())}]
    with atomic_path(out) as tmp:
        pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False)
