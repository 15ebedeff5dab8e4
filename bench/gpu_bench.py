"""GPU (or CPU) throughput of the V18-size model on a benchmark scenario.

Measures, on one device:
* training throughput (haplotype-windows/s) for a fixed number of steps, bf16 autocast and
  fused (scaled-dot-product) attention on CUDA, and peak GPU memory;
* index refresh: keys of every reference haplotype for every window (on the device) + FAISS
  shard, per window;
* imputation time of all targets over all windows.

    python bench/gpu_bench.py --scenario ooa_large --steps 200 --preset v18 --out gpu.json
    python bench/gpu_bench.py --scenario ooa_phased --steps 5 --preset tiny   # CPU smoke test

VCF-Bert V18 trained at ~67 haplotype-windows/s on an A100 (dims 384, 12 layers, 12 heads,
batch 24); the goal is >= 10x that.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {
    "v18": dict(d_model=384, n_layers=12, n_heads=12, d_ff=1536),
    "tiny": dict(d_model=16, n_layers=1, n_heads=2, d_ff=32, k_retrieve=48, k_keep=32),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="ooa_large")
    ap.add_argument("--data", help="folder with reference/targets VCFs (default: simulate)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="v18")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=24)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="gpu_bench.json")
    a = ap.parse_args()

    import yaml

    from vcfbert import keyencoder
    from vcfbert.checkpoint import load_checkpoint, model_from_checkpoint
    from vcfbert.encode import reference_keys
    from vcfbert.index import KeySearcher, build_index, load_index
    from vcfbert.ingest import parse_reference, parse_targets
    from vcfbert.io.h5store import read_targets, read_variant_table, store_samples
    from vcfbert.masks import epoch_mask, write_mask
    from vcfbert.predict import predict_window
    from vcfbert.split import split_samples, write_split
    from vcfbert.train import TrainConfig, init_model, pick_device, train_epoch
    from vcfbert.windowdata import Chromosome, read_window_arrays
    from vcfbert.windows import define_windows, write_windows

    device = pick_device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    tmp = Path(tempfile.mkdtemp())
    data = Path(a.data) if a.data else tmp / "data"
    if not a.data:
        spec = yaml.safe_load((ROOT / "bench/scenarios" / f"{a.scenario}.yaml").read_text())
        (tmp / "s.yaml").write_text(yaml.safe_dump({"simulation": spec["simulation"]}))
        t0 = time.time()
        subprocess.run([sys.executable, "-m", "vcfbert.cli", "simulate", "-o", str(data),
                        "--config", str(tmp / "s.yaml")], check=True)
        print(f"simulated in {time.time() - t0:.1f} s", flush=True)
    contig = "20"
    parse_reference(data / "reference.vcf.gz", contig, tmp / "ref.h5")
    parse_targets(data / "targets.vcf.gz", tmp / "ref.h5", contig, tmp / "tgt.h5",
                  tmp / "qa.tsv", tmp / "qb.tsv")
    table = read_variant_table(tmp / "ref.h5")
    targets = read_targets(tmp / "tgt.h5")
    windows = define_windows(table["position"], targets.variant_ref_index, core_sites=32,
                             flank_sites=128)
    write_windows(windows, tmp / "w.tsv")
    chrom = Chromosome.load(contig, str(tmp / "ref.h5"), str(tmp / "tgt.h5"), str(tmp / "w.tsv"))
    samples, pops = store_samples(tmp / "ref.h5")
    write_split(split_samples(samples, pops, val_fraction=0.05, seed=1), tmp / "split.tsv")
    n_typed = chrom.typed_index.size
    write_mask(tmp / "m0.h5", epoch_mask(n_typed, 0, contig, 0.1), version="0", contig=contig,
               drop_fraction=0.1)
    write_mask(tmp / "final.h5", np.ones(n_typed, bool), version="final", contig=contig,
               drop_fraction=0.0)
    init_model(PRESETS[a.preset], tmp / "init.pt", seed=1)
    model = model_from_checkpoint(load_checkpoint(tmp / "init.pt")).to(device)

    # index refresh on the device: keys (torch) + FAISS shard, per window
    from vcfbert.masks import read_mask

    observed = read_mask(tmp / "m0.h5")[0]
    refresh, indexes = [], {}
    for wid in windows["window_id"]:
        layout = chrom.layout(wid)
        arrays = read_window_arrays(chrom.reference_h5, layout)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        keys = reference_keys(model, layout, arrays, chrom.slot_mask(observed, layout),
                              device=device)
        side = build_index(keys, tmp / f"{wid}.faiss", meta={"contig": contig,
                                                              "window_id": wid})
        refresh.append(time.perf_counter() - t0)
        indexes[(contig, wid)] = str(tmp / f"{wid}.faiss")
    cpu_keys = keyencoder.load(keyencoder.companion_path(tmp / "init.pt"))
    assert cpu_keys.d_key == side["dimension"]

    cfg = TrainConfig(batch_size=a.batch_size, max_batches_per_epoch=a.steps,
                      val_max_haplotypes=2, checkpoint_every=0, num_workers=a.workers,
                      loss="brier", lr_scale_body=0.1, lr_scale_copying=0.1)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    metrics = train_epoch(epoch=0, previous_checkpoint=str(tmp / "init.pt"), chroms=[chrom],
                          masks=[str(tmp / "m0.h5")], final_masks=[str(tmp / "final.h5")],
                          index_paths=indexes, split_tsv=str(tmp / "split.tsv"),
                          out_checkpoint=str(tmp / "e0.pt"), out_metrics=str(tmp / "e0.json"),
                          partial_dir=str(tmp / "e0.partial"), cfg=cfg, device=device)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None

    # imputation of every target haplotype over every window
    trained = model_from_checkpoint(load_checkpoint(tmp / "e0.pt")).to(device)
    final_obs = read_mask(tmp / "final.h5")[0]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for wid in windows["window_id"]:
        layout = chrom.layout(wid)
        arrays = read_window_arrays(chrom.reference_h5, layout)
        obs = chrom.slot_mask(final_obs, layout)
        keys = reference_keys(trained, layout, arrays, obs, device=device)
        build_index(keys, tmp / f"f{wid}.faiss", meta={})
        index, _ = load_index(tmp / f"f{wid}.faiss")
        qs = targets.haplotypes[:, np.searchsorted(chrom.typed_index, layout.slot_index)]
        predict_window(trained, layout, arrays, obs, chrom.position, qs,
                       KeySearcher(index, device), batch_size=64, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    impute_s = time.perf_counter() - t0
    result = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else
        platform.processor() or "cpu",
        "torch": torch.__version__, "preset": a.preset, **PRESETS[a.preset],
        "batch_size": a.batch_size, "steps": a.steps,
        "reference_haplotypes": chrom.n_haplotypes, "variants": int(table["position"].size),
        "windows": len(windows), "target_haplotypes": int(targets.haplotypes.shape[0]),
        "train_haplotype_windows_per_s": round(metrics["haplotype_windows_per_s"], 1),
        "speedup_vs_v18_67_per_s": round(metrics["haplotype_windows_per_s"] / 67.0, 1),
        "peak_gpu_memory_gib": round(peak, 2) if peak is not None else None,
        "index_refresh_s_per_window_mean": round(float(np.mean(refresh)), 4),
        "index_refresh_s_all_windows": round(float(np.sum(refresh)), 3),
        "bytes_per_haplotype_window": side["bytes_per_haplotype_window"],
        "impute_s_all_targets_all_windows": round(impute_s, 2),
    }
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
