"""Training ablations: run the vcfbert workflow on one scenario under several configurations and
compare validation r² per epoch and the targets' accuracy.

    python bench/ablation_training.py ooa_phased \
        --variant refresh='{"train": {"index_refresh": "every_epoch"}}' \
        --variant frozen='{"train": {"index_refresh": "frozen"}}'

Each variant runs in ``bench/out/<scenario>/ablation/<name>/`` with the scenario's ``vcfbert``
overrides plus the variant's; the data come from ``bench/run.py <scenario>`` (simulated there
first). Writes ``bench/out/<scenario>/ablation_training.tsv`` (one row per variant and epoch,
plus the targets' r² per MAF bin of the selected model); rows of variants run before by another
invocation are kept.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from run import merged, run_vcfbert  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario")
    ap.add_argument("--variant", action="append", required=True,
                    help="name=JSON overrides of the config")
    ap.add_argument("--cores", type=int, default=2)
    a = ap.parse_args()
    out = ROOT / "bench/out" / a.scenario
    spec = yaml.safe_load((ROOT / "bench/scenarios" / f"{a.scenario}.yaml").read_text())
    data = out / "data"
    if not (data / "truth.vcf.gz").exists():
        (out / "scenario.yaml").parent.mkdir(parents=True, exist_ok=True)
        (out / "scenario.yaml").write_text(yaml.safe_dump({"simulation": spec["simulation"]}))
        subprocess.run([sys.executable, "-m", "vcfbert.cli", "simulate", "-o", str(data),
                        "--config", str(out / "scenario.yaml")], check=True)
    rows = []
    for item in a.variant:
        name, js = item.split("=", 1)
        overrides = merged(spec.get("vcfbert", {}), json.loads(js))
        run_dir = out / "ablation" / name
        timing = run_vcfbert(data, run_dir, overrides, a.cores)
        metrics = pd.read_csv(run_dir / "results/train/metrics.csv")
        acc = pd.read_csv(run_dir / "results/evaluation/accuracy.tsv", sep="\t")
        test = acc[acc.group == "all"].set_index("maf_bin")["r2"].to_dict()
        for m in metrics.to_dict("records"):
            rows.append({"variant": name, **{k: v for k, v in m.items()
                                             if k.startswith(("epoch", "val_r2", "train_loss",
                                                              "selected"))},
                         **{f"test_r2_{k}": v for k, v in test.items()},
                         "train_job_s": timing["train_job_s"]})
        print(name, json.dumps({k: round(v, 4) for k, v in test.items()}), flush=True)
    df = pd.DataFrame(rows)
    table = out / "ablation_training.tsv"
    if table.exists():  # keep the rows of variants run by earlier invocations
        old = pd.read_csv(table, sep="\t")
        df = pd.concat([old[~old.variant.isin(df.variant)], df], ignore_index=True)
    df.to_csv(table, sep="\t", index=False, float_format="%.4f")
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
