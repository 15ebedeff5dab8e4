"""Figures for the report: r² by MAF bin, DR2 calibration, training curves, QC counts."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .atomic import atomic_path  # noqa: E402
from .evaluate import BIN_LABELS  # noqa: E402


def _save(fig, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight",
                    metadata={"Software": None})
    plt.close(fig)


def r2_by_maf(acc: pd.DataFrame, path: str) -> None:
    """Aggregate dosage r² per reference MAF bin, one line per method/population group."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = np.arange(len(BIN_LABELS))
    for (method, group), sub in acc[acc["maf_bin"].isin(BIN_LABELS)].groupby(
            ["method", "group"], sort=False):
        sub = sub.set_index("maf_bin").reindex(BIN_LABELS)
        style = "-o" if group == "all" else "--."
        ax.plot(x, sub["r2"], style, label=f"{method} ({group})")
    ax.set_xticks(x, BIN_LABELS, rotation=20)
    ax.set_xlabel("reference-panel MAF bin")
    ax.set_ylabel("aggregate dosage r²")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Imputation accuracy by MAF (untyped sites)")
    _save(fig, path)


def dr2_calibration(pv: pd.DataFrame, path: str) -> None:
    """Mean true per-variant r² against binned estimated DR2 (untyped, polymorphic sites)."""
    sub = pv[(~pv["typed"].astype(bool)) & pv["true_r2"].notna() & pv["dr2"].notna()]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":")
    if len(sub):
        edges = np.linspace(0, 1, 11)
        idx = np.clip(np.digitize(sub["dr2"], edges) - 1, 0, 9)
        g = sub.groupby(idx).agg(dr2=("dr2", "mean"), true=("true_r2", "mean"),
                                 n=("true_r2", "size"))
        ax.plot(g["dr2"], g["true"], "-o")
        for _, row in g.iterrows():
            ax.annotate(str(int(row["n"])), (row["dr2"], row["true"]), fontsize=6,
                        xytext=(3, -8), textcoords="offset points")
    ax.set_xlabel("estimated DR2 (binned)")
    ax.set_ylabel("mean true r² (per variant)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("DR2 calibration")
    ax.grid(alpha=0.3)
    _save(fig, path)


def training_curves(metrics: pd.DataFrame, path: str) -> None:
    """Loss, F1 and validation r² per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    e = metrics["epoch"]
    axes[0].plot(e, metrics["train_loss"], "-o")
    axes[0].set_title("training loss")
    for col in ("train_f1", "val_f1", "val_rare_f1"):
        if col in metrics:
            axes[1].plot(e, metrics[col], "-o", label=col)
    axes[1].set_title("F1 (ALT carriers)")
    axes[1].legend(fontsize=7)
    for label in BIN_LABELS:
        col = f"val_r2_{label}"
        if col in metrics:
            axes[2].plot(e, metrics[col], "-o", label=label)
    axes[2].set_title("validation r² by MAF")
    axes[2].legend(fontsize=6)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if "selected" in metrics and metrics["selected"].any():
        best = metrics.loc[metrics["selected"], "epoch"].iloc[0]
        for ax in axes:
            ax.axvline(best, color="grey", ls=":", lw=1)
    _save(fig, path)


def qc_table(qc: pd.DataFrame, path: str) -> None:
    """Target-site QC outcomes (matched, swapped, flipped, dropped by reason) per contig."""
    qc = qc[~qc["outcome"].isin(["max_gap_between_typed_sites_bp", "target_records"])]
    pivot = qc.pivot_table(index="outcome", columns="contig", values="count", aggfunc="sum",
                           fill_value=0)
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(pivot) + 1.2))
    pivot.plot.barh(ax=ax, legend=len(pivot.columns) > 1)
    ax.set_xlabel("target sites")
    ax.set_title("Target QC: site outcomes")
    ax.grid(alpha=0.3, axis="x")
    _save(fig, path)
