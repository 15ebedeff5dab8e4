"""Side-by-side benchmark: vcfbert, Beagle 5.4, Minimac4 4.1 and the two non-learned floors.

For one scenario (``bench/scenarios/<name>.yaml``) this script simulates the data, runs every
method on the same files and machine, scores each with vcfbert's own evaluator, and writes

    bench/out/<name>/summary.tsv     one row per method x group x MAF bin (r², F1, ...)
    bench/out/<name>/timing.tsv      wall time and peak memory per method
    bench/out/<name>/summary.md      the r² table by MAF bin, ready for the README

Usage (from the repository root, venv active; Beagle/Minimac4 from Debian's packages):

    python bench/run.py ooa_phased [--methods vcfbert,beagle,minimac4,longest_match,window_nearest]

Unphased targets: Beagle phases and imputes them itself; the other methods get the targets
phased by vcfbert's `phase_targets` step (Beagle 5.4 with the same reference panel), as users
of Minimac4 would do.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from snakemake.utils import update_config

ROOT = Path(__file__).resolve().parents[1]
ALL = ["vcfbert", "beagle", "minimac4", "longest_match", "window_nearest"]


def timed(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` under GNU time; return wall seconds and peak RSS (MiB)."""
    t0 = time.time()
    with open(log, "w") as fh:
        res = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=fh, stderr=subprocess.STDOUT,
                             env=env)
    wall = time.time() - t0
    text = log.read_text(errors="replace")
    if res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}\nsee {log}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"wall_s": round(wall, 1), "peak_mib": round(int(m.group(1)) / 1024) if m else None}


def run_beagle(ref: Path, targets: Path, prefix: Path, cores: int,
               genetic_map: Path | None = None) -> dict:
    """Beagle 5.4 on ``targets`` (``prefix``.vcf.gz), with the PLINK ``genetic_map`` when the
    scenario has one; wall s and peak MiB."""
    extra = [f"map={genetic_map}"] if genetic_map else []
    return timed(["beagle", f"ref={ref}", f"gt={targets}", f"out={prefix}", f"nthreads={cores}",
                  "seed=1", *extra], prefix.with_name(prefix.name + ".time.log"))


def scenario_map(data: Path) -> Path | None:
    """The simulated region's genetic map (PLINK), for scenarios simulated with a real map."""
    path = data / "genetic_map.map"
    return path if path.exists() else None


def run_minimac4(ref: Path, targets: Path, prefix: Path, cores: int) -> dict:
    """Minimac4: compress the reference (``prefix``.msav), impute (``prefix``.vcf.gz); the two
    steps' wall times summed and the larger peak."""
    msav = prefix.with_name(prefix.name + ".msav")
    t1 = timed(["minimac4", "--compress-reference", str(ref), "-o", str(msav)],
               prefix.with_name(prefix.name + ".compress.log"))
    t2 = timed(["minimac4", str(msav), str(targets), "-o", f"{prefix}.vcf.gz", "-O", "vcf.gz",
                "-f", "GT,DS,HDS,GP", "-t", str(cores)],
               prefix.with_name(prefix.name + ".time.log"))
    return {"wall_s": round(t1["wall_s"] + t2["wall_s"], 1),
            "peak_mib": max(t1["peak_mib"], t2["peak_mib"])}


def run_output(run_dir: Path, folder: str) -> Path:
    """The one per-chromosome VCF a workflow run wrote under ``results/<folder>/`` (every
    scenario simulates one chromosome)."""
    found = sorted((run_dir / "results" / folder).glob("*.vcf.gz"))
    if len(found) != 1:
        raise SystemExit(f"expected one VCF in {run_dir}/results/{folder}, found {len(found)}")
    return found[0]


def vcfbert_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "vcfbert.cli", *args]


def merged(base: dict, overrides: dict) -> dict:
    """A copy of ``base`` with ``overrides`` merged in recursively (Snakemake's own
    ``update_config``, the merge it applies to ``--config``)."""
    out = copy.deepcopy(base)
    update_config(out, overrides)
    return out


def run_vcfbert(data: Path, out: Path, overrides: dict, cores: int) -> dict:
    cfg = merged(yaml.safe_load((ROOT / "config/config.yaml").read_text()), overrides)
    cfg.update(reference_vcf=str(data / "reference.vcf.gz"),
               target_vcf=str(data / "targets.vcf.gz"), truth_vcf=str(data / "truth.vcf.gz"),
               panel=str(data / "panel.tsv"))
    if scenario_map(data):
        cfg["genetic_map"] = str(scenario_map(data))
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    t = timed([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(out),
               "--configfile", str(out / "config.yaml"), "--cores", str(cores)],
              out / "snakemake.log")
    bench = out / "benchmarks"
    stage = {}
    for tsv in bench.rglob("*.tsv"):
        rel = tsv.relative_to(bench).as_posix()
        df = pd.read_csv(tsv, sep="\t")
        key = ("impute" if rel.startswith(("impute/", "epochs/final/"))
               else "train" if rel.startswith(("train/", "epochs/")) else "other")
        stage.setdefault(key, [0.0, 0.0])
        stage[key][0] += float(df["s"].iloc[-1])
        stage[key][1] = max(stage[key][1], float(df["max_rss"].iloc[-1]))
    t["train_job_s"] = round(stage.get("train", [0])[0], 1)
    t["impute_job_s"] = round(stage.get("impute", [0])[0], 1)
    t["peak_mib"] = round(max(v[1] for v in stage.values()))
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario", help="name of bench/scenarios/<name>.yaml")
    ap.add_argument("--methods", default=",".join(ALL))
    ap.add_argument("--outdir", default=None)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-map", action="store_true", help="a scenario simulated with a genetic "
                    "map, run without it (Beagle and vcfbert): writes bench/out/<scenario>_nomap/"
                    " and reuses the scenario's data")
    ap.add_argument("--vcfbert-config", default="{}",
                    help="JSON merged into the scenario's vcfbert config (a variant; use with "
                         "--outdir and --data)")
    ap.add_argument("--data", default=None, help="reuse this data folder (e.g. "
                    "bench/out/<scenario>/data) instead of simulating the scenario again")
    ap.add_argument("--seed", type=int, default=None,
                    help="a replicate: simulate the scenario with this seed instead of its own "
                         "(default output bench/out/<scenario>_seed<N>/)")
    a = ap.parse_args()
    spec = yaml.safe_load((ROOT / "bench/scenarios" / f"{a.scenario}.yaml").read_text())
    name = a.scenario
    if a.seed is not None:
        if a.data:
            raise SystemExit("--seed simulates a replicate; it cannot reuse --data")
        spec["simulation"]["seed"] = a.seed
        name = f"{a.scenario}_seed{a.seed}"
    out = Path(a.outdir).resolve() if a.outdir else ROOT / "bench/out" / name
    data = out / "data"
    if a.no_map:
        if not (data / "truth.vcf.gz").exists():
            again = f" --seed {a.seed}" if a.seed is not None else ""
            raise SystemExit(f"run `python bench/run.py {a.scenario}{again}` first (it "
                             "simulates the data)")
        out = out.with_name(out.name + "_nomap")
        nomap = out / "data"
        nomap.mkdir(parents=True, exist_ok=True)
        for f in data.iterdir():  # the same files, without the map
            if f.name != "genetic_map.map" and not (nomap / f.name).exists():
                (nomap / f.name).symlink_to(f.resolve())
        data = nomap
    if a.data:
        if not (Path(a.data) / "truth.vcf.gz").is_file():
            raise SystemExit(f"--data {a.data}: no truth.vcf.gz there; give a scenario's data "
                             "folder (bench/out/<scenario>/data)")
        data.mkdir(parents=True, exist_ok=True)
        for f in Path(a.data).iterdir():
            if not (data / f.name).exists() and not (a.no_map and f.name == "genetic_map.map"):
                (data / f.name).symlink_to(f.resolve())
    methods = a.methods.split(",")
    out.mkdir(parents=True, exist_ok=True)
    if not (data / "truth.vcf.gz").exists():
        if "real_data" in spec:
            raise SystemExit(f"{a.scenario} is real data: run `python {spec['real_data']}` "
                             f"first (it writes {data})")
        (out / "scenario.yaml").write_text(yaml.safe_dump({"simulation": spec["simulation"]}))
        subprocess.run(vcfbert_cli("simulate", "-o", str(data), "--config",
                                   str(out / "scenario.yaml")), check=True)
    ref, tgt = data / "reference.vcf.gz", data / "targets.vcf.gz"
    phased_input = tgt
    timing: dict[str, dict] = {}
    outputs: dict[str, Path] = {}
    if "vcfbert" in methods:
        overrides = merged(spec.get("vcfbert") or {}, json.loads(a.vcfbert_config))
        timing["vcfbert"] = run_vcfbert(data, out / "vcfbert", overrides, a.cores)
        outputs["vcfbert"] = run_output(out / "vcfbert", "imputed")
        phased_input = run_output(out / "vcfbert", "phase")
    if "beagle" in methods:
        timing["beagle"] = run_beagle(ref, tgt, out / "beagle", a.cores, scenario_map(data))
        outputs["beagle"] = out / "beagle.vcf.gz"
    if "minimac4" in methods:
        timing["minimac4"] = run_minimac4(ref, phased_input, out / "minimac4", a.cores)
        outputs["minimac4"] = out / "minimac4.vcf.gz"
    for floor in ("longest_match", "window_nearest"):
        if floor in methods:
            extra = ["-k", "8"] if floor == "window_nearest" else []
            timing[floor] = timed(vcfbert_cli("floor", "--method", floor, "--reference", str(ref),
                                              "--targets", str(phased_input), "-o",
                                              str(out / f"{floor}.vcf.gz"), *extra),
                                  out / f"{floor}.time.log")
            outputs[floor] = out / f"{floor}.vcf.gz"
    frames = []
    for method, vcf in outputs.items():
        acc_path = out / f"{method}.accuracy.tsv"
        subprocess.run(vcfbert_cli("evaluate", "--imputed", str(vcf), "--truth",
                                   str(data / "truth.vcf.gz"), "--reference", str(ref),
                                   "--targets", str(tgt), "--panel", str(data / "panel.tsv"),
                                   "--method", method, "-o", str(acc_path)),
                       check=True, stdout=subprocess.DEVNULL)
        frames.append(pd.read_csv(acc_path, sep="\t"))
    summary = pd.concat(frames, ignore_index=True)
    summary.to_csv(out / "summary.tsv", sep="\t", index=False, float_format="%.4f")
    tdf = pd.DataFrame([{"method": m, **t} for m, t in timing.items()])
    tdf.to_csv(out / "timing.tsv", sep="\t", index=False)
    table = summary[summary.group == "all"].pivot(index="method", columns="maf_bin",
                                                  values="r2")
    cols = ["[0,0.001)", "[0.001,0.005)", "[0.005,0.01)", "[0.01,0.05)", "[0.05,0.5]", "overall"]
    table = table[cols].reindex([m for m in ALL if m in table.index])
    table = table.join(tdf.set_index("method")[["wall_s", "peak_mib"]])
    md = markdown(table)
    (out / "summary.md").write_text(f"scenario `{name}` — aggregate dosage r² by "
                                    f"reference MAF (untyped sites)\n\n{md}\n")
    print((out / "summary.md").read_text())
    print(json.dumps(timing, indent=1))
    if shutil.which("nvidia-smi"):
        subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv"])


def markdown(df: pd.DataFrame) -> str:
    """A pipe table of ``df`` (floats with 4 decimals)."""
    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    head = [df.index.name or "", *map(str, df.columns)]
    rows = [[str(i), *(cell(v) for v in r)] for i, r in zip(df.index, df.to_numpy(), strict=True)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
