"""Two versions of vcfbert's imputation, and Beagle 5.4, timed in turn on one trained run: a
before/after that a noisy machine cannot fake.

    git worktree add /tmp/before <commit>
    python bench/impute_ab.py bench/out/ooa_speed/speed.vcfbert \\
        --version before=/tmp/before --version after=. [--rounds 4] [--cores 2]

``bench/speed.py`` measures one version; on this machine type the same imputation job took
22.7 to 27.4 s within an hour, and the CPU time of identical runs moved by 15 %, as much as a
session's changes. Here each round runs, one after the other: every version's imputation of
the run's targets with the run's trained model (its imputation outputs deleted, then
``snakemake --until imputed_manifest`` from that version's checkout, its own ``src`` first on
``PYTHONPATH``: the ``vcfbert_impute`` row of ``speed.py``), then Beagle 5.4 on the run's
reference and targets (the ``beagle`` row). Each version's figure is the median of its rounds,
and so is its ratio to the Beagle run of the same round. The versions' VCFs are compared
(DS and DR2 of every record) and the table says whether they are the same.

Snakemake is told to re-run nothing for a changed rule or script (``--rerun-triggers mtime``):
the training outputs come from one version and both read them. A version whose code needs other
training outputs than the run's cannot be compared this way. The first round also fills each
checkout's numba cache where it is cold (a version's first run then includes compiling): use
``--warmup`` to run each version once before the timed rounds.

``--run NAME=RUN_DIR`` gives a version a trained run of its own (the same data): the same
checkout named twice with two trained runs times what a model setting costs at imputation
(e.g. one attention head against two, each trained by ``bench/speed.py`` or ``bench/run.py``);
their VCFs then differ, as their models do.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import markdown, run_beagle, run_output  # noqa: E402
from speed import impute_only  # noqa: E402


def impute(run_dir: Path, checkout: Path, cores: int, log: Path) -> float:
    """Wall seconds of ``checkout``'s imputation of ``run_dir`` (speed.py's
    :func:`impute_only`, from the checkout's Snakefile and ``src``)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(checkout / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    smk = [sys.executable, "-m", "snakemake", "-s", str(checkout / "Snakefile"),
           "-d", str(run_dir), "--configfile", str(run_dir / "config.yaml"),
           "--cores", str(cores), "--rerun-triggers", "mtime"]
    return float(impute_only(smk, run_dir, log, env)["wall_s"])


def dosage_digest(vcf: Path) -> str:
    """SHA-256 of every record's position, DS and DR2 (``bcftools query``)."""
    out = subprocess.run(["bcftools", "query", "-f", "%POS\t%INFO/DR2[\t%DS]\n", str(vcf)],
                         check=True, capture_output=True).stdout
    return hashlib.sha256(out).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path, help="a finished run of bench/speed.py (its "
                    "speed.vcfbert folder) or of the workflow, with its config.yaml")
    ap.add_argument("--version", action="append", required=True, metavar="NAME=CHECKOUT",
                    help="a name and a checkout (worktree) of vcfbert; give two or more")
    ap.add_argument("--run", action="append", default=[], metavar="NAME=RUN_DIR",
                    help="impute this trained run (of the same data) for version NAME "
                         "instead of run_dir")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--warmup", action="store_true",
                    help="run each version once, untimed, before the rounds")
    ap.add_argument("--no-beagle", action="store_true")
    a = ap.parse_args()
    run_dir = a.run_dir.resolve()
    versions = dict(v.split("=", 1) for v in a.version)
    if len(versions) < 2:
        raise SystemExit("give at least two --version NAME=CHECKOUT")
    checkouts = {name: Path(path).resolve() for name, path in versions.items()}
    for name, path in checkouts.items():
        if not (path / "Snakefile").exists():
            raise SystemExit(f"--version {name}: {path} is not a vcfbert checkout")
    runs = {name: run_dir for name in checkouts}
    for item in a.run:
        name, path = item.split("=", 1)
        if name not in checkouts:
            raise SystemExit(f"--run {item}: no --version named {name}")
        runs[name] = Path(path).resolve()
    for run in set(runs.values()):
        if not (run / "config.yaml").exists() or not (run / "results/train/model.pt").exists():
            raise SystemExit(f"{run}: not a finished run (no config.yaml or "
                             "results/train/model.pt); give speed.py's <outdir>/speed.vcfbert")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    ref, tgt = Path(cfg["reference_vcf"]), Path(cfg["target_vcf"])
    logs = run_dir / "impute_ab"
    logs.mkdir(exist_ok=True)
    if a.warmup:
        for name, path in checkouts.items():
            impute(runs[name], path, a.cores, logs / f"{name}.warmup.log")
    times: dict[str, list[float]] = {name: [] for name in checkouts}
    beagle: list[float] = []
    digests: dict[str, str] = {}
    for r in range(a.rounds):
        for name, path in checkouts.items():
            times[name].append(impute(runs[name], path, a.cores, logs / f"{name}.{r + 1}.log"))
            vcf = run_output(runs[name], "imputed")
            digest = dosage_digest(vcf)
            if digests.setdefault(name, digest) != digest:
                print(f"warning: {name}'s VCF changed between rounds", file=sys.stderr)
            print(f"round {r + 1} {name}: {times[name][-1]:.1f} s", file=sys.stderr)
        if not a.no_beagle:
            beagle.append(float(run_beagle(ref, tgt, logs / "beagle", a.cores)["wall_s"]))
            print(f"round {r + 1} beagle: {beagle[-1]:.1f} s", file=sys.stderr)
    rows = []
    for name in checkouts:
        row = {"version": name, "median wall s": f"{np.median(times[name]):.1f}",
               "runs (s)": ", ".join(f"{t:.1f}" for t in times[name])}
        if beagle:
            ratios = np.array(times[name]) / np.array(beagle)
            row["median x Beagle (same round)"] = f"{np.median(ratios):.2f}"
        row["DS and DR2"] = ("same as " + next(iter(checkouts))
                             if digests[name] == digests[next(iter(checkouts))] else "differ")
        rows.append(row)
    if beagle:
        rows.append({"version": "Beagle 5.4", "median wall s": f"{np.median(beagle):.1f}",
                     "runs (s)": ", ".join(f"{t:.1f}" for t in beagle),
                     "median x Beagle (same round)": "1.00", "DS and DR2": ""})
    table = markdown(pd.DataFrame(rows).set_index("version"))
    own = "".join(f"; {name} imputes {runs[name]}" for name in checkouts
                  if runs[name] != run_dir)
    text = (f"{run_dir}: {a.rounds} rounds, {a.cores} cores; each round every version's "
            f"imputation, then Beagle 5.4{own}\n\n{table}\n")
    (run_dir / "impute_ab.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
