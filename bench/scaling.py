"""Time and memory of vcfbert's imputation jobs as the number of target samples grows.

Simulates the scenario (``bench/scenarios/<name>.yaml``; its target pool is the largest
count), trains vcfbert once with the workflow on ``--train-targets`` of the targets (the
default config), then imputes target sets of growing size with that trained model by calling
the workflow's own job functions (``vcfbert.steps``: parse_targets, impute_chunk, which
writes its VCF piece, and write_vcf), each job as its own process under ``/usr/bin/time -v``,
each chunk job on ``min(impute.threads, --cores)`` threads and as many jobs at a time as
``--cores`` holds — what ``snakemake --cores N`` runs after training. Every target set uses the same array,
so the windows and the model of the training run apply unchanged.

    python bench/scaling.py ooa_scaling --sizes 100,1000,3000 [--beagle]

Writes ``bench/out/<scenario>/scaling.tsv`` (one row per job) and ``scaling.md``: wall time,
time per target sample and the largest job's peak RSS, per target count. With ``--beagle``,
Beagle 5.4 imputes each target set too (``nthreads`` = ``--cores``, right after vcfbert's jobs
for it, on the same files: ``bench/run.py``'s command) and the table gets its wall time, peak
RSS and vcfbert's ratio to it (vcfbert's figure: its jobs' walls, as above).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, markdown, merged, run_beagle, timed  # noqa: E402
from speed import simulate  # noqa: E402


def subset_targets(src: Path, dst: Path, n: int) -> None:
    """``n`` samples spread evenly over a target VCF (all populations), bgzipped and indexed."""
    import numpy as np
    import pysam

    with pysam.VariantFile(str(src)) as vf:
        every = list(vf.header.samples)
        samples = [every[i] for i in np.linspace(0, len(every) - 1, n).round().astype(int)]
        vf.subset_samples(samples)
        with pysam.VariantFile(str(dst), "wz", header=vf.header) as out:
            for rec in vf:
                out.write(rec)
    pysam.tabix_index(str(dst), preset="vcf", force=True)


def job(name: str, call: str, kwargs: dict, log: Path, threads: int = 1) -> dict:
    """Run ``vcfbert.steps.<call>(**kwargs)`` in its own process, torch and FAISS capped to
    ``threads`` (as Snakemake's ``threads`` does); wall s and peak RSS MiB."""
    code = (f"import json, sys\nfrom vcfbert.runtime import cap_threads\ncap_threads({threads})\n"
            f"from vcfbert import steps\nsteps.{call}(**json.loads(sys.argv[1]))\n")
    t0 = time.time()
    with open(log, "w") as fh:
        res = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", code,
                              json.dumps(kwargs)], stdout=fh, stderr=subprocess.STDOUT)
    wall = time.time() - t0
    text = log.read_text(errors="replace")
    if res.returncode:
        raise SystemExit(f"{name} failed: see {log}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return {"job": name, "wall_s": round(wall, 2), "peak_mib": round(rss / 1024)}


def train(data: Path, out: Path, spec: dict, n_train: int, cores: int) -> Path:
    """Run the workflow (default config) on the first ``n_train`` targets; its directory."""
    run_dir = out / "scaling.train"
    if (run_dir / "results/train/model.pt").exists():
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    targets = out / f"targets.{n_train}.vcf.gz"
    subset_targets(data / "targets.vcf.gz", targets, n_train)
    cfg = merged(yaml.safe_load((ROOT / "config/config.yaml").read_text()),
                 spec.get("vcfbert") or {})
    cfg.update(reference_vcf=str(data / "reference.vcf.gz"), target_vcf=str(targets))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    timed([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d",
           str(run_dir), "--configfile", str(run_dir / "config.yaml"), "--cores", str(cores),
           "results/train/model.pt", "results/masks/20/final.h5"], run_dir / "train.time.log")
    return run_dir


def impute_set(run_dir: Path, data: Path, out: Path, n: int, cores: int,
               windows_per_job: int, threads: int, match_states: int = 0,
               copying_states: int = 0) -> list[dict]:
    """Impute ``n`` targets with the trained model: the jobs a workflow run would start, each
    chunk on ``threads`` threads, ``cores // threads`` of them at a time, with the run's
    copying states (``impute.match_states``, ``impute.copying_states``)."""
    from vcfbert.windows import impute_chunks, read_windows

    res = run_dir / "results"
    work = out / f"scaling.{n}"
    work.mkdir(parents=True, exist_ok=True)
    targets_vcf = out / f"targets.{n}.vcf.gz"
    if not targets_vcf.exists():
        subset_targets(data / "targets.vcf.gz", targets_vcf, n)
    common = {"reference_h5": str(res / "ingest/20/reference.h5")}
    tgt_h5 = str(work / "targets.h5")
    rows = [job("parse_targets", "parse_targets", {
        "target_vcf": str(targets_vcf), **common, "contig": "20", "multiallelic": "split",
        "min_call_rate": 0.0, "out": tgt_h5, "qc_sites": str(work / "qc_sites.tsv"),
        "qc_samples": str(work / "qc_samples.tsv")}, work / "parse_targets.log")]
    windows_tsv = str(res / "windows/20.tsv")
    chunks = impute_chunks(read_windows(windows_tsv)["window_id"].tolist(), windows_per_job)

    def one(chunk: str) -> dict:
        return job(f"impute_chunk {chunk}", "impute_chunk", {
            "checkpoint": str(res / "train/model.pt"),
            "key_encoder": str(res / "train/model.keys.npz"), "contig": "20", "chunk": chunk,
            "windows_per_job": windows_per_job, **common, "targets_h5": tgt_h5,
            "windows_tsv": windows_tsv, "mask_h5": str(res / "masks/20/final.h5"),
            "out": str(work / f"{chunk}.vcf.gz"), "batch_size": 32, "device": "cpu",
            "threads": threads, "match_states": match_states,
            "copying_states": copying_states}, work / f"{chunk}.log", threads)

    t0 = time.time()
    with ThreadPoolExecutor(max(1, cores // threads)) as pool:
        rows += list(pool.map(one, chunks))
    rows.append({"job": "impute_chunk (all, wall)", "wall_s": round(time.time() - t0, 2),
                 "peak_mib": None})
    rows.append(job("write_vcf", "write_vcf", {
        "pieces": [str(work / f"{c}.vcf.gz") for c in chunks], "targets_h5": [tgt_h5],
        "reference_h5": [common["reference_h5"]], "out": str(work / "imputed.vcf.gz"),
        "command": "bench/scaling.py", "threads": 1}, work / "write_vcf.log"))
    for r in rows:
        r["targets"] = n
    for p in work.glob("c[0-9]*.vcf.gz"):  # the pieces: keep the logs and the VCF only
        p.unlink()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario", help="name of bench/scenarios/<name>.yaml")
    ap.add_argument("--sizes", default="100,1000,3000")
    ap.add_argument("--train-targets", type=int, default=100)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--outdir", default=None)
    ap.add_argument("--beagle", action="store_true",
                    help="also time Beagle 5.4 on each target set (after vcfbert's jobs)")
    a = ap.parse_args()
    spec = yaml.safe_load((ROOT / "bench/scenarios" / f"{a.scenario}.yaml").read_text())
    out = Path(a.outdir or ROOT / "bench/out" / a.scenario).resolve()
    data = simulate(spec, out)
    run_dir = train(data, out, spec, a.train_targets, a.cores)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    rows = []
    for n in map(int, a.sizes.split(",")):
        rows += impute_set(run_dir, data, out, n, a.cores, cfg["impute"]["windows_per_job"],
                           max(1, min(int(cfg["impute"]["threads"]), a.cores)),
                           int(cfg["impute"]["match_states"]),
                           int(cfg["impute"]["copying_states"]))
        if a.beagle:
            beagle = run_beagle(data / "reference.vcf.gz", out / f"targets.{n}.vcf.gz",
                                out / f"scaling.{n}" / "beagle", a.cores)
            rows.append({"job": "beagle", **beagle, "targets": n})
        pd.DataFrame(rows).to_csv(out / "scaling.tsv", sep="\t", index=False)
    df = pd.DataFrame(rows)
    per = []
    for n, g in df.groupby("targets", sort=True):
        beagle = g[g.job == "beagle"]
        g = g[g.job != "beagle"]
        serial = g[~g.job.str.startswith("impute_chunk")]
        wall = float(serial.wall_s.sum() + g.loc[g.job == "impute_chunk (all, wall)",
                                                  "wall_s"].sum())
        per.append({"targets": n, "wall_s": round(wall, 1),
                    "ms_per_target": round(1000 * wall / n, 1),
                    "impute_chunk_wall_s": float(g.loc[g.job == "impute_chunk (all, wall)",
                                                       "wall_s"].iloc[0]),
                    "write_vcf_s": float(g.loc[g.job == "write_vcf", "wall_s"].iloc[0]),
                    "largest_job_mib": int(g.peak_mib.max()),
                    "largest_job": str(g.loc[g.peak_mib.idxmax(), "job"])})
        if len(beagle):
            b = beagle.iloc[0]
            per[-1].update(beagle_s=float(b.wall_s), beagle_mib=int(b.peak_mib),
                           x_beagle=round(wall / float(b.wall_s), 2))
    table = pd.DataFrame(per).set_index("targets")
    threads = max(1, min(int(cfg["impute"]["threads"]), a.cores))
    head = (f"scenario `{a.scenario}`: imputation jobs (parse targets, impute chunks of "
            f"{cfg['impute']['windows_per_job']} windows on {threads} thread(s), "
            f"{max(1, a.cores // threads)} at a time, each writing its VCF piece, then the VCF) "
            "with one trained model; wall s, ms per target sample, largest job's peak RSS (MiB)"
            + (f"; Beagle 5.4 on the same files (nthreads={a.cores}), its wall s and peak RSS "
               "(MiB), and vcfbert's wall over Beagle's" if a.beagle else ""))
    (out / "scaling.md").write_text(f"{head}\n\n{markdown(table)}\n")
    print((out / "scaling.md").read_text())


if __name__ == "__main__":
    main()
