"""The README demo with `snakemake --profile slurm` on a local one-node SLURM of this machine's
size (at most 20 GB), started as the SLURM test starts it (needs root, slurm-wlm and munge,
and the executor plugin on PYTHONPATH: see tests/workflow/test_slurm.py).

    PYTHONPATH=PLUGINS python bench/slurm_demo.py CLONE    # CLONE: a fresh clone with .venv

Prints the exit status and wall time; Snakemake's output goes to CLONE/slurm_demo.log.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "workflow"))
from test_slurm import LocalSlurm  # noqa: E402


def main() -> None:
    clone = Path(sys.argv[1]).resolve()
    state = Path("/tmp/vcfbert_slurm_demo")
    state.mkdir(exist_ok=True)
    cluster = LocalSlurm(state)
    cluster.start()
    try:
        t0 = time.time()
        res = subprocess.run([str(clone / ".venv/bin/snakemake"), "--profile", "slurm"],
                             cwd=clone, env=cluster.env(), capture_output=True, text=True,
                             timeout=3600)
        (clone / "slurm_demo.log").write_text(res.stdout + res.stderr)
        print(f"exit status {res.returncode}, wall {time.time() - t0:.1f} s")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
