"""DR2 calibration of every method of a benchmark scenario, side by side.

Reads the per-variant tables that ``bench/run.py`` wrote (``<method>.accuracy.pv.tsv.gz``: the
method's INFO/DR2 or R2 and the true per-variant r² over the targets), bins the untyped
variants by estimated DR2 and reports the mean true r² per bin, as a table and a figure.

    python bench/calibration.py ooa_phased
    python bench/calibration.py --per-variant NAME=results/evaluation/per_variant.tsv.gz ...

The second form prints the error of any per-variant tables (a workflow run's own,
``results/evaluation/per_variant.tsv.gz``), e.g. runs made with different DR2 settings.

Writes ``bench/out/<scenario>/calibration.tsv`` and ``calibration.png``. Note: the true r² of a
variant exists only where the targets carry both alleles, which selects rare variants whose
carriers were found; at low DR2 every method's curve therefore lies above the diagonal.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def dr2_bins(pv: pd.DataFrame) -> pd.DataFrame | None:
    """Untyped variants with a DR2 and a true r², binned by DR2 (10 bins of 0.1): mean DR2,
    mean true r² and count per bin (None when there are none)."""
    sub = pv[(~pv["typed"].astype(bool)) & pv["true_r2"].notna() & pv["dr2"].notna()]
    if sub.empty:
        return None
    b = np.clip((sub["dr2"] * 10).astype(int), 0, 9)
    return sub.groupby(b).agg(dr2=("dr2", "mean"), true_r2=("true_r2", "mean"),
                              n=("dr2", "size")).reset_index(names="bin")


def dr2_error(g: pd.DataFrame) -> float:
    """Mean |DR2 − true r²| over the bins of :func:`dr2_bins`, weighted by variants."""
    return float(np.average(np.abs(g["dr2"] - g["true_r2"]), weights=g["n"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario", nargs="?")
    ap.add_argument("--per-variant", nargs="+", metavar="NAME=FILE",
                    help="score these per-variant tables instead of a scenario's")
    a = ap.parse_args()
    if a.per_variant:
        for item in a.per_variant:
            name, _, path = item.rpartition("=")
            g = dr2_bins(pd.read_csv(path, sep="\t"))
            if g is None:
                print(f"{name or path}: no untyped variant with a DR2 and a true r²")
                continue
            n = int(g["n"].sum())
            print(f"{name or path:15s} mean |DR2 - true r²| {dr2_error(g):.4f} over {n} variants")
        return
    if not a.scenario:
        ap.error("give a scenario, or --per-variant")
    out = ROOT / "bench/out" / a.scenario
    rows = []
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ":", color="grey")
    for path in sorted(out.glob("*.accuracy.pv.tsv.gz")):
        # run.py writes <method>.accuracy.pv.tsv.gz, speed.py speed.<method>.accuracy.pv.tsv.gz
        method = path.name[: -len(".accuracy.pv.tsv.gz")].removeprefix("speed.")
        g = dr2_bins(pd.read_csv(path, sep="\t"))
        if g is None:
            continue
        g.insert(0, "method", method)
        rows.append(g)
        ax.plot(g["dr2"], g["true_r2"], "-o", ms=3, label=method)
        print(f"{method:15s} mean |DR2 - true r²| (variant-weighted over bins): "
              f"{dr2_error(g):.3f}")
    ax.set_xlabel("estimated DR2 (binned)")
    ax.set_ylabel("mean true r² per variant")
    ax.set_title(f"DR2 calibration — {a.scenario}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.savefig(out / "calibration.png", dpi=110, bbox_inches="tight")
    df = pd.concat(rows, ignore_index=True)
    df.to_csv(out / "calibration.tsv", sep="\t", index=False, float_format="%.3f")
    print(df.pivot(index="bin", columns="method", values="true_r2").round(3).to_string())


if __name__ == "__main__":
    main()
