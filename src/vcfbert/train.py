"""Training: one epoch per call, resumable mid-epoch, with validation and metrics.

``train_epoch`` starts from the checkpoint of the previous epoch (or the initial weights),
retrieves candidates from that epoch's per-window FAISS shards (keys built with the previous
epoch's weights under this epoch's mask), re-scores them with the current weights, and
optimises the MAF-weighted cross-entropy on the hidden core sites. Every
``checkpoint_every`` steps it saves a resume state (weights, optimiser, scheduler, RNG, step,
running sums) atomically, so a killed epoch continues where it stopped and ends with the same
weights as an uninterrupted run (on CPU, same threads). With ``weight_average_decay`` > 0 the
epoch validates and saves a moving average of its weights (:mod:`vcfbert.weight_average`) and
carries its own weights in the checkpoint for the next epoch to train on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from . import keyencoder
from .atomic import write_text_atomic
from .calibration import Recalibration
from .checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .data import (
    Chromosome,
    ConsecutiveWindowReader,
    EpochBatches,
    WindowArrayCache,
    WindowArrays,
    WindowGeometry,
    assemble_batch,
    epoch_batches,
    identity_collate,
    leave_one_out_af,
    own_sample,
)
from .devices import pick_device
from .encode import query_keys, reference_keys
from .errors import InputError
from .index import KeySearcher, load_index
from .layout import WindowLayout
from .masks import read_mask
from .model import ModelConfig, VcfBert
from .model.copy_kernel import WindowTables, window_tables
from .model.network import weighted_loss_parts
from .predict import predict_window
from .runtime import cap_threads, prefetched
from .split import read_split
from .validation_metrics import ValidationSums
from .weight_average import EXTRA_KEY as WEIGHT_AVERAGE
from .weight_average import WeightAverage

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainConfig:
    """Optimisation settings (config ``train:`` section; see config/README.md)."""

    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    grad_accum_steps: int = 1
    max_sites_per_batch: int = 256
    trainable: str = "all"
    loss: str = "bce"
    lr_scale_copying: float = 1.0
    lr_scale_body: float = 1.0
    maf_weighting: str = "none"
    max_batches_per_epoch: int = 0
    val_fraction: float = 0.1
    val_max_haplotypes: int = 256
    val_max_windows: int = 0  # 0: every window (vcfbert.rule_params leaves it out then)
    checkpoint_every: int = 50
    num_workers: int = 0
    seed: int = 1
    match_states: int = 0
    window_cache_gib: float = 1.0
    weight_average_decay: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


_HEAD = ("out_head.", "copy_scale")
_COPY = ("log_rate", "rate_head.", "mismatch_bias", "mismatch_head.", "emit_head.", "prior_scale",
         "keys.")


def trainable_parameters(model: torch.nn.Module, which: str) -> list[torch.nn.Parameter]:
    """Parameters to optimise: ``all``, only the output ``head``, or only the ``copying``
    layer (HMM rates, mismatch and emission terms, prior, keys). Others are frozen."""
    if which == "all":
        return [p for p in model.parameters() if p.requires_grad]
    prefixes = {"head": _HEAD, "copying": _COPY}.get(which)
    if prefixes is None:
        raise InputError(f"train.trainable must be all, head or copying, not {which!r}")
    chosen = []
    for name, p in model.named_parameters():
        keep = name.startswith(prefixes)
        p.requires_grad_(keep)
        if keep:
            chosen.append(p)
    return chosen


def parameter_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Optimiser groups: output head at ``lr``; copying layer and body (embeddings, query
    transformer) at ``lr`` times their scales. Frozen groups (``trainable``) are left out."""
    chosen = {id(p) for p in trainable_parameters(model, cfg.trainable)}
    groups: dict[str, list[torch.nn.Parameter]] = {"head": [], "copying": [], "body": []}
    for name, p in model.named_parameters():
        if id(p) not in chosen:
            continue
        part = ("head" if name.startswith(_HEAD) else
                "copying" if name.startswith(_COPY) else "body")
        groups[part].append(p)
    scale = {"head": 1.0, "copying": cfg.lr_scale_copying, "body": cfg.lr_scale_body}
    return [{"params": ps, "lr": cfg.lr * scale[k], "name": k} for k, ps in groups.items() if ps]


def lr_lambda(warmup: int):
    """Linear warm-up, then inverse square-root decay (independent of the number of epochs,
    so adding epochs later never changes the earlier ones)."""
    warm = max(1, int(warmup))

    def f(step: int) -> float:
        s = step + 1
        return min(s / warm, math.sqrt(warm / s))

    return f


def init_model(model_config: dict[str, Any], out: str | os.PathLike[str], *, seed: int,
               n_reference_haplotypes: int = 0) -> None:
    """Write the initial checkpoint (epoch -1) from the model config and a seed; the switch
    rate starts scaled to the panel's ``n_reference_haplotypes`` (0: to ``k_keep``)."""
    torch.manual_seed(seed)
    model = VcfBert(ModelConfig.from_dict({**model_config,
                                           "n_reference_haplotypes": n_reference_haplotypes}))
    save_checkpoint(out, model, epoch=-1, step=0, rng=rng_state())
    keyencoder.save(keyencoder.from_model(model), keyencoder.companion_path(out))


def _train_haps(chrom: Chromosome, split_samples: set[str]) -> np.ndarray:
    idx = [i for i, s in enumerate(chrom.sample_id) if s in split_samples]
    return np.array([h for i in idx for h in (2 * i, 2 * i + 1)], dtype=np.int64)


def _fingerprint(paths: list[str], extra: dict[str, Any]) -> str:
    import hashlib

    h = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.basename(p)}:{st.st_size}".encode())
    return h.hexdigest()


class _Running:
    """Running sums for the epoch's training metrics (saved in resume states)."""

    def __init__(self, state: dict[str, float] | None = None) -> None:
        self.s = dict(state or {"loss": 0.0, "batches": 0.0, "tp": 0.0, "fp": 0.0, "fn": 0.0,
                                "windows": 0.0, "seconds": 0.0})

    def add(self, loss: float, logits: torch.Tensor, batch, seconds: float) -> None:
        with torch.no_grad():
            m = batch.loss_mask
            pred = (logits > 0) & m
            true = (batch.targets > 0.5) & m
            self.s["tp"] += float((pred & true).sum())
            self.s["fp"] += float((pred & ~true).sum())
            self.s["fn"] += float((~pred & true).sum())
        self.s["loss"] += loss
        self.s["batches"] += 1
        self.s["windows"] += float(batch.query_tokens.shape[0])
        self.s["seconds"] += seconds

    @property
    def f1(self) -> float:
        d = 2 * self.s["tp"] + self.s["fp"] + self.s["fn"]
        return 2 * self.s["tp"] / d if d else float("nan")

    @property
    def loss(self) -> float:
        return self.s["loss"] / max(1.0, self.s["batches"])


@dataclasses.dataclass
class ValidationWindow:
    """One window's predictions for ``h`` held-out reference haplotypes (whole samples, the
    two haplotypes of sample ``s`` at rows ``2s`` and ``2s + 1``) at its ``n`` core sites."""

    chrom: Chromosome
    layout: WindowLayout
    haps: np.ndarray  # int64 [h] panel haplotype ids
    probs: np.ndarray  # float32 [h, n] predicted ALT probability
    truth: np.ndarray  # float32 [h, n] true allele (0/1)
    af: np.ndarray  # float64 [h / 2, n] panel ALT frequency without the sample (leave-one-out)


def validation_windows(model: VcfBert, chroms: list[Chromosome], val_haps: list[np.ndarray],
                       final_masks: list[np.ndarray], *, max_haplotypes: int, device: str,
                       cache: WindowArrayCache | ConsecutiveWindowReader,
                       desc: str = "EP_Val",
                       index_is_current: bool = False, threads: int = 1,
                       match_states: int = 0, windows: list[list[str]] | None = None
                       ) -> Iterator[ValidationWindow]:
    """Predict held-out panel haplotypes window by window, as the targets are imputed.

    The queries are ``val_haps`` (per chromosome; the first ``max_haplotypes`` of them, 0:
    all) under the *inference* mask (the targets' typed sites); reference keys are recomputed
    with the current weights and searched exactly, the queries' own samples excluded. With
    ``index_is_current`` the index's top ``k_keep`` are the copying states, as at imputation;
    otherwise its ``k_retrieve`` hits are re-scored, as in training
    (:func:`vcfbert.predict.predict_window`, ``threads`` batches at a time). ``windows``: the
    window ids to predict, per chromosome (default: all).
    """
    import faiss

    for ci, chrom in enumerate(chroms):
        haps = val_haps[ci]
        if haps.size == 0:
            continue
        haps = haps[: max_haplotypes - (max_haplotypes % 2)] if max_haplotypes else haps

        def prepare(wid: str, chrom: Chromosome = chrom, mask: np.ndarray = final_masks[ci]
                    ) -> tuple[WindowLayout, WindowArrays, np.ndarray, KeySearcher,
                               WindowTables | None]:
            """A window's layout, arrays, observed slots, exact index of current keys and
            (on a CPU) the copying kernel's tables."""
            layout = chrom.layout(wid)
            arrays = cache.get(chrom, wid, layout)
            obs = chrom.slot_mask(mask, layout)
            keys = reference_keys(model, layout, arrays, obs, device=device)
            index = faiss.IndexFlatIP(keys.shape[1])
            index.add(keys)
            tables = None if device.startswith("cuda") else window_tables(
                arrays.ref_slots, arrays.ref_core,
                WindowGeometry.of(layout, chrom.position).site_interval.numpy())
            return layout, arrays, obs, KeySearcher(index, device,
                                                    never=chrom.second_copies(layout)), tables

        ids = list(chrom.windows["window_id"]) if windows is None else windows[ci]
        bar = tqdm(ids, desc=f"{desc}:{chrom.contig}", unit="window", file=sys.stderr,
                   mininterval=5)
        # the next window is prepared while this one is predicted (runtime.prefetched)
        for _, (layout, arrays, obs, searcher, tables) in prefetched(bar, prepare):
            probs = predict_window(model, layout, arrays, obs, chrom.position,
                                   arrays.ref_slots[haps], searcher, panel_haps=haps,
                                   batch_size=64, device=device, tables=tables,
                                   index_is_current=index_is_current, threads=threads,
                                   match_states=match_states)
            truth = arrays.ref_core[haps].astype(np.float32)
            own = truth[0::2] + truth[1::2]  # leave-one-out panel frequency per pair
            af = (arrays.ac_core[None, :] - own) / (chrom.n_haplotypes - 2)
            yield ValidationWindow(chrom, layout, haps, probs, truth, af)


def validate(model: VcfBert, chroms: list[Chromosome], val_haps: list[np.ndarray],
             final_masks: list[np.ndarray], *, max_haplotypes: int, device: str,
             cache: WindowArrayCache, match_states: int = 0,
             max_windows: int = 0) -> dict[str, float]:
    """Genotype-dosage r² per MAF bin and carrier F1 on held-out panel samples
    (:func:`validation_windows`; with ``match_states``, that many copying states by match
    length, as the model was trained and will impute) in ``max_windows`` windows spread
    evenly over the chromosomes (:func:`spread_windows`; 0: all). Each window costs its
    reference's reading, keys and kernel tables, whatever the haplotypes scored: on a whole
    chromosome the windows, not the haplotypes, are what validation's time grows with."""
    model.eval()
    sums = ValidationSums()  # per-bin moments: memory of one window, not of the chromosome
    windows = spread_windows([list(c.windows["window_id"]) for c in chroms], max_windows)
    for win in validation_windows(model, chroms, val_haps, final_masks,
                                  max_haplotypes=max_haplotypes, device=device, cache=cache,
                                  index_is_current=bool(match_states),
                                  match_states=match_states, windows=windows):
        sums.add(win.probs, win.truth, win.af)
    model.train()
    return {**sums.metrics(), "val_windows": sum(len(ids) for ids in windows)}


def _evenly_spread(total: int, n: int) -> np.ndarray:
    """int64 [<= n]: ``n`` positions in 0..total-1 spread evenly, first and last included."""
    return np.unique(np.linspace(0, total - 1, n).round().astype(np.int64))


def spread_samples(haps: np.ndarray, n_samples: int) -> np.ndarray:
    """The haplotypes (int64 [2s]) of ``n_samples`` samples spread evenly over ``haps``
    (whole samples, in the panel's order, which often groups populations); 0 or more samples
    than there are: all."""
    pairs = np.asarray(haps, np.int64).reshape(-1, 2)
    if n_samples <= 0 or n_samples >= pairs.shape[0]:
        return pairs.ravel()
    return pairs[_evenly_spread(pairs.shape[0], n_samples)].ravel()


def spread_windows(window_ids: list[list[str]], n_windows: int) -> list[list[str]]:
    """Of every chromosome's windows (``window_ids``, in order), ``n_windows`` in all spread
    evenly over them, taken as one sequence (0 or more than there are: all); per chromosome,
    in order."""
    flat = [(c, w) for c, ids in enumerate(window_ids) for w in ids]
    if n_windows <= 0 or n_windows >= len(flat):
        return [list(ids) for ids in window_ids]
    pick = set(_evenly_spread(len(flat), n_windows).tolist())
    out: list[list[str]] = [[] for _ in window_ids]
    for i, (c, w) in enumerate(flat):
        if i in pick:
            out[c].append(w)
    return out


def calibration_data(model: VcfBert, chrom: Chromosome, haps: np.ndarray,
                     final_mask: np.ndarray, *, device: str, threads: int = 1,
                     match_states: int = 0, windows: list[str] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per variant of one chromosome, the conditional DR2 and the true r² over the held-out
    panel samples ``haps`` (int64 [2s], whole samples) imputed as the targets are
    (:func:`validation_windows`, copying states chosen as at imputation), in the cores of
    ``windows`` (default: every window; NaN elsewhere).

    A sample does not count at a variant where the panel without it lacks one of the alleles
    (it holds every copy of the ALT allele, or of the REF allele): a target never meets such
    a variant (every imputed variant is in the panel), and it could not be found.

    Returns:
        (conditional DR2 float64 [V], true r² float64 [V]; NaN where it is undefined — no
        true variance among the counted samples, or no dose variance).
    """
    from .calibration import SUM_ROWS, conditional_dr2, dr2_sums
    from .imputed_vcf import empirical_r2, empirical_r2_sums

    n_var = chrom.af.size
    sums = np.zeros((len(SUM_ROWS), n_var))
    r2_sums = np.zeros((6, n_var))
    male = None if chrom.male is None else np.asarray(chrom.male, bool)[haps[0::2] // 2]

    def add(win: ValidationWindow) -> None:
        """The window's sums, into its own columns (cores do not overlap)."""
        lo, hi = win.layout.core_start, win.layout.core_end
        region = None if chrom.haploid_variant is None else chrom.haploid_variant[lo:hi]
        use = (win.af > 0) & (win.af < 1)  # [s, n]
        sums[:, lo:hi] = dr2_sums(win.probs, male, region, use=use)
        calls = np.where(np.repeat(use, 2, axis=0), win.truth, -1).astype(np.int8)
        r2_sums[:, lo:hi] = empirical_r2_sums(win.probs, calls, male, region)

    # a window's sums are added on a thread while the next window is predicted
    with ThreadPoolExecutor(1) as pool:
        pending = None
        for win in validation_windows(model, [chrom], [haps], [final_mask], max_haplotypes=0,
                                      device=device, cache=ConsecutiveWindowReader(),
                                      desc="DR2 calibration", index_is_current=True,
                                      threads=threads, match_states=match_states,
                                      windows=None if windows is None else [windows]):
            if pending is not None:
                pending.result()
            pending = pool.submit(add, win)
        if pending is not None:
            pending.result()
    return conditional_dr2(sums), empirical_r2(r2_sums)


def calibrate_dr2(*, checkpoint: str, chroms: list[Chromosome], final_masks: list[str],
                  split_tsv: str, out: str, samples: int, device: str = "auto",
                  threads: int = 1, copying_states: int = 0,
                  match_states: int = 0, windows: int = 0) -> Recalibration:
    """Fit the DR2 recalibration (:mod:`vcfbert.calibration`) of the model in ``checkpoint``
    on ``samples`` validation samples (0: all) spread over the split, at the variants the
    targets do not type in the cores of ``windows`` windows spread over the chromosomes (0:
    all), and write it to ``out`` (``threads`` batches imputed at a time, with the
    imputation's ``copying_states`` (0: the model's own) and ``match_states``)."""
    from .atomic import sha256_file
    from .calibration import fit, save

    dev = pick_device(device, inference=True)
    t0 = time.time()
    cap_threads(1)  # one thread per batch, `threads` batches at once (as impute_chunk)
    model = model_from_checkpoint(load_checkpoint(checkpoint), copying_states).to(dev)
    model.eval()
    split = read_split(split_tsv)
    val_samples = set(split.loc[split["split"] == "val", "sample"])
    haps = [spread_samples(_train_haps(c, val_samples), samples) for c in chroms]
    if not any(h.size for h in haps):
        log.warning("%s: no validation sample to fit the DR2 calibration on (train.val_fraction "
                    "0?): DR2 will be the conditional DR2, not mapped to the true r²", split_tsv)
        cal = Recalibration.identity()
        cal.source = {"model": os.path.basename(checkpoint), "validation_samples": [0]}
        save(cal, out)
        return cal
    chosen = spread_windows([list(c.windows["window_id"]) if h.size else []
                             for c, h in zip(chroms, haps, strict=True)], windows)
    xs, ys, afs = [], [], []
    for chrom, h, path, ids in zip(chroms, haps, final_masks, chosen, strict=True):
        if h.size == 0 or not ids:
            continue
        x, y = calibration_data(model, chrom, h, read_mask(path)[0], device=dev, threads=threads,
                                match_states=match_states, windows=ids)
        untyped = np.ones(x.size, bool)
        untyped[chrom.typed_index] = False
        xs.append(x[untyped])
        ys.append(y[untyped])
        afs.append(np.asarray(chrom.af, np.float64)[untyped])
    n_windows = sum(len(ids) for ids in chosen)
    cal = fit(np.concatenate(xs), np.concatenate(ys), np.concatenate(afs), source={
        "model": os.path.basename(checkpoint), "model_sha256": sha256_file(checkpoint),
        "copying_states": model.cfg.k_keep, "match_states": int(match_states),
        "validation_samples": [int(h.size // 2) for h in haps],
        "contigs": [c.contig for c in chroms], "windows": n_windows,
        "seconds": round(time.time() - t0, 1)})
    save(cal, out)
    log.info("DR2 calibration from %d validation samples x %d windows in %.1f s: %s",
             max(h.size for h in haps) // 2, n_windows, time.time() - t0, out)
    return cal


@dataclasses.dataclass
class _EpochState:
    """What an epoch carries from batch to batch, and what a resume state restores."""

    model: VcfBert
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    global_step: int
    running: _Running
    next_batch: int = 0
    average: WeightAverage | None = None  # train.weight_average_decay > 0


@dataclasses.dataclass
class _EpochData:
    """The epoch's inputs: haplotypes per split, masks, and the batches (specs)."""

    train_haps: list[np.ndarray]
    val_haps: list[np.ndarray]
    masks: list[np.ndarray]
    final_masks: list[np.ndarray]
    specs: list[Any]


def _start_state(previous_checkpoint: str, cfg: TrainConfig, device: str,
                 epoch: int) -> _EpochState:
    """Model, optimiser and scheduler as the previous epoch left them; the epoch's seed."""
    prev = load_checkpoint(previous_checkpoint)
    model = model_from_checkpoint(prev).to(device)
    model.train()
    opt = torch.optim.AdamW(parameter_groups(model, cfg), lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup_steps))
    if prev.get("optimizer"):
        opt.load_state_dict(prev["optimizer"])
        sched.load_state_dict(prev["scheduler"])
    average = None
    if cfg.weight_average_decay > 0:
        # the previous epoch's checkpoint holds the average; training goes on from the raw
        # weights beside it (none in init_model's: the average starts at the initial weights)
        carried = (prev.get("extra") or {}).get(WEIGHT_AVERAGE)
        if carried:
            average = WeightAverage(cfg.weight_average_decay, prev["model"],
                                    int(carried["updates"]))
            model.load_state_dict(carried["train_model"])
        else:
            average = WeightAverage.of_model(model, cfg.weight_average_decay)
    torch.manual_seed(cfg.seed * 1000 + epoch)
    return _EpochState(model, opt, sched, int(prev.get("step", 0)), _Running(),
                       average=average)


def _epoch_data(chroms: list[Chromosome], split_tsv: str, masks: list[str],
                final_masks: list[str], cfg: TrainConfig, epoch: int) -> _EpochData:
    split = read_split(split_tsv)
    train_samples = set(split.loc[split["split"] == "train", "sample"])
    val_samples = set(split.loc[split["split"] == "val", "sample"])
    train_haps = [_train_haps(c, train_samples) for c in chroms]
    # batch_size is the global batch: with several processes each takes its share of the
    # queries and gradients are summed, so the update equals the single-process one
    specs = epoch_batches(chroms, train_haps, batch_size=cfg.batch_size, seed=cfg.seed,
                          epoch=epoch, max_batches=cfg.max_batches_per_epoch)
    if not specs:
        raise InputError("no training batch: the reference panel has no training sample")
    return _EpochData(train_haps=train_haps, val_haps=[_train_haps(c, val_samples) for c in chroms],
                      masks=[read_mask(p)[0] for p in masks],
                      final_masks=[read_mask(p)[0] for p in final_masks], specs=specs)


def _resume(state: _EpochState, resume_file: Path, fingerprint: str, epoch: int,
            n_batches: int) -> None:
    """Continue from a resume state of this same epoch and inputs, if there is one."""
    if not resume_file.exists():
        return
    saved = load_checkpoint(resume_file)
    if saved["extra"].get("fingerprint") != fingerprint:
        log.info("ignoring a resume state of other inputs: %s", resume_file)
        return
    state.model.load_state_dict(saved["model"])
    state.opt.load_state_dict(saved["optimizer"])
    state.sched.load_state_dict(saved["scheduler"])
    set_rng_state(saved["rng"])
    state.next_batch = int(saved["extra"]["next_batch"])
    state.global_step = int(saved["step"])
    state.running = _Running(saved["extra"]["running"])
    if state.average is not None:
        state.average = WeightAverage.from_state(state.average.decay,
                                                 saved["extra"][WEIGHT_AVERAGE])
    log.info("resuming epoch %d at batch %d of %d", epoch, state.next_batch, n_batches)


def _batch_loss(state: _EpochState, item: dict[str, Any], chrom: Chromosome, layout: Any,
                searcher: KeySearcher, cfg: TrainConfig, device: str, epoch: int, rank: int,
                world_size: int) -> tuple[torch.Tensor, torch.Tensor | None, Any, int]:
    """Forward and backward pass of this process's share of one batch.

    Returns (loss averaged over every process, logits float [b, n] or None, the batch,
    number of query haplotypes here).
    """
    model = state.model
    arrays, obs, haps = item["arrays"], item["slot_observed"], item["haps"]
    if world_size > 1:
        haps = np.array_split(haps, world_size)[rank]
    qslots = arrays.ref_slots[haps]
    keys = query_keys(model, layout, qslots, obs, device=device)
    forced = None
    if cfg.match_states:
        cand, forced = _with_match_states(searcher, layout, arrays, obs, qslots, keys, haps,
                                          model.cfg.k_retrieve, cfg.match_states)
    else:
        cand = searcher.search(keys, model.cfg.k_retrieve, own_sample(haps))
    n_h = chrom.n_haplotypes
    batch = assemble_batch(
        layout, arrays, obs, chrom.position, qslots, cand,
        slot_af=leave_one_out_af(arrays.ac_slots, arrays.ref_slots, haps, n_h),
        site_af=leave_one_out_af(arrays.ac_core, arrays.ref_core, haps, n_h),
        query_core=arrays.ref_core[haps], maf_scheme=cfg.maf_weighting,
        panel_af_core=chrom.af[layout.core_start:layout.core_end],
        sites=_site_subset(layout.n_sites, cfg.max_sites_per_batch, cfg.seed, epoch,
                           item["index"]),
        cand_forced=forced,
    ).to(device)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                        enabled=device.startswith("cuda")):
        logits, _ = model(batch, with_loss=False) if haps.size else (None, None)
    loss_sum, weight = (weighted_loss_parts(logits.float(), batch.targets, batch.loss_mask,
                                            batch.site_weight, cfg.loss) if haps.size else
                        (torch.zeros((), device=device), torch.zeros((), device=device)))
    weight = _allreduce_scalar(weight.detach(), world_size)
    loss = loss_sum / weight.clamp_min(1e-8)
    if haps.size:
        (loss / cfg.grad_accum_steps).backward()
    return _allreduce_scalar(loss.detach(), world_size), logits, batch, int(haps.size)


def _with_match_states(searcher: KeySearcher, layout: WindowLayout, arrays: WindowArrays,
                       obs: np.ndarray, qslots: np.ndarray, keys: np.ndarray, haps: np.ndarray,
                       k: int, n_match: int) -> tuple[np.ndarray, np.ndarray]:
    """A training batch's ``k`` candidates with ``n_match`` of them by match length around
    the core's anchors under the epoch's mask (:func:`vcfbert.match_states.merge_match_states`,
    as at imputation), and which those are (re-scoring keeps them).

    Returns:
        (cand int64 [b, k], forced bool [b, k]).
    """
    from .index import index_vectors
    from .match_states import core_anchors, forbidden_haplotypes, merge_match_states

    exclude = own_sample(haps)
    cand, sim = searcher.search_scored(keys, k, exclude)
    forbidden = forbidden_haplotypes(haps.size, arrays.ref_slots.shape[0], exclude,
                                     searcher.never)
    ids, _, from_match = merge_match_states(
        qslots, obs, arrays.ref_slots, index_vectors(searcher.index), keys, cand, sim,
        core_anchors(layout.core_slots), n_match, forbidden)
    return ids, from_match


def _optimiser_step(state: _EpochState, cfg: TrainConfig, world_size: int) -> None:
    if world_size > 1:
        _allreduce_grads(state.model)
    torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
    state.opt.step()
    state.sched.step()
    state.opt.zero_grad(set_to_none=True)
    state.global_step += 1
    if state.average is not None:
        state.average.update(state.model)


def _save_resume(state: _EpochState, resume_file: Path, epoch: int, fingerprint: str,
                 done: int) -> None:
    save_checkpoint(resume_file, state.model, epoch=epoch, step=state.global_step,
                    optimizer=state.opt, scheduler=state.sched, rng=rng_state(),
                    extra={"fingerprint": fingerprint, "next_batch": done,
                           "running": state.running.s,
                           **({WEIGHT_AVERAGE: state.average.state()}
                              if state.average is not None else {})})


def _finish_epoch(state: _EpochState, metrics: dict[str, Any], *, chroms: list[Chromosome],
                  data: _EpochData, cfg: TrainConfig, device: str, epoch: int,
                  out_checkpoint: str, out_metrics: str, partial: Path, t_start: float,
                  cache: WindowArrayCache) -> None:
    """Validate (rank 0; ``cache``: the window arrays training already read), write the
    checkpoint, key encoder and metrics, drop the resume state."""
    t_val = time.time()
    averaged = (state.average.swapped_in(state.model) if state.average is not None
                else contextlib.nullcontext(None))
    with averaged as raw:  # the averaged weights are validated and saved, if any
        metrics.update(validate(state.model, chroms, data.val_haps, data.final_masks,
                                max_haplotypes=cfg.val_max_haplotypes, device=device,
                                cache=cache, match_states=cfg.match_states,
                                max_windows=cfg.val_max_windows))
        metrics["val_seconds"] = round(time.time() - t_val, 2)
        metrics["wall_seconds"] = round(time.time() - t_start, 2)
        extra = ({WEIGHT_AVERAGE: {"train_model": raw, "updates": state.average.updates}}
                 if raw is not None else None)
        save_checkpoint(out_checkpoint, state.model, epoch=epoch, step=state.global_step,
                        optimizer=state.opt, scheduler=state.sched,
                        train_config=dataclasses.asdict(cfg), metrics=metrics,
                        rng=rng_state(), extra=extra)
        keyencoder.save(keyencoder.from_model(state.model),
                        keyencoder.companion_path(out_checkpoint))
    write_text_atomic(out_metrics, json.dumps(metrics, indent=1, sort_keys=True, default=float))
    resume_file = partial / "resume.pt"
    if resume_file.exists():
        resume_file.unlink()
    if partial.exists() and not any(partial.iterdir()):
        partial.rmdir()
    log.info("epoch %d: %s", epoch, {k: (round(v, 4) if isinstance(v, float) else v)
                                     for k, v in metrics.items()})


class _ShardSearchers:
    """The epoch's index shards, loaded on first use: ``(chromosome i, window) -> searcher``."""

    def __init__(self, chroms: list[Chromosome], index_paths: dict[tuple[str, str], str],
                 d_key: int, device: str) -> None:
        self.chroms, self.paths, self.d_key, self.device = chroms, index_paths, d_key, device
        self.loaded: dict[tuple[str, str], KeySearcher] = {}

    def __call__(self, ci: int, wid: str) -> KeySearcher:
        key = (self.chroms[ci].contig, wid)
        if key not in self.loaded:
            index, _ = load_index(self.paths[key], expect_count=self.chroms[ci].n_haplotypes,
                                  expect_dim=self.d_key)
            chrom = self.chroms[ci]
            self.loaded[key] = KeySearcher(index, self.device,
                                           never=chrom.second_copies(chrom.layout(wid)))
        return self.loaded[key]


def train_epoch(*, epoch: int, previous_checkpoint: str, chroms: list[Chromosome],
                masks: list[str], final_masks: list[str], index_paths: dict[tuple[str, str], str],
                split_tsv: str, out_checkpoint: str, out_metrics: str, partial_dir: str,
                cfg: TrainConfig, device: str = "auto", progress: bool = True,
                rank: int = 0, world_size: int = 1,
                stop_after_batches: int = 0) -> dict[str, Any] | None:
    """Train one epoch; see the module docstring. Returns the epoch's metrics.

    With ``stop_after_batches`` > 0, stop after that many batches of this call, leave a resume
    state and return None (for time-limited jobs; a later call finishes the epoch).
    """
    device = pick_device(device)
    t_start = time.time()
    state = _start_state(previous_checkpoint, cfg, device, epoch)
    data = _epoch_data(chroms, split_tsv, masks, final_masks, cfg, epoch)
    n_batches = len(data.specs)
    partial = Path(partial_dir)
    resume_file = partial / "resume.pt"
    fingerprint = _fingerprint([previous_checkpoint, *masks, split_tsv, *index_paths.values()],
                               {"epoch": epoch, "cfg": dataclasses.asdict(cfg),
                                "world_size": world_size})
    _resume(state, resume_file, fingerprint, epoch, n_batches)
    start = state.next_batch
    dataset = EpochBatches(chroms, data.specs, data.masks,
                           cache_bytes=int(cfg.window_cache_gib * 2**30))
    dataset.warm_cache(start)  # each window read once, in order (batches come in random order)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, range(start, n_batches)), batch_size=1,
        shuffle=False, num_workers=cfg.num_workers, collate_fn=identity_collate,
        multiprocessing_context="fork" if cfg.num_workers > 0 else None,
        persistent_workers=False)
    searcher = _ShardSearchers(chroms, index_paths, state.model.cfg.d_key, device)
    bar = tqdm(total=n_batches, initial=start, desc=f"EP_Train:{epoch}", file=sys.stderr,
               disable=not progress, mininterval=1.0 if sys.stderr.isatty() else 15.0,
               dynamic_ncols=True)
    state.opt.zero_grad(set_to_none=True)
    for item in loader:
        t0 = time.time()
        i, ci = item["index"], item["chrom"]
        loss, logits, batch, n_q = _batch_loss(
            state, item, chroms[ci], dataset.layout(ci, item["window_id"]),
            searcher(ci, item["window_id"]), cfg, device, epoch, rank, world_size)
        if (i + 1) % cfg.grad_accum_steps == 0 or i + 1 == n_batches:
            _optimiser_step(state, cfg, world_size)
        if n_q:
            state.running.add(float(loss), logits.detach().float(), batch, time.time() - t0)
        bar.update(1)
        bar.set_postfix(loss=f"{state.running.loss:.4f}", f1=f"{state.running.f1:.3f}",
                        lr=f"{state.sched.get_last_lr()[0]:.2e}")
        done = i + 1
        pause = bool(stop_after_batches) and done - start >= stop_after_batches
        if ((pause or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0))
                and done < n_batches and rank == 0):
            _save_resume(state, resume_file, epoch, fingerprint, done)
        if pause and done < n_batches:
            bar.close()
            log.info("paused epoch %d after batch %d of %d", epoch, done, n_batches)
            return None
    bar.close()
    metrics: dict[str, Any] = {
        "epoch": epoch, "step": state.global_step, "train_loss": state.running.loss,
        "train_f1": state.running.f1, "lr": state.sched.get_last_lr()[0],
        "haplotype_windows_per_s": state.running.s["windows"]
        / max(state.running.s["seconds"], 1e-9) * world_size,
        "train_seconds": round(time.time() - t_start, 2), "device": device,
        "batches": n_batches,
    }
    if rank == 0:
        _finish_epoch(state, metrics, chroms=chroms, data=data, cfg=cfg, device=device,
                      epoch=epoch, out_checkpoint=out_checkpoint, out_metrics=out_metrics,
                      partial=partial, t_start=t_start, cache=dataset.window_cache())
    return metrics


def _site_subset(n: int, limit: int, seed: int, epoch: int, batch: int) -> np.ndarray | None:
    """A uniform random subset of ``limit`` of the ``n`` core sites (None: all), seeded by
    the batch, so training cost does not grow with the core's variant density."""
    if not limit or n <= limit:
        return None
    rng = np.random.default_rng([seed, epoch, batch, 7])
    return np.sort(rng.choice(n, size=limit, replace=False))


def _allreduce_grads(model: torch.nn.Module) -> None:
    """Sum gradients over processes (the loss is already normalised by the global weight)."""
    import torch.distributed as dist

    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def _allreduce_scalar(x: torch.Tensor, world_size: int) -> torch.Tensor:
    if world_size == 1:
        return x
    import torch.distributed as dist

    x = x.clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x
