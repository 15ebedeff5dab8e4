"""Wall time of each stage of a finished workflow run, from the per-job tables Snakemake wrote
(``benchmark:`` of every rule).

    python bench/stage_times.py .            # the run's working directory (has benchmarks/)

Prints, per stage, the number of jobs, the summed and the longest job wall time (seconds). Jobs
of one stage run in parallel (``--cores``), so the summed time is CPU-side work, not elapsed
time; the run's elapsed time is Snakemake's own (``time snakemake ...``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd


def stage_of(rel: str) -> str:
    """Stage label of a benchmark file's path relative to ``benchmarks/`` (no ``.tsv``)."""
    m = re.fullmatch(r"epochs/([^/]+)/(encode|index)/.*", rel)
    if m:
        return f"{'build_index' if m.group(2) == 'index' else 'encode'} (epoch {m.group(1)})"
    m = re.fullmatch(r"train/epoch_(\d+)", rel)
    if m:
        return f"train_epoch (epoch {m.group(1)})"
    if rel.startswith("impute/"):
        return "ligate" if rel.endswith(".ligate") else (
            "impute_chunk" if re.search(r"\.c\d+$", rel) else rel.split("/", 1)[1])
    if rel.startswith("ingest/"):
        name = rel.split("/", 1)[1]
        return name.split(".", 1)[1] if "." in name else name
    if rel.startswith("windows/"):
        return "define_windows"
    return rel.rsplit("/", 1)[-1]


def stage_table(run_dir: Path) -> pd.DataFrame:
    rows = []
    for f in sorted((run_dir / "benchmarks").rglob("*.tsv")):
        rel = str(f.relative_to(run_dir / "benchmarks"))[: -len(".tsv")]
        s = float(pd.read_csv(f, sep="\t")["s"].iloc[-1])
        rows.append({"stage": stage_of(rel), "seconds": s, "mtime": f.stat().st_mtime})
    if not rows:
        raise SystemExit(f"no benchmark tables under {run_dir / 'benchmarks'}: is this a run's "
                         "working directory?")
    df = pd.DataFrame(rows)
    out = df.groupby("stage").agg(jobs=("seconds", "size"), sum_s=("seconds", "sum"),
                                  max_s=("seconds", "max"), order=("mtime", "min"))
    return out.sort_values("order").drop(columns="order").round(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", nargs="?", default=".", type=Path)
    a = ap.parse_args()
    table = stage_table(a.run_dir)
    try:
        print(table.to_markdown())
    except ImportError:  # to_markdown needs the optional 'tabulate'
        print(table.to_string())


if __name__ == "__main__":
    main()
