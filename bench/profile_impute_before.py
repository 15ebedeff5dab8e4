"""The "before" of docs/model.md's inference profile: one window through commit 8ab1546's code.

That commit imputed each window with the model's torch forward (``impute_window``) from a final
index shard. This script imports the package from a checkout of that commit, builds the shard
the way its encode and build_index jobs did, and profiles ``impute_window`` on one window of a
finished run of today's workflow (the model and mask files are compatible), one thread:

    git worktree add /tmp/vcfbert-8ab1546 8ab1546
    python bench/profile_impute_before.py /tmp/vcfbert-8ab1546 bench/out/ooa_speed/speed.vcfbert \\
        --window w0010

It prints the top entries by own time and the window's wall time, writes the window's
probabilities to ``--out``, and compares them with the run's own (today's code,
``results/impute/<chrom>/c*.h5``) when those are there.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old_checkout", type=Path, help="a checkout of commit 8ab1546")
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--chrom", default="20")
    ap.add_argument("--window", default="w0010")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--out", default="before.window.h5")
    a = ap.parse_args()
    sys.path.insert(0, str(a.old_checkout / "src"))
    from vcfbert import keyencoder
    from vcfbert.data import Chromosome
    from vcfbert.encode import encode_window
    from vcfbert.impute import impute_window
    from vcfbert.index import build_index
    from vcfbert.runtime import cap_threads

    cap_threads(1)
    r = a.run_dir / "results"
    ref, tgt = str(r / f"ingest/{a.chrom}/reference.h5"), str(r / f"ingest/{a.chrom}/targets.h5")
    windows, mask = str(r / f"windows/{a.chrom}.tsv"), str(r / f"masks/{a.chrom}/final.h5")
    chrom = Chromosome.load(a.chrom, ref, tgt, windows)
    with tempfile.TemporaryDirectory() as tmp:
        keys = encode_window(keyencoder.load(str(r / "train/model.keys.npz")), chrom, a.window,
                             mask, f"{tmp}/keys.npy")
        build_index(keys, f"{tmp}/index.faiss", meta={"epoch": "final"})
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.runcall(impute_window, checkpoint=str(r / "train/model.pt"), method="model",
                     contig=a.chrom, window_id=a.window, reference_h5=ref, targets_h5=tgt,
                     windows_tsv=windows, mask_h5=mask, index_path=f"{tmp}/index.faiss",
                     out=a.out, batch_size=32, device="cpu")
        wall = time.perf_counter() - t0
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(a.top)
    print(out.getvalue())
    print(f"window {a.window} with commit 8ab1546's impute_window: {wall:.2f} s (1 thread)")
    compare(r / f"impute/{a.chrom}", a.out, chrom.windows, a.window)


def compare(chunk_dir: Path, before_h5: str, windows, window_id: str) -> None:
    """Print how far the run's probabilities of the window are from the old code's."""
    import h5py
    import numpy as np

    w = windows.set_index("window_id").loc[window_id]
    with h5py.File(before_h5, "r") as h5:
        before = h5["hap_prob"][()]
    for path in sorted(chunk_dir.glob("c[0-9]*.h5")):
        with h5py.File(path, "r") as h5:
            lo, hi = int(h5.attrs["core_start"]), int(h5.attrs["core_end"])
            if lo <= w.core_start and w.core_end <= hi:
                now = h5["hap_prob"][:, w.core_start - lo:w.core_end - lo]
                d = np.abs(now - before)
                print(f"vs {path}: max |diff| {d.max():.2g}, mean {d.mean():.2g}, "
                      f"share > 1e-3 {(d > 1e-3).mean():.2g} over {d.size} probabilities")
                return
    print(f"no imputed chunk of {window_id} under {chunk_dir}: nothing to compare")


if __name__ == "__main__":
    main()
