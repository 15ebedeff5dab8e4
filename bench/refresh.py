"""Cost of one epoch's index refresh: keys + FAISS shard per window, and bytes per
haplotype-window.

Runs in one process over every window of a finished workflow run (so the numbers are the work
itself, without job start-up), and also reads the per-job wall times Snakemake recorded for the
same run (start-up included).

    python bench/refresh.py results            # a run's results/ folder (default: ./results)

Prints a summary and writes it to ``--out`` (default ``bench/out/refresh.json``, untracked).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vcfbert import keyencoder
from vcfbert.encode import encode_window
from vcfbert.index import build_index
from vcfbert.windowdata import Chromosome


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="?", default="results")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "refresh.json"))
    a = ap.parse_args()
    res = Path(a.results)
    chroms = pd.read_csv(res / "ingest/chromosomes.tsv", sep="\t", dtype=str)
    params = keyencoder.load(res / "train/model.keys.npz")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in chroms.itertuples():
            chrom = Chromosome.load(c.contig, str(res / f"ingest/{c.wildcard}/reference.h5"),
                                    str(res / f"ingest/{c.wildcard}/targets.h5"),
                                    str(res / f"windows/{c.wildcard}.tsv"))
            mask = str(res / f"masks/{c.wildcard}/final.h5")
            for wid in chrom.windows["window_id"]:
                t0 = time.perf_counter()
                keys = encode_window(params, chrom, wid, mask, Path(tmp) / f"{wid}.npy")
                t1 = time.perf_counter()
                side = build_index(keys, Path(tmp) / f"{wid}.faiss", meta={})
                t2 = time.perf_counter()
                rows.append({"contig": c.contig, "window": wid, "haplotypes": keys.shape[0],
                             "encode_s": t1 - t0, "index_s": t2 - t1,
                             "bytes_per_haplotype_window": side["bytes_per_haplotype_window"]})
    df = pd.DataFrame(rows)
    jobs = []
    for kind in ("encode", "index"):
        for tsv in (res.parent / "benchmarks/epochs").glob(f"*/{kind}/*.tsv"):
            jobs.append({"kind": kind, "s": float(pd.read_csv(tsv, sep="\t")["s"].iloc[-1])})
    jdf = pd.DataFrame(jobs)
    summary = {
        "windows": len(df),
        "haplotypes_per_window": int(df["haplotypes"].iloc[0]),
        "encode_s_per_window_mean": round(float(df["encode_s"].mean()), 4),
        "index_s_per_window_mean": round(float(df["index_s"].mean()), 4),
        "all_windows_refresh_s_one_process": round(float((df.encode_s + df.index_s).sum()), 3),
        "bytes_per_haplotype_window": float(np.max(df["bytes_per_haplotype_window"])),
        "job_wall_s_mean_encode": round(float(jdf[jdf.kind == "encode"].s.mean()), 2)
        if len(jdf) else None,
        "job_wall_s_mean_index": round(float(jdf[jdf.kind == "index"].s.mean()), 2)
        if len(jdf) else None,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
