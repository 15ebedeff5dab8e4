"""cProfile of training batches of a finished workflow run, and the copying HMM's cost.

    python bench/profile_train.py bench/out/ooa_speed/speed.vcfbert --batches 20 [--top 25]
    python bench/profile_train.py bench/out/ooa_speed/speed.vcfbert --batches 30 --by-shape
    python bench/profile_train.py --hmm [--b 16 --k 384 --m 382]

The first form runs the first ``--batches`` batches of epoch 1 of the run (its epoch-0 model,
epoch-1 masks and indexes, the run's ``train`` config, CPU, torch's default threads) under
cProfile, writing the pause state into a temporary folder (the run is not changed), and
prints the wall time and the top entries by own time; with ``--by-shape``, torch's own
profiler instead, its operators grouped by input shape (which ``[b, k, m]`` tensor costs what).
The last form times one forward and one
backward pass of :func:`vcfbert.model.hmm.forward_backward` (hand-written reverse pass)
against :func:`vcfbert.model.hmm.forward_backward_autograd` (autograd through every step) on
random float32 inputs of the given size, and their largest gradient difference.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import glob
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def profile_batches(run_dir: Path, batches: int, top: int, chrom: str,
                    by_shape: bool = False) -> None:
    import yaml

    from vcfbert.steps import _chromosome
    from vcfbert.train import TrainConfig, train_epoch

    r = run_dir / "results"
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]
    chroms = [_chromosome(chrom, str(r / f"ingest/{chrom}/reference.h5"),
                          str(r / f"ingest/{chrom}/targets.h5"), str(r / f"windows/{chrom}.tsv"))]
    index_paths = {}
    for path in glob.glob(str(r / f"epochs/1/index/{chrom}/*.faiss")):
        side = json.loads(Path(path).with_suffix(".json").read_text())
        index_paths[(str(side["contig"]), str(side["window_id"]))] = path
    with tempfile.TemporaryDirectory() as tmp:
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        run = (functools.partial(_by_shape, top) if by_shape else prof.runcall)
        run(train_epoch, epoch=1,
            previous_checkpoint=str(r / "train/epoch_0/model.pt"), chroms=chroms,
            masks=[str(r / f"masks/{chrom}/1.h5")],
            final_masks=[str(r / f"masks/{chrom}/final.h5")], index_paths=index_paths,
            split_tsv=str(r / "train/split.tsv"), out_checkpoint=f"{tmp}/model.pt",
            out_metrics=f"{tmp}/metrics.json", partial_dir=f"{tmp}/partial",
            cfg=TrainConfig.from_dict(cfg), device="cpu", progress=False,
            stop_after_batches=batches)
        wall = time.perf_counter() - t0
    if not by_shape:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
        print(out.getvalue())
    print(f"{batches} training batches: {wall:.2f} s, {wall / batches:.3f} s per batch")


def _by_shape(top: int, fn, **kwargs) -> None:
    """``fn(**kwargs)`` under ``torch.profiler``; prints the ``top`` operators by own CPU
    time, grouped by their inputs' shapes (the profiler's overhead slows the run)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn(**kwargs)
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=30,
        max_shapes_column_width=70))


def time_hmm(b: int, k: int, m: int) -> None:
    import torch

    from vcfbert.model.hmm import forward_backward, forward_backward_autograd

    g = torch.Generator().manual_seed(0)
    log_emit = (torch.randn(b, k, m, generator=g) * 3).requires_grad_()
    rho = (torch.rand(b, m, generator=g) * 0.3).requires_grad_()
    prior = torch.softmax(torch.randn(b, k, generator=g), 1).detach().requires_grad_()
    valid = torch.rand(b, k, generator=g) > 0.05
    weight = torch.randn(b, k, m, generator=g)
    grads = {}
    for name, fn in (("hand-written backward", forward_backward),
                     ("autograd through every step", forward_backward_autograd)):
        best_f = best_b = float("inf")
        for _ in range(3):
            for t in (log_emit, rho, prior):
                t.grad = None
            t0 = time.perf_counter()
            gamma = fn(log_emit, rho, prior, valid)
            t1 = time.perf_counter()
            (gamma * weight).sum().backward()
            t2 = time.perf_counter()
            best_f, best_b = min(best_f, t1 - t0), min(best_b, t2 - t1)
        grads[name] = [log_emit.grad.clone(), rho.grad.clone(), prior.grad.clone()]
        print(f"{name}: forward {best_f:.3f} s, backward {best_b:.3f} s "
              f"(b {b}, k {k}, m {m}, {torch.get_num_threads()} threads)")
    a, c = grads.values()
    for label, x, y in zip(("log_emit", "rho", "prior"), a, c, strict=True):
        print(f"  largest gradient difference, {label}: {float((x - y).abs().max()):.3g} "
              f"(largest gradient {float(y.abs().max()):.3g})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path, nargs="?")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--chrom", default="20")
    ap.add_argument("--by-shape", action="store_true",
                    help="torch.profiler's operators grouped by input shape, not cProfile")
    ap.add_argument("--hmm", action="store_true", help="time the copying HMM alone")
    ap.add_argument("--b", type=int, default=16)
    ap.add_argument("--k", type=int, default=384)
    ap.add_argument("--m", type=int, default=382)
    a = ap.parse_args()
    if a.hmm:
        time_hmm(a.b, a.k, a.m)
    elif a.run_dir is None:
        ap.error("give a finished run's folder, or --hmm")
    else:
        profile_batches(a.run_dir, a.batches, a.top, a.chrom, a.by_shape)


if __name__ == "__main__":
    main()
