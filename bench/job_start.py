"""When an imputation job's first batch starts, and how many cores its first seconds use.

    python bench/job_start.py bench/out/ooa_speed/speed.vcfbert [--src /tmp/before/src]
        [--rounds 3]

Runs one ``impute_chunk`` job of a finished run in a fresh process per round (its imports
included, as the workflow's job pays them: nothing of vcfbert or torch is imported before the
job starts), from this checkout's ``src`` or from ``--src`` (another checkout's, to compare
versions in turn). Prints, per round, the seconds from the process's start to: torch and the
model's code imported, the first window's reference arrays read and its kernel tables built, the first
window's prediction started (its progress bar), and the job's end; then the cores in use in
each quarter second of the first 4 s (the process's CPU time over wall time, from
``/proc/self/stat``). The job's piece is written to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from job_cpu import impute_chunk_kwargs  # noqa: E402 - the job's arguments, as job_cpu runs it

# the job, run in a child process: `marks` are (seconds since the start, what)
CHILD = r'''
import functools, json, os, sys, tempfile, threading, time
T0 = time.time()
sys.path.insert(0, SRC)
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
marks, cpu = [], []
tick = os.sysconf("SC_CLK_TCK")

def watch():
    loaded = False
    while True:
        # vcfbert.predict's functions exist once its imports (torch, the network) are done
        if not loaded and hasattr(sys.modules.get("vcfbert.predict"), "predict_window"):
            loaded = True
            marks.append((time.time() - T0, "torch and the model's code imported"))
        with open("/proc/self/stat") as f:
            fields = f.read().split()
        cpu.append((time.time() - T0, (int(fields[13]) + int(fields[14])) / tick))
        time.sleep(0.01)

threading.Thread(target=watch, daemon=True).start()
import tqdm
from vcfbert import steps, windowdata
from vcfbert.model import copy_kernel

def first_call(owner, name, label):
    real = getattr(owner, name)
    @functools.wraps(real)
    def wrapped(*a, **k):
        out = real(*a, **k)
        if not any(m[1] == label for m in marks):
            marks.append((time.time() - T0, label))
        return out
    setattr(owner, name, wrapped)

first_call(windowdata.ConsecutiveWindowReader, "get", "first window read")
first_call(copy_kernel, "window_tables", "first window's kernel tables")
real_init = tqdm.tqdm.__init__
def init(self, *a, **k):
    if str(k.get("desc", "")).startswith("impute") and not any(
            m[1] == "first window's prediction" for m in marks):
        marks.append((time.time() - T0, "first window's prediction"))
    real_init(self, *a, **k)
tqdm.tqdm.__init__ = init
with tempfile.TemporaryDirectory() as tmp:
    steps.impute_chunk(**KWARGS, out=f"{tmp}/piece.vcf.gz")
marks.append((time.time() - T0, "end"))
print(json.dumps({"marks": sorted(marks), "cpu": cpu}))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src",
                    help="the src folder of the vcfbert to run (default: this checkout's)")
    ap.add_argument("--chrom", default="20")
    ap.add_argument("--chunk", default="c0000")
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    if not (a.run_dir / "results/train/model.pt").exists():
        raise SystemExit(f"{a.run_dir}: not a finished run (no results/train/model.pt); give "
                         "speed.py's <outdir>/speed.vcfbert")
    if not (a.src / "vcfbert").is_dir():
        raise SystemExit(f"--src {a.src}: no vcfbert package there; give a checkout's src")
    code = (f"SRC = {str(a.src.resolve())!r}\n"
            f"KWARGS = {impute_chunk_kwargs(a.run_dir, a.chrom, a.chunk, 2)!r}\n" + CHILD)
    print(f"impute_chunk {a.chunk} of {a.run_dir}, vcfbert from {a.src}: seconds from the "
          "process's start\n")
    for n in range(a.rounds):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(a.src.resolve())})
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        out = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"round {n + 1}: " + ", ".join(f"{what} {t:.2f}" for t, what in out["marks"]))
        cores = []
        for q in range(16):
            pts = [c for c in out["cpu"] if q / 4 <= c[0] < (q + 1) / 4]
            if len(pts) > 1:
                cores.append(f"{(pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]):.1f}")
        print(f"  cores in use, each 0.25 s of the first 4 s: {' '.join(cores)}")


if __name__ == "__main__":
    main()
