"""Start-of-run integrity check of the FAISS shards (called from ``rules/common.smk``).

Snakemake decides what to rebuild from file existence and modification times; it cannot see
that a shard is half-written or corrupted (and jobs that entered the DAG through a checkpoint
escape its incomplete-output check when it is killed). Every shard carries its checksum in a
sidecar, so a shard that fails :func:`vcfbert.index.verify_shard` is deleted here, before the
DAG is built. A shard's checksum is computed once: the stamps of the shards found intact
(the shard's and its sidecar's size and modification time, and the sidecar's checksum) are kept
in ``<root>/verified_shards.json``, and a shard whose stamp is unchanged is not read again at
the next start (a whole genome's shards at 6,000 reference haplotypes are ~10 GB: hashing them
took every ``snakemake`` start seconds). A job still checks the checksum of every shard it loads
(:func:`vcfbert.index.load_index`).

Snakemake (since 7.x, by design) does not rebuild a *missing intermediate* file when everything
downstream of it is present and up to date. Users expect a deleted shard to come back, so
:func:`missing_shards` lists the index shards and imputed chunks that are gone although what consumed them
exists; the workflow asks for them as extra targets of ``rule all``, and Snakemake then rebuilds
exactly those shards and re-runs what depends on them.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from .index import sidecar_path, verify_shard
from .io.tsv import read_column

VERIFIED_STAMPS = "verified_shards.json"  # under the shards' root: {shard: its stamp}


def _stamp(shard: Path) -> list | None:
    """What must not change for a shard found intact to stay so without reading it again:
    the shard's and its sidecar's size and modification time (ns) and the sidecar's checksum
    field; None when either file is missing or the sidecar unreadable."""
    try:
        own, side = shard.stat(), sidecar_path(shard).stat()
        checksum = json.loads(sidecar_path(shard).read_text()).get("sha256")
    except (OSError, ValueError):
        return None
    return [own.st_size, own.st_mtime_ns, side.st_size, side.st_mtime_ns, checksum]


def _read_stamps(path: Path) -> dict[str, list]:
    """The stamps of the shards verified at an earlier start ({} when none or unreadable)."""
    try:
        stamps = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return stamps if isinstance(stamps, dict) else {}


def corrupted_shards(root: str | Path, *, remember: bool = False) -> list[tuple[Path, str]]:
    """(shard, problem) for every unusable shard under ``root`` (``*/index/*/*.faiss``).

    A shard whose stamp (:func:`_stamp`) is the one recorded when it was last found intact is
    not read again; ``remember``: record the stamps of the shards found intact now (in
    ``<root>/verified_shards.json``, written atomically), for the next start."""
    found: list[tuple[Path, str]] = []
    base = Path(root)
    if not base.exists():
        return found
    known = _read_stamps(base / VERIFIED_STAMPS)
    intact: dict[str, list] = {}
    for shard in sorted(base.glob("*/index/*/*.faiss")):
        name = shard.relative_to(base).as_posix()
        stamp = _stamp(shard)
        if stamp is not None and known.get(name) == stamp:
            intact[name] = stamp
            continue
        problem = verify_shard(shard)
        if problem:
            found.append((shard, problem))
        elif stamp is not None and _stamp(shard) == stamp:  # unchanged while it was read
            intact[name] = stamp
    for side in sorted(base.glob("*/index/*/*.json")):
        if not side.with_suffix(".faiss").exists():
            found.append((side.with_suffix(".faiss"), "sidecar without index file"))
    if remember and intact != known:
        from .atomic import write_text_atomic

        with contextlib.suppress(OSError):  # a read-only results folder: checked each time
            write_text_atomic(base / VERIFIED_STAMPS, json.dumps(intact, sort_keys=True))
    return found


def purge_corrupted_shards(root: str | Path, *, dry_run: bool = False) -> list[Path]:
    """Delete unusable shards (and their sidecars); return what was (or would be) removed.
    Outside a dry run, the intact shards' stamps are recorded (:func:`corrupted_shards`)."""
    removed = []
    for shard, problem in corrupted_shards(root, remember=not dry_run):
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
