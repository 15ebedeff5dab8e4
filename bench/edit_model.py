"""Edit a finished run's trained model in place, to measure what one part of it is worth.

* ``--copying-only``: the model's ALT logit is ``copy_scale * logit(p_copy) + out_head(...)``,
  where ``p_copy`` is the copying HMM's posterior ALT probability. With the head's last layer
  zeroed and ``copy_scale`` 1, the model imputes exactly the copied probability (the HMM with
  the trained switch rate, mismatch penalties and switch prior, over the same states).
* ``--shift NAME=DELTA`` (repeatable): add ``DELTA`` to the scalar parameter ``NAME``, e.g.
  ``log_rate=-0.6931`` (half the switch rate) or ``mismatch_bias=2.3026`` (a ten times smaller
  mismatch probability).

The run's trained files are replaced, so work on a copy of the run:

    cp -a RUN RUN.copying && python bench/edit_model.py RUN.copying --copying-only
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
    ap.add_argument("--copying-only", action="store_true",
                    help="zero the output head's last layer, copy_scale 1")
    ap.add_argument("--shift", action="append", default=[], metavar="NAME=DELTA",
                    help="add DELTA to the scalar parameter NAME")
    a = ap.parse_args()
    path = a.run_dir / "results/train/model.pt"
    if not path.is_file():
        raise SystemExit(f"{path} not found: give the working directory of a finished run")
    if not a.copying_only and not a.shift:
        raise SystemExit("nothing to do: give --copying-only and/or --shift NAME=DELTA")
    state = load_checkpoint(path)
    weights = state["model"]
    if a.copying_only:
        last = sorted(k for k in weights
                      if k.startswith("out_head.") and k.endswith(".weight"))[-1]
        weights[last].zero_()
        weights[last.replace(".weight", ".bias")].zero_()
        weights["copy_scale"].fill_(1.0)
        print(f"{path}: {last} and its bias zeroed, copy_scale 1 (the copied probability alone)")
    for spec in a.shift:
        name, _, delta = spec.partition("=")
        if name not in weights or weights[name].numel() != 1:
            scalars = sorted(k for k, v in weights.items() if v.numel() == 1)
            raise SystemExit(f"--shift {spec}: not a scalar parameter; one of {scalars}")
        weights[name] += float(delta)
        print(f"{path}: {name} -> {float(weights[name]):.6g}")
    torch.save(state, path)


if __name__ == "__main__":
    main()
