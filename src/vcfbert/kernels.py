"""Compile the package's numba kernels before the jobs that need them (rule compile_kernels).

The kernels are compiled on first use and cached on disk (``cache=True``: next to the sources,
or in ``NUMBA_CACHE_DIR``). In a fresh install the first training epoch paid ~9 s for them on
the workflow's critical path (``ooa_speed``, 2 cores), while the second core sat idle beside
the reference parsing. :func:`compile_kernels` runs the code paths of training, validation,
imputation, VCF writing and evaluation once on a tiny synthetic window, which compiles (or
loads from the cache) every kernel with the argument types the jobs use; the jobs then load
them from the cache. Parsing (:mod:`vcfbert.io`) compiles its own kernels: it runs first.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)


def _tiny_window(seed: int = 0):
    """(position int64 [V], layout, WindowArrays, slot_observed bool [m]) of a random
    48-haplotype window whose every part (flanks, core, missing slots) is non-empty."""
    from .layout import make_layout
    from .windowdata import WindowArrays

    rng = np.random.default_rng(seed)
    n_var, n_h = 120, 48
    position = np.arange(1, n_var + 1, dtype=np.int64) * 1_000
    typed = np.arange(0, n_var, 3, dtype=np.int64)
    layout = make_layout(position, typed, 0, n_var, n_var // 4, 3 * n_var // 4)
    haps = (rng.random((n_h, n_var)) < rng.random(n_var) * 0.5).astype(np.int8)
    ref_slots = np.ascontiguousarray(haps[:, layout.slot_index])
    ref_core = np.ascontiguousarray(haps[:, layout.core_start:layout.core_end])
    arrays = WindowArrays(ref_slots, ref_core, ref_slots.sum(0, dtype=np.int32),
                          ref_core.sum(0, dtype=np.int32))
    observed = rng.random(layout.n_slots) < 0.9
    return position, layout, arrays, observed


def _tiny_model():
    from .model import ModelConfig, VcfBert

    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, d_key=16, k_retrieve=12,
                      k_keep=10, max_slots=64, max_core_dist=16)
    return VcfBert(cfg)


def _searcher(model, layout, arrays, observed):
    from .encode import query_keys
    from .index import KeySearcher, flat_index

    keys = query_keys(model, layout, arrays.ref_slots, observed)
    return KeySearcher(flat_index(keys), "cpu")


def _training_and_inference() -> None:
    """A training step (forward and backward through the copying HMM, states by match
    length), validation (panel haplotypes) and imputation (targets, leave-one-out at the
    slots)."""
    import torch

    from .model.network import weighted_loss_parts
    from .predict import predict_window
    from .train import TrainConfig, training_batch

    position, layout, arrays, observed = _tiny_window()
    torch.manual_seed(0)
    model = _tiny_model()
    searcher = _searcher(model, layout, arrays, observed)
    cfg = TrainConfig(match_states=4)
    haps = np.arange(0, 8, dtype=np.int64)
    batch = training_batch(model, layout, arrays, observed, haps, searcher, cfg,
                           position=position,
                           panel_af_core=arrays.ac_core / arrays.ref_core.shape[0], sites=None)
    logits, _ = model(batch, with_loss=False)
    loss, weight = weighted_loss_parts(logits, batch.targets, batch.loss_mask,
                                       batch.site_weight, cfg.loss)
    (loss / weight.clamp_min(1e-8)).backward()
    model.eval()
    predict_window(model, layout, arrays, observed, position, arrays.ref_slots[haps],
                   searcher, panel_haps=haps, index_is_current=True, match_states=4)
    targets = arrays.ref_slots[8:16].copy()
    targets[0, 0] = -1  # a missing genotype
    predict_window(model, layout, arrays, observed, position, targets, searcher,
                   index_is_current=True, slot_loo=True, match_states=4)


def _vcf_and_evaluation() -> None:
    """The imputed VCF's writer, then the evaluation reading it back (as imputed VCF and as
    truth), on a tiny chromosome with a haploid sample."""
    import pandas as pd

    from .evaluate_stream import evaluate
    from .imputed_vcf import ChromosomeDosages, write_imputed_vcf

    rng = np.random.default_rng(1)
    n_var, n_samples = 40, 6
    position = np.arange(1, n_var + 1, dtype=np.int64) * 100
    alleles = np.array([["A", "G"]] * n_var)
    typed = np.arange(n_var) % 4 == 0
    chrom = ChromosomeDosages(
        contig="chrK", position=position, alleles=alleles,
        ids=np.array(["."] * n_var), hap_prob=rng.random((2 * n_samples, n_var), np.float32),
        typed=typed, haploid_samples=np.arange(n_samples) == 0,
        haploid_variants=np.ones(n_var, bool),
        er2=np.where(typed, 0.9, np.nan), dr2=np.full(n_var, np.nan))
    sites = pd.DataFrame({"contig": "chrK", "position": position, "ref": "A", "alt": "G",
                          "ref_af": rng.random(n_var) * 0.5, "typed": typed})
    with tempfile.TemporaryDirectory(prefix="vcfbert-kernels-") as tmp:
        vcf = os.path.join(tmp, "tiny.vcf.gz")
        write_imputed_vcf(vcf, [chrom], [f"s{i}" for i in range(n_samples)],
                          format_fields=("HDS", "AP1", "AP2"))
        evaluate(vcf, vcf, sites, tmp_dir=tmp)


PARTS: dict[str, Callable[[], None]] = {
    "training_and_inference": _training_and_inference,
    "vcf_and_evaluation": _vcf_and_evaluation,
}


def compile_kernels() -> dict[str, float]:
    """Run every part of :data:`PARTS` once (compiling the kernels they call, or loading
    them from numba's cache); returns the seconds each took."""
    seconds = {}
    for name, part in PARTS.items():
        t0 = time.time()
        part()
        seconds[name] = round(time.time() - t0, 3)
        log.info("kernels of %s ready in %.2f s", name, seconds[name])
    return seconds
