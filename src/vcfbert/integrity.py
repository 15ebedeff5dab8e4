"""Start-of-run integrity check of the FAISS shards (called from ``rules/common.smk``).

Snakemake decides what to rebuild from file existence and modification times; it cannot see
that a shard is half-written or corrupted (and jobs that entered the DAG through a checkpoint
escape its incomplete-output check when it is killed). Every shard carries its checksum in a
sidecar, so a shard that fails :func:`vcfbert.index.verify_shard` is deleted here, before the
DAG is built: the workflow then rebuilds exactly that shard and what depends on it.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from .index import sidecar_path, verify_shard


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
