"""Accuracy of a piece imputed on another device (``bench/gpu_bench.py --trained``).

Writes the piece into a VCF with this machine's stores of the same run (``write_vcf``),
scores it against the truth as ``bench/speed.py`` does (dosage r² by reference MAF bin,
untyped sites), and compares its dosages with those of a VCF the same model imputed here:

    python bench/gpu_accuracy.py --piece GPU_OUT/trained.c0000.vcf.gz \\
        --results bench/out/ooa_speed/speed.vcfbert/results \\
        --data bench/out/ooa_speed/data --cpu-vcf bench/out/ooa_speed/speed.vcfbert/imputed.impute.vcf.gz
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from run import vcfbert_cli  # noqa: E402
from speed import BINS  # noqa: E402


def dosages(vcf: Path) -> np.ndarray:
    """float32 [variants, samples] the DS of every cell (the project's compiled text reader)."""
    from vcfbert.io.vcf import check_header
    from vcfbert.io.vcf_text import iter_text_blocks

    return np.concatenate([block.ds for block in iter_text_blocks(vcf, check_header(vcf),
                                                                   want_ds=True)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--piece", required=True, help="the device's piece (its .json beside it)")
    ap.add_argument("--results", required=True, help="the CPU run's results folder")
    ap.add_argument("--data", required=True, help="the scenario's data (its three VCFs)")
    ap.add_argument("--cpu-vcf", default="", help="the same model's VCF imputed here")
    ap.add_argument("--contig", default="20")
    ap.add_argument("-o", "--out", required=True, help="accuracy table (TSV)")
    a = ap.parse_args()

    from vcfbert import steps
    from vcfbert.vcf_pieces import sidecar_path

    results = Path(a.results)
    ref = results / f"ingest/{a.contig}/reference.h5"
    tgt = results / f"ingest/{a.contig}/targets.h5"
    tmp = Path(tempfile.mkdtemp(prefix="gpu_accuracy."))
    piece = tmp / "c0000.vcf.gz"
    for given in (Path(a.piece), sidecar_path(a.piece), results / f"ingest/{a.contig}/reference.h5"):
        if not given.is_file():
            raise SystemExit(f"gpu_accuracy: {given} is missing (the piece needs its sidecar "
                             "beside it, the run its ingest stores)")
    shutil.copyfile(a.piece, piece)
    shutil.copyfile(sidecar_path(a.piece), sidecar_path(piece))
    vcf = tmp / "gpu.vcf.gz"
    steps.write_vcf(pieces=str(piece), targets_h5=str(tgt), reference_h5=str(ref),
                    out=str(vcf), command="bench/gpu_accuracy.py", gp=False)
    data = Path(a.data)
    subprocess.run(vcfbert_cli("evaluate", "--imputed", str(vcf), "--truth",
                               str(data / "truth.vcf.gz"), "--reference",
                               str(data / "reference.vcf.gz"), "--targets",
                               str(data / "targets.vcf.gz"), "--method", "gpu", "-o", a.out),
                   check=True, stdout=subprocess.DEVNULL)
    df = pd.read_csv(a.out, sep="\t")
    r2 = df[df.group == "all"].set_index("maf_bin")["r2"]
    print("r² by MAF bin:", " ".join(f"{b} {r2.get(b, float('nan')):.5f}" for b in BINS))
    if a.cpu_vcf:
        gpu, cpu = dosages(vcf), dosages(Path(a.cpu_vcf))
        if gpu.shape != cpu.shape:
            raise SystemExit(f"{vcf}: {gpu.shape} cells, {a.cpu_vcf}: {cpu.shape}")
        diff = np.abs(gpu - cpu)
        print(f"DS against the CPU's VCF: {diff.size} cells, max |diff| {diff.max():.3f}, "
              f"mean {diff.mean():.2e}, cells that differ {(diff > 0).mean():.2%}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
