"""Speed side by side, in one run on the same files and cores: Beagle 5.4, Minimac4, vcfbert.

For one scenario (``bench/scenarios/<name>.yaml``) this script simulates the data (once), then
times, one after the other on the same machine:

* ``beagle`` — Beagle 5.4 (``nthreads`` = cores), reference VCF as given;
* ``minimac4`` — Minimac4: ``--compress-reference`` + imputation (the two summed);
* ``vcfbert_workflow`` — the whole vcfbert workflow (``snakemake --cores N``: parsing,
  windows, the default training, imputation, VCF, evaluation, report plots);
* ``vcfbert_impute`` — vcfbert's imputation given the trained model: the imputation outputs
  of that run are deleted and Snakemake re-makes them (retrieval keys and exact index per
  window, imputation and each job's VCF piece, the VCF); Snakemake's own start-up is included.
* ``vcfbert_impute_gt_ds`` — the same with ``output.gp: false``: vcfbert's VCF then has
  ``GT:DS``, the FORMAT of Beagle's row (Beagle's default), where vcfbert's default adds GP
  (the same dosages, so the same r²).
* ``vcfbert_panel`` — a new batch with a trained panel (``snakemake trained_panel`` once after
  the workflow, its time printed apart), in a fresh directory as a user would run it:
  ``--config trained_panel=DIR target_vcf=...`` (target parsing and alignment, imputation, the
  VCF, the QC and training plots; no truth, so no evaluation job). The batch is the same
  target file as every other row, so the r² are comparable.
* ``vcfbert_one_command`` — the same batch with ``vcfbert impute --panel DIR --targets ... -o
  ... --threads N`` (one process, no Snakemake: the same steps and the same VCF, its QC
  summary and log beside it), as Beagle is run.
* ``vcfbert_one_command_gt_ds`` — the same command with ``--no-gp``: ``GT:DS``, the FORMAT of
  Beagle's row. The two one-command rows run in turn, ``--impute-runs`` times each, and each
  row is its median run.

Beagle runs ``--beagle-runs`` times (3 by default) spread over the run — first, after
Minimac4, after vcfbert, then at the end — and its row is the median run: on this machine type
one Beagle run's wall time varies by ±15 % from run to run, more than vcfbert's, so a single run
moved the ratios by as much. Every Beagle time is printed under the table. vcfbert's
imputation-only row is likewise the median of ``--impute-runs`` runs (3 by default, one after
the other; the same job took 22.7 to 27.4 s within an hour on this machine type), and so are
the two one-command rows (run in turn), each run printed under the table; the GT:DS
imputation-only row and the trained panel's Snakemake batch run once.

Each row gets its wall time, the ratio to Beagle's (median) wall time measured in this run, the peak
resident memory (RSS; for vcfbert the largest job's, from Snakemake's ``benchmarks/`` tables),
and the dosage r² of the targets by reference MAF (vcfbert's evaluator, untyped sites).

    python bench/speed.py ooa_speed [--cores 2] [--methods beagle,minimac4,vcfbert] [--beagle-runs 3]
                                    [--impute-runs 3]
    python bench/speed.py ooa_speed --device cuda --methods vcfbert     # on a GPU machine

Writes ``bench/out/<scenario>/speed.tsv`` and ``speed.md``. Absolute times on a shared machine
are noisy: the ratios, measured in one run, are the figures to quote.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # noqa: E402
    ROOT,
    markdown,
    merged,
    run_beagle,
    run_minimac4,
    run_output,
    timed,
    vcfbert_cli,
)

BINS = ["[0,0.001)", "[0.001,0.005)", "[0.005,0.01)", "[0.01,0.05)", "[0.05,0.5]", "overall"]
IMPUTATION_OUTPUTS = ["results/impute", "results/imputed", "results/evaluation"]
# what an imputation-only run must not re-make (output.gp changes the imputation jobs' params only)
UPSTREAM_RULES = ("train_epoch", "rule encode", "build_index", "calibrate_dr2")


def simulate(spec: dict, out: Path) -> Path:
    data = out / "data"
    if not (data / "truth.vcf.gz").exists():
        out.mkdir(parents=True, exist_ok=True)
        (out / "scenario.yaml").write_text(yaml.safe_dump({"simulation": spec["simulation"]}))
        subprocess.run(vcfbert_cli("simulate", "-o", str(data), "--config",
                                   str(out / "scenario.yaml")), check=True)
    return data


def largest_job(run_dir: Path, since: float = 0.0) -> tuple[float, str]:
    """(peak RSS in MiB, rule label) of the largest job whose benchmark table was written
    after ``since`` (Snakemake's ``benchmarks/`` tables)."""
    best = (0.0, "")
    for tsv in (run_dir / "benchmarks").rglob("*.tsv"):
        if tsv.stat().st_mtime < since:
            continue
        rss = float(pd.read_csv(tsv, sep="\t")["max_rss"].iloc[-1])
        if rss > best[0]:
            best = (rss, str(tsv.relative_to(run_dir / "benchmarks"))[: -len(".tsv")])
    return best


def run_vcfbert(data: Path, out: Path, overrides: dict, cores: int,
                impute_runs: int = 3) -> dict[str, dict]:
    """Time the whole workflow, then the imputation alone on the trained model
    (``impute_runs`` times: its row is the median run, the lower middle one for an even
    number), then the GT:DS imputation and a trained panel's new batch once each."""
    cfg = merged(yaml.safe_load((ROOT / "config/config.yaml").read_text()), overrides)
    cfg.update(reference_vcf=str(data / "reference.vcf.gz"),
               target_vcf=str(data / "targets.vcf.gz"), truth_vcf=str(data / "truth.vcf.gz"),
               panel=str(data / "panel.tsv"))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    smk = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(out),
           "--configfile", str(out / "config.yaml"), "--cores", str(cores)]
    rows = {}
    t0 = time.time()
    t = timed(smk, out / "workflow.time.log")
    rss, job = largest_job(out, t0)
    kept = out / "imputed.first.vcf.gz"  # the imputation-only run below rewrites the VCF
    shutil.copyfile(run_output(out, "imputed"), kept)
    rows["vcfbert_workflow"] = {**t, "peak_mib": round(rss), "largest_job": job, "vcf": kept}
    t = timed([*smk, "trained_panel"], out / "trained_panel.time.log")
    print(f"vcfbert: building the trained panel took {t['wall_s']} s", file=sys.stderr)
    runs = []
    # the first run's VCF is kept for scoring (the GT:DS run below rewrites the run's own)
    first_impute = out / "imputed.impute.vcf.gz"
    for i in range(impute_runs):
        log = out / ("impute.time.log" if i == 0 else f"impute.{i + 1}.time.log")
        runs.append(impute_only(smk, out, log))
        if i == 0:
            shutil.copyfile(run_output(out, "imputed"), first_impute)
    rows["vcfbert_impute"] = {**median_run(runs), "vcf": first_impute}
    # the same imputation writing GT:DS as Beagle does
    (out / "gt_ds.yaml").write_text(yaml.safe_dump({"output": {"gp": False}}))
    at = smk.index(str(out / "config.yaml")) + 1  # a second config file, merged over it
    t = impute_only([*smk[:at], str(out / "gt_ds.yaml"), *smk[at:]], out,
                    out / "impute_gt_ds.time.log")
    rows["vcfbert_impute_gt_ds"] = {**t, "vcf": run_output(out, "imputed")}
    rows["vcfbert_panel"] = run_panel_batch(out / "results/trained_panel", cfg,
                                            out.with_name(out.name + "_panel"), cores)
    rows.update(run_one_commands(out / "results/trained_panel", cfg,
                                 out.with_name(out.name + "_one_command"), cores, impute_runs))
    return rows


def impute_only(smk: list[str], run_dir: Path, log: Path, env: dict | None = None) -> dict:
    """vcfbert's imputation alone on a finished run ``run_dir``: its imputation outputs
    deleted, then ``smk`` (a Snakemake command line on it) up to the VCFs' manifest (every
    chromosome's VCF and its SHA-256: "--until write_vcf" schedules nothing once the pieces
    are deleted, write_vcf's own input depending on a checkpoint, Snakemake 9.27), its output
    in ``log``. Returns wall s, the largest job's peak MiB and its name; exits when the run
    re-made anything of the training (:data:`UPSTREAM_RULES`)."""
    for rel in IMPUTATION_OUTPUTS:
        shutil.rmtree(run_dir / rel, ignore_errors=True)
    t0 = time.time()
    t = timed([*smk, "--until", "imputed_manifest"], log, env=env)
    rss, job = largest_job(run_dir, t0)
    ran = log.read_text()
    for rule in UPSTREAM_RULES:
        if rule in ran:
            raise SystemExit(f"the imputation-only run re-ran {rule}: see {log}")
    return {**t, "peak_mib": round(rss), "largest_job": job}


def fresh_run_dir(out: Path, cfg: dict) -> None:
    """``out`` emptied (or made), with ``cfg`` as its config.yaml."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))


def run_panel_batch(panel: Path, cfg: dict, out: Path, cores: int) -> dict:
    """Impute the targets with a trained panel in a fresh directory, as a user would."""
    cfg = {**cfg, "reference_vcf": "", "truth_vcf": "", "panel": "", "trained_panel": str(panel)}
    fresh_run_dir(out, cfg)
    t0 = time.time()
    t = timed([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(out),
               "--configfile", str(out / "config.yaml"), "--cores", str(cores)],
              out / "panel.time.log")
    rss, job = largest_job(out, t0)
    ran = (out / "panel.time.log").read_text()
    for rule in ("train_epoch", "rule encode", "build_index", "parse_reference"):
        if rule in ran:
            raise SystemExit(f"the trained-panel run ran {rule}: see {out}/panel.time.log")
    return {**t, "peak_mib": round(rss), "largest_job": job,
            "vcf": run_output(out, "imputed")}


def run_one_commands(panel: Path, cfg: dict, out: Path, cores: int, runs: int) -> dict:
    """The trained panel's batch as one ``vcfbert impute`` process, in a fresh directory,
    with the run's config (its imputation settings): with GP (``vcfbert_one_command``) and
    with ``--no-gp`` (``vcfbert_one_command_gt_ds``), in turn, ``runs`` times each; each row
    is its median run (the lower middle one for an even number), with every run's time."""
    fresh_run_dir(out, cfg)
    variants = {"vcfbert_one_command": [], "vcfbert_one_command_gt_ds": ["--no-gp"]}
    times: dict[str, list[dict]] = {name: [] for name in variants}
    for i in range(runs):
        for name, extra in variants.items():
            tag = name.removeprefix("vcfbert_")
            vcf = out / f"{tag}.vcf.gz"
            log = out / (f"{tag}.time.log" if i == 0 else f"{tag}.{i + 1}.time.log")
            times[name].append(timed(vcfbert_cli(
                "impute", "--panel", str(panel), "--targets", cfg["target_vcf"], "-o", str(vcf),
                "--config", str(out / "config.yaml"), "--threads", str(cores), "--force",
                *extra), log))
    return {name: {**median_run(t), "vcf": out / f"{name.removeprefix('vcfbert_')}.vcf.gz"}
            for name, t in times.items()}


def median_run(runs: list[dict]) -> dict:
    """The median of timed runs (the lower middle one for an even number), with every run's
    wall time (``runs_s``, in order) and the largest peak RSS of them."""
    median = sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]
    return {**median, "runs_s": [r["wall_s"] for r in runs],
            "peak_mib": max(r["peak_mib"] for r in runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario", help="name of bench/scenarios/<name>.yaml")
    ap.add_argument("--methods", default="beagle,minimac4,vcfbert")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--outdir", default=None)
    ap.add_argument("--device", default=None, help="vcfbert's device (auto, cpu, cuda); "
                    "default: the scenario's or the config's")
    ap.add_argument("--beagle-runs", type=int, default=3,
                    help="Beagle runs spread over the benchmark; its row is the median")
    ap.add_argument("--impute-runs", type=int, default=3,
                    help="runs of vcfbert's imputation-only row, one after the other; its "
                         "row is the median")
    ap.add_argument("--vcfbert-config", default="{}", help="JSON merged into vcfbert's config "
                    "(e.g. '{\"windows\": {\"core_sites\": 96}}')")
    a = ap.parse_args()
    spec = yaml.safe_load((ROOT / "bench/scenarios" / f"{a.scenario}.yaml").read_text())
    out = Path(a.outdir or ROOT / "bench/out" / a.scenario).resolve()
    data = simulate(spec, out)
    ref, tgt = data / "reference.vcf.gz", data / "targets.vcf.gz"
    methods = a.methods.split(",")
    rows: dict[str, dict] = {}
    beagle_runs: list[dict] = []

    def beagle(times: int = 1) -> None:
        """Run Beagle (the same command and output each time: ``seed=1``) ``times`` more."""
        for _ in range(times if "beagle" in methods else 0):
            if len(beagle_runs) < a.beagle_runs:
                beagle_runs.append(run_beagle(ref, tgt, out / "speed.beagle", a.cores))

    beagle()
    if "minimac4" in methods:
        rows["minimac4"] = {**run_minimac4(ref, tgt, out / "speed.minimac4", a.cores),
                            "vcf": out / "speed.minimac4.vcf.gz"}
        beagle()
    if "vcfbert" in methods:
        overrides = merged(spec.get("vcfbert") or {}, json.loads(a.vcfbert_config))
        if a.device:
            overrides["device"] = a.device
        rows.update(run_vcfbert(data, out / "speed.vcfbert", overrides, a.cores,
                                max(1, a.impute_runs)))
    beagle(a.beagle_runs)
    if beagle_runs:
        walls = sorted(r["wall_s"] for r in beagle_runs)
        rows = {"beagle": {"wall_s": float(np.median(walls)),
                           "peak_mib": max(r["peak_mib"] for r in beagle_runs),
                           "vcf": out / "speed.beagle.vcf.gz"}, **rows}
    records = []
    for method, r in rows.items():
        acc = out / f"speed.{method}.accuracy.tsv"
        subprocess.run(vcfbert_cli("evaluate", "--imputed", str(r["vcf"]), "--truth",
                                   str(data / "truth.vcf.gz"), "--reference", str(ref),
                                   "--targets", str(tgt), "--method", method, "-o", str(acc)),
                       check=True, stdout=subprocess.DEVNULL)
        df = pd.read_csv(acc, sep="\t")
        r2 = df[df.group == "all"].set_index("maf_bin")["r2"]
        records.append({"method": method, "wall_s": r["wall_s"], "peak_mib": r["peak_mib"],
                        "largest_job": r.get("largest_job", ""),
                        **{b: float(r2.get(b, float("nan"))) for b in BINS}})
    table = pd.DataFrame(records).set_index("method")
    if "beagle" in table.index:
        table.insert(1, "x_beagle", (table["wall_s"] / table.loc["beagle", "wall_s"]).round(2))
    table.to_csv(out / "speed.tsv", sep="\t", float_format="%.4f")
    sim = spec["simulation"]
    n_ref = 2 * sum(sim["reference_samples"].values())
    n_tgt = sum(sim["target_samples"].values())
    head = (f"scenario `{a.scenario}`: {n_ref} reference haplotypes, {n_tgt} targets, "
            f"{sim['length'] / 1e6:g} Mb, {a.cores} cores; wall s, x Beagle 5.4 (same run), "
            "peak RSS MiB, dosage r² by reference MAF (untyped sites)")
    shown = table.copy()
    shown["wall_s"] = shown["wall_s"].map(lambda v: f"{v:.1f}")
    if "x_beagle" in shown:
        shown["x_beagle"] = shown["x_beagle"].map(lambda v: f"{v:.2f}")
    note = ""
    if beagle_runs:
        note = ("\nBeagle 5.4 runs, in order (s): "
                + ", ".join(f"{r['wall_s']:.1f}" for r in beagle_runs)
                + f"; its row is their median ({rows['beagle']['wall_s']:.1f} s).\n")
    for method, label in (("vcfbert_impute", "vcfbert imputation"),
                          ("vcfbert_one_command", "vcfbert impute (one command)"),
                          ("vcfbert_one_command_gt_ds", "vcfbert impute --no-gp")):
        if len(rows.get(method, {}).get("runs_s", [])) > 1:
            note += (f"{label} runs, in order (s): "
                     + ", ".join(f"{w:.1f}" for w in rows[method]["runs_s"])
                     + f"; its row is their median ({rows[method]['wall_s']:.1f} s).\n")
    (out / "speed.md").write_text(f"{head}\n\n{markdown(shown)}\n{note}")
    print((out / "speed.md").read_text())


if __name__ == "__main__":
    main()
