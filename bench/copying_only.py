"""Turn a finished run's model into its copying layer alone, to measure what the output head adds.

The model's ALT logit is ``copy_scale * logit(p_copy) + out_head(...)``, where ``p_copy`` is
the copying HMM's posterior ALT probability. With the head's last layer zeroed and
``copy_scale`` 1, the model imputes exactly the copied probability (the HMM with the trained
switch rate, mismatch penalties and switch prior, over the same states). The run's trained
files are replaced in place, so work on a copy of the run:

    cp -a RUN RUN.copying && python bench/copying_only.py RUN.copying
    snakemake -s Snakefile -d RUN.copying --configfile RUN.copying/config.yaml --cores 2

Snakemake then re-runs the DR2 calibration, the imputation and the evaluation
(``results/evaluation/accuracy.tsv``); compare it with the run's own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vcfbert.checkpoint import load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path, help="a copy of a finished run's working directory")
    a = ap.parse_args()
    path = a.run_dir / "results/train/model.pt"
    state = load_checkpoint(path)
    weights = state["model"]
    last = sorted(k for k in weights if k.startswith("out_head.") and k.endswith(".weight"))[-1]
    weights[last].zero_()
    weights[last.replace(".weight", ".bias")].zero_()
    weights["copy_scale"].fill_(1.0)
    torch.save(state, path)
    print(f"{path}: {last} and its bias zeroed, copy_scale 1 (the copied probability alone)")


if __name__ == "__main__":
    main()
