"""Training and imputation throughput on one device (a GPU, or the CPU for a smoke test).

The workflow's own steps (:mod:`vcfbert.steps`, what the Snakemake rules call), run in one
process on one device, without Snakemake, on a scenario's VCFs:

1. ingest (parse the reference and the targets, windows, split, masks), with the defaults of
   ``config/config.yaml``;
2. with ``--trained RESULTS`` (a CPU run's ``results`` folder of the same data and config):
   that run's model imputes every target on the device, writing a ``GT:DS`` piece
   (``OUT/trained.c0000.vcf.gz``) whose accuracy can be read on another machine
   (``bench/gpu_accuracy.py``); it runs again at the end, when nothing is left to compile
   (the first run also compiles the numba kernels it meets);
3. for each preset (``default``: the config's model; ``v18``: d_model 384, 12 layers, 12 heads,
   d_ff 1536, VCF-Bert V18's size): the initial checkpoint, every window's keys and FAISS
   shard (the index refresh), one training epoch of ``--steps`` batches
   (haplotype-windows/s; peak GPU memory), then the imputation of every target over every
   window (haplotype-windows/s; the imputation job computes each window's final keys and
   exact index itself, as in the workflow).

Each stage is timed and caught on its own: a stage that fails is recorded (with its
traceback in the log) and the next one runs. ``OUT/gpu_bench.json`` is rewritten after every
stage.

    bench/gpu.sh OUT                      # what docs/gpu.md's figures come from
    python bench/gpu_bench.py --data bench/out/ooa_speed/data --out /tmp/g --device cpu \\
        --presets default --steps 3       # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from vcfbert.errors import InputError  # noqa: E402

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "v18": dict(d_model=384, n_layers=12, n_heads=12, d_ff=1536),
    "tiny": dict(d_model=16, n_layers=1, n_heads=2, d_ff=32, k_retrieve=48, k_keep=32),
}
CONTIG = "20"
PROFILED_BATCHES = 3  # training batches under torch.profiler (--profile)


class Bench:
    """The results so far, written to ``OUT/gpu_bench.json`` after every stage."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.result: dict[str, Any] = {"stages": {}, "failed": {}}

    def stage(self, name: str, fn: Callable[[], dict[str, Any] | None]) -> bool:
        """Run ``fn`` timed; its dict goes into the results. False when it raised."""
        print(f"== {name}", flush=True)
        sync()
        t0 = time.perf_counter()
        ok = True
        try:
            extra = fn() or {}
            sync()
            self.result["stages"][name] = {"seconds": round(time.perf_counter() - t0, 2),
                                           **extra}
        except Exception as err:  # recorded, and the next stage runs
            ok = False
            if isinstance(err, InputError):  # what the user gave: its one line says what to fix
                print(f"{name}: {err}", file=sys.stderr, flush=True)
            else:
                traceback.print_exc()
            self.result["failed"][name] = f"{type(err).__name__}: {err}"[:2000]
        print(json.dumps({name: self.result["stages"].get(name)
                          or self.result["failed"].get(name)}), flush=True)
        (self.out / "gpu_bench.json").write_text(json.dumps(self.result, indent=1))
        return ok


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_gib() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() \
        else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="folder with reference.vcf.gz, "
                    "targets.vcf.gz (and panel.tsv)")
    ap.add_argument("--trained", default="", help="a CPU run's results folder on the same "
                    "data: its train/model.pt imputes on the device")
    ap.add_argument("--presets", default="default,v18")
    ap.add_argument("--steps", type=int, default=80, help="training batches per preset")
    ap.add_argument("--v18-batch-size", type=int, default=24, help="V18 trained with 24")
    ap.add_argument("--workers", type=int, default=4, help="training DataLoader workers")
    ap.add_argument("--threads", type=int, default=4, help="imputation batches at once")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip", default="", help="stages to leave out, comma-separated: "
                    "trained_impute, impute (the presets'), train")
    ap.add_argument("--profile", action="store_true", help="also profile (torch.profiler) "
                    f"{PROFILED_BATCHES} training batches of each preset (after its epoch) and "
                    "one window's imputation by the trained model: OUT/profile_*.txt")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    from vcfbert import steps
    from vcfbert.keyencoder import companion_path
    from vcfbert.train import pick_device

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    device = pick_device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    bench = Bench(out)
    skip = set(a.skip.split(","))
    env: dict[str, Any] = {"device": device, "torch": torch.__version__,
                           "python": platform.python_version(), "numpy": np.__version__}
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name()
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory
                                      / 2**30, 1)
    try:
        import numba

        env["numba"] = numba.__version__
    except ImportError:
        pass
    bench.result["env"] = env
    print(json.dumps(env), flush=True)

    data = Path(a.data)
    tmp = Path(tempfile.mkdtemp(prefix="gpu_bench."))
    ref_h5, tgt_h5 = str(tmp / "reference.h5"), str(tmp / "targets.h5")
    windows_tsv, split_tsv = str(tmp / "windows.tsv"), str(tmp / "split.tsv")
    masks = {e: str(tmp / f"mask_{e}.h5") for e in ("0", "final")}
    panel = data / "panel.tsv"

    def ingest() -> dict[str, Any]:
        steps.parse_reference(reference_vcf=str(data / "reference.vcf.gz"),
                              target_vcf=str(data / "targets.vcf.gz"), contig=CONTIG,
                              panel=str(panel) if panel.exists() else None,
                              multiallelic=cfg["ingest"]["multiallelic"], overlap="error",
                              out=ref_h5)
        steps.parse_targets(target_vcf=str(data / "targets.vcf.gz"), reference_h5=ref_h5,
                            contig=CONTIG, multiallelic=cfg["ingest"]["multiallelic"],
                            min_call_rate=0.0, out=tgt_h5, qc_sites=str(tmp / "qs.tsv"),
                            qc_samples=str(tmp / "qa.tsv"))
        steps.define_windows(reference_h5=ref_h5, targets_h5=tgt_h5,
                             core_sites=cfg["windows"]["core_sites"],
                             flank_sites=cfg["windows"]["flank_sites"], out=windows_tsv)
        steps.split_samples(reference_h5=ref_h5, val_fraction=cfg["train"]["val_fraction"],
                            seed=cfg["train"]["seed"], out=split_tsv)
        for e, path in masks.items():
            steps.refresh_mask(targets_h5=tgt_h5, contig=CONTIG, epoch=e,
                               drop_fraction=cfg["mask"]["drop_fraction"], out=path)
        from vcfbert.io.h5store import read_targets, store_samples
        from vcfbert.windows import read_windows

        wins = read_windows(windows_tsv)
        shape.update(windows=len(wins), haplotypes=2 * len(store_samples(ref_h5)[0]),
                     target_haplotypes=int(read_targets(tgt_h5).haplotypes.shape[0]))
        return dict(shape)

    shape: dict[str, Any] = {}
    if not bench.stage("ingest", ingest):
        return
    bench.result["data"] = {"folder": str(data), **shape}
    hap_windows = shape["target_haplotypes"] * shape["windows"]  # per imputation of every target

    def impute(checkpoint: str, piece: str, dr2: str = "") -> dict[str, Any]:
        """Every target over every window on the device, into one piece (GT:DS)."""
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        steps.impute_chunk(checkpoint=checkpoint, key_encoder=companion_path(checkpoint),
                           contig=CONTIG, chunk="c0000", windows_per_job=10**6,
                           reference_h5=ref_h5, targets_h5=tgt_h5, windows_tsv=windows_tsv,
                           mask_h5=masks["final"], out=piece,
                           batch_size=cfg["impute"]["batch_size"], device=device,
                           threads=a.threads, dr2_calibration=dr2,
                           match_states=cfg["impute"]["match_states"], gp=False)
        sync()
        seconds = time.perf_counter() - t0
        return {"impute_s": round(seconds, 2),
                "impute_haplotype_windows_per_s": round(hap_windows / seconds, 1),
                "peak_gpu_gib": peak_gib()}

    def profiled(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``fn`` under torch.profiler: the top operators by device and by CPU time, and the
        number of kernel launches, in ``OUT/<name>.txt``."""
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                         if torch.cuda.is_available() else [])
        with profile(activities=acts) as prof:
            extra = fn()
        sync()
        table = prof.key_averages()
        by = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
        text = (f"sorted by {by}\n{table.table(sort_by=by, row_limit=30)}\n\n"
                f"sorted by self_cpu_time_total\n"
                f"{table.table(sort_by='self_cpu_time_total', row_limit=30)}\n")
        (out / f"{name}.txt").write_text(text)
        launches = sum(e.count for e in table if e.key.startswith(("cudaLaunchKernel",
                                                                   "cuLaunchKernel")))
        return {**extra, "kernel_launches": launches}

    def profile_impute(checkpoint: str) -> dict[str, Any]:
        """128 target haplotypes of the middle window, imputed under the profiler."""
        from vcfbert import keyencoder
        from vcfbert.checkpoint import load_checkpoint, model_from_checkpoint
        from vcfbert.data import query_tokens
        from vcfbert.index import KeySearcher, flat_index
        from vcfbert.io.h5store import read_targets
        from vcfbert.masks import read_mask
        from vcfbert.predict import predict_window
        from vcfbert.windowdata import Chromosome, read_window_arrays

        chrom = Chromosome.load(CONTIG, ref_h5, tgt_h5, windows_tsv)
        model = model_from_checkpoint(load_checkpoint(checkpoint)).to(device)
        params = keyencoder.load(companion_path(checkpoint))
        observed = read_mask(masks["final"])[0]
        targets = read_targets(tgt_h5)
        wid = chrom.windows["window_id"][len(chrom.windows) // 2]
        layout = chrom.layout(wid)
        arrays = read_window_arrays(chrom.reference_h5, layout)
        obs = chrom.slot_mask(observed, layout)
        keys = keyencoder.encode_keys(params, query_tokens(arrays.ref_slots, obs),
                                      layout.slot_core_dist)
        searcher = KeySearcher(flat_index(keys), device, never=chrom.second_copies(layout))
        cols = np.searchsorted(targets.variant_ref_index, layout.slot_index)
        qs = targets.haplotypes[:128, cols]

        def run() -> dict[str, Any]:
            t0 = time.perf_counter()
            predict_window(model, layout, arrays, obs, chrom.position, qs, searcher,
                           batch_size=cfg["impute"]["batch_size"], device=device,
                           index_is_current=True, slot_loo=True,
                           match_states=cfg["impute"]["match_states"])
            sync()
            return {"window": str(wid), "queries": int(qs.shape[0]),
                    "core_sites": int(layout.n_sites), "seconds_in_profiler":
                    round(time.perf_counter() - t0, 2)}

        return profiled("profile_trained_impute", run)

    if a.trained:
        run = Path(a.trained)
        model = str(tmp / "trained.pt")
        shutil.copyfile(run / "train/model.pt", model)
        shutil.copyfile(run / "train/model.keys.npz", companion_path(model))
        dr2 = run / "train/dr2_calibration.json"
        same = (run / f"windows/{CONTIG}.tsv").read_text() == Path(windows_tsv).read_text()
        bench.result["data"]["windows_as_trained_run"] = same
        trained = (model, str(dr2) if dr2.exists() else "")
        # the first run also compiles the numba kernels it meets; the second (after the
        # presets, whose runs compile nothing) is the warm one
        if "trained_impute" not in skip:
            bench.stage("trained_impute_1", lambda: impute(
                trained[0], str(out / "trained.c0000.vcf.gz"), trained[1]))
        if a.profile:
            bench.stage("profile_trained_impute", lambda: profile_impute(trained[0]))

    model_cfg = dict(cfg["model"])
    train_cfg = dict(cfg["train"])

    def preset_stages(preset: str) -> None:
        """Initial checkpoint, index refresh, one epoch and the imputation of one preset."""
        ck = {e: str(tmp / f"{preset}_{e}.pt") for e in ("init", "e0")}
        batch = a.v18_batch_size if preset == "v18" else train_cfg["batch_size"]

        def index(checkpoint: str, mask: str, tag: str) -> dict[str, Any]:
            """Every window's keys (the exported numpy key encoder) and FAISS shard."""
            paths = []
            from vcfbert.windows import read_windows

            for wid in read_windows(windows_tsv)["window_id"]:
                keys = str(tmp / f"{tag}_{wid}.npy")
                steps.encode(key_encoder=companion_path(checkpoint), contig=CONTIG,
                             window_id=wid, reference_h5=ref_h5, targets_h5=tgt_h5,
                             windows_tsv=windows_tsv, mask_h5=mask, out=keys)
                paths.append(str(tmp / f"{tag}_{wid}.faiss"))
                steps.build_index(keys_npy=keys, out=paths[-1],
                                  meta={"contig": CONTIG, "window_id": wid},
                                  key_encoder=companion_path(checkpoint))
            shards[tag] = paths
            return {"windows": len(paths)}

        shards: dict[str, list[str]] = {}

        def init() -> dict[str, Any]:
            steps.init_model(model_config={**model_cfg, **PRESETS[preset]},
                             seed=train_cfg["seed"], out=ck["init"], reference_h5=ref_h5)
            from vcfbert.checkpoint import load_checkpoint, model_from_checkpoint

            model = model_from_checkpoint(load_checkpoint(ck["init"]))
            return {"parameters": sum(p.numel() for p in model.parameters()),
                    **PRESETS[preset]}

        def train(steps_: int = a.steps, out_ck: str = ck["e0"]) -> dict[str, Any]:
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            steps.train_epoch(epoch=0, previous=ck["init"], contigs=[CONTIG],
                              reference_h5=[ref_h5], targets_h5=[tgt_h5],
                              windows_tsv=[windows_tsv], masks=[masks["0"]],
                              final_masks=[masks["final"]], indexes=shards["e0"],
                              split_tsv=split_tsv, out_model=out_ck,
                              out_metrics=out_ck[:-3] + ".json",
                              train_config={**train_cfg, "batch_size": batch,
                                            "max_batches_per_epoch": steps_,
                                            "num_workers": a.workers, "checkpoint_every": 0},
                              device=device)
            sync()
            wall = time.perf_counter() - t0
            metrics = json.loads(Path(out_ck[:-3] + ".json").read_text())
            # the epoch's own rate counts the batches' compute; the wall's also counts the
            # data loading it waited for, the validation and the checkpoint
            return {"batches": metrics.get("batches"), "batch_size": batch,
                    "train_haplotype_windows_per_s": round(
                        metrics["haplotype_windows_per_s"], 1),
                    "epoch_wall_s": round(wall, 2),
                    "train_haplotype_windows_per_s_wall": round(
                        metrics.get("batches", 0) * batch / wall, 1),
                    "peak_gpu_gib": peak_gib()}

        if not bench.stage(f"{preset}_init", init):
            return
        if not bench.stage(f"{preset}_index_refresh", lambda: index(ck["init"], masks["0"],
                                                                    "e0")):
            return
        # the epoch first, the profile last: on an H200 the profiler's table of 10 V18 batches
        # took longer to build than the call had left (docs/gpu.md)
        if "train" not in skip and bench.stage(f"{preset}_train", train) \
                and "impute" not in skip:
            bench.stage(f"{preset}_impute", lambda: impute(ck["e0"],
                                                           str(tmp / f"{preset}.vcf.gz")))
        if a.profile:
            bench.stage(f"profile_{preset}_train", lambda: profiled(
                f"profile_{preset}_train", lambda: train(steps_=PROFILED_BATCHES,
                                                         out_ck=ck["init"][:-3] + ".p.pt")))

    for preset in [p for p in a.presets.split(",") if p]:
        preset_stages(preset)
    if a.trained and "trained_impute" not in skip:
        bench.stage("trained_impute_2", lambda: impute(
            trained[0], str(tmp / "trained.again.vcf.gz"), trained[1]))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
