"""Wall time of each stage of a finished workflow run, from the per-job tables Snakemake wrote
(``benchmark:`` of every rule).

    python bench/stage_times.py .            # the run's working directory (has benchmarks/)
    python bench/stage_times.py . --timeline [--log 0]  # when each job ran (Snakemake's log)

Prints, per stage, the number of jobs, the summed and the longest job wall time (seconds). Jobs
of one stage run in parallel (``--cores``), so the summed time is CPU-side work, not elapsed
time; the run's elapsed time is Snakemake's own (``time snakemake ...``).

With ``--timeline``, the newest ``.snakemake/log/*.snakemake.log`` of the run (``--log 0``:
the first, e.g. the whole workflow before ``bench/speed.py``'s re-runs) (its clock lines
have one-second resolution) gives each job's start and end, seconds from the run's start, and
its threads; then how many seconds of the run had 0, 1, 2, ... threads' worth of jobs running:
where cores stood idle, and which jobs ran alone.
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from pathlib import Path

import numpy as np
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


_CLOCK = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_RULE = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
_JOBID = re.compile(r"^\s+jobid: (\d+)$")
_THREADS = re.compile(r"^\s+threads: (\d+)$")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
_FINISHED = re.compile(r"^Finished jobid: (\d+)")


def job_timeline(log_path: Path) -> pd.DataFrame:
    """One row per finished job of a Snakemake log: rule, wildcards, threads, start and end
    (seconds from the log's first clock line)."""
    clock = t0 = None
    jobs: dict[int, dict] = {}
    current: dict | None = None
    for line in log_path.read_text().splitlines():
        if m := _CLOCK.match(line):
            clock = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y").timestamp()
            t0 = clock if t0 is None else t0
        elif m := _RULE.match(line):
            current = {"rule": m.group(1), "wildcards": "", "threads": 1, "start": clock - t0}
        elif current is not None and (m := _WILDCARDS.match(line)):
            current["wildcards"] = m.group(1)
        elif current is not None and (m := _THREADS.match(line)):
            current["threads"] = int(m.group(1))
        elif current is not None and (m := _JOBID.match(line)):
            jobs[int(m.group(1))] = current
        elif (m := _FINISHED.match(line)) and int(m.group(1)) in jobs:
            jobs[int(m.group(1))]["end"] = clock - t0
    rows = [j for j in jobs.values() if "end" in j]
    if not rows:
        return pd.DataFrame(columns=["rule", "wildcards", "threads", "start", "end"])
    return pd.DataFrame(rows).sort_values(["start", "end"]).reset_index(drop=True)


def busy_seconds(timeline: pd.DataFrame) -> pd.Series:
    """Seconds of the run (to its last job's end) with each number of threads' worth of jobs
    running; a second counts a job from its start up to its end."""
    end = int(np.ceil(timeline["end"].max()))
    busy = np.zeros(end, np.int64)
    for j in timeline.itertuples():
        busy[int(j.start):max(int(j.end), int(j.start) + 1)] += j.threads
    return pd.Series(busy).value_counts().sort_index().rename("seconds")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", nargs="?", default=".", type=Path)
    ap.add_argument("--timeline", action="store_true",
                    help="each job's start, end and threads from the newest Snakemake log")
    ap.add_argument("--log", type=int, default=-1,
                    help="with --timeline: which of the run's logs, in time order (0 = first; "
                         "default: the newest that ran jobs)")
    a = ap.parse_args()
    if a.timeline:
        logs = sorted((a.run_dir / ".snakemake" / "log").glob("*.snakemake.log"))
        if not logs:
            raise SystemExit(f"no Snakemake log under {a.run_dir / '.snakemake/log'}")
        # by default the newest log that ran jobs (`snakemake --report` writes one without)
        chosen = [logs[a.log]] if a.log != -1 else logs[::-1]
        for path in chosen:
            tl = job_timeline(path)
            if not tl.empty:
                break
        else:
            raise SystemExit(f"no finished jobs in {', '.join(map(str, chosen))}")
        print(f"# {path}")
        tl["seconds"] = tl["end"] - tl["start"]
        print(tl.to_string(index=False))
        print("\nthreads busy -> seconds of the run")
        print(busy_seconds(tl).to_string())
        return
    table = stage_table(a.run_dir)
    try:
        print(table.to_markdown())
    except ImportError:  # to_markdown needs the optional 'tabulate'
        print(table.to_string())


if __name__ == "__main__":
    main()
