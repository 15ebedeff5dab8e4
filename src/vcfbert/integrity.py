"""Start-of-run integrity check of the FAISS shards (called from ``rules/common.smk``).

Snakemake decides what to rebuild from file existence and modification times; it cannot see
that a shard is half-written or corrupted (and jobs that entered the DAG through a checkpoint
escape its incomplete-output check when it is killed). Every shard carries its checksum in a
sidecar, so a shard that fails :func:`vcfbert.index.verify_shard` is deleted here, before the
DAG is built.

Snakemake (since 7.x, by design) does not rebuild a *missing intermediate* file when everything
downstream of it is present and up to date. Users expect a deleted shard to come back, so
:func:`missing_shards` lists the index shards and imputed chunks that are gone although what consumed them
exists; the workflow asks for them as extra targets of ``rule all``, and Snakemake then rebuilds
exactly those shards and re-runs what depends on them.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from .index import sidecar_path, verify_shard
from .io.tsv import read_column


def corrupted_shards(root: str | Path) -> list[tuple[Path, str]]:
    """(shard, problem) for every unusable shard under ``root`` (``*/index/*/*.faiss``)."""
    found = []
    base = Path(root)
    if not base.exists():
        return found
    for shard in sorted(base.glob("*/index/*/*.faiss")):
        problem = verify_shard(shard)
        if problem:
            found.append((shard, problem))
    for side in sorted(base.glob("*/index/*/*.json")):
        if not side.with_suffix(".faiss").exists():
            found.append((side.with_suffix(".faiss"), "sidecar without index file"))
    return found


def purge_corrupted_shards(root: str | Path, *, dry_run: bool = False) -> list[Path]:
    """Delete unusable shards (and their sidecars); return what was (or would be) removed."""
    removed = []
    for shard, problem in corrupted_shards(root):
        verb = "would rebuild" if dry_run else "rebuilding"
        print(f"vcfbert: {verb} index shard {shard}: {problem}", file=sys.stderr)
        if not dry_run:
            for p in (shard, sidecar_path(shard)):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        removed.append(shard)
    return removed


def missing_shards(results: str | Path, epochs: list[str], windows_per_job: int, *,
                   windows_tsv: str = "") -> list[Path]:
    """Per-window and per-chunk outputs that are missing although the step that consumed them
    has finished.

    ``epochs`` are the training epoch labels whose index shards the configuration uses (``"0"``,
    ``"1"``, …). A shard of training epoch ``e`` counts as missing when
    ``train/epoch_<e>/model.pt`` exists; an imputed chunk's VCF piece or sidecar
    (``impute/<chrom>/c*.vcf.gz`` / ``.json``, windows grouped ``windows_per_job`` at a time)
    when the chromosome's imputed VCF ``imputed/<chrom>.vcf.gz`` exists. Chromosomes and
    windows are read from the tables of the previous run (``ingest/chromosomes.tsv``, ``windows/<chrom>.tsv``); without them nothing has been built
    yet and nothing is reported. ``windows_tsv`` (a pattern with ``{chrom}``) points at the
    windows tables elsewhere (a trained panel's); default ``<results>/windows/{chrom}.tsv``.
    """
    from .vcf_pieces import sidecar_path as piece_sidecar
    from .windows import impute_chunks

    base = Path(results)
    table = base / "ingest" / "chromosomes.tsv"
    if not table.exists():
        return []
    missing: list[Path] = []
    for chrom in read_column(table, "wildcard"):
        table_path = (Path(windows_tsv.format(chrom=chrom)) if windows_tsv
                      else base / "windows" / f"{chrom}.tsv")
        if not table_path.exists():
            continue
        windows = read_column(table_path, "window_id")
        for epoch in epochs:
            if (base / "train" / f"epoch_{epoch}" / "model.pt").exists():
                shards = [base / "epochs" / epoch / "index" / chrom / f"{w}.faiss" for w in windows]
                missing += [s for s in shards if not (s.exists() and sidecar_path(s).exists())]
        if (base / "imputed" / f"{chrom}.vcf.gz").exists():
            for c in impute_chunks(windows, windows_per_job):
                piece = base / "impute" / chrom / f"{c}.vcf.gz"
                missing += [p for p in (piece, piece_sidecar(piece)) if not p.exists()]
    return missing
