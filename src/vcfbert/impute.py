"""Imputation of the targets: per window, ligation per chromosome, and the imputed VCF.

Per-window files (``results/impute/{chrom}/{window}.h5``) hold ALT probabilities
``hap_prob`` float32 [2T, n] for the window's core sites. Ligation concatenates the cores
(they tile the chromosome, so no averaging is needed) and puts the observed alleles back at
typed sites; the result is ``results/impute/{chrom}.h5`` with ``hap_prob`` [2T, V] and
``typed`` [V].
"""

from __future__ import annotations

import logging
import os
import time

import h5py
import numpy as np

from .atomic import atomic_path
from .errors import InputError, IntegrityError

log = logging.getLogger(__name__)


def impute_window(*, checkpoint: str | None, method: str, contig: str, window_id: str,
                  reference_h5: str, targets_h5: str, windows_tsv: str, mask_h5: str,
                  index_path: str | None, out: str, batch_size: int = 64,
                  device: str = "auto") -> None:
    """Impute the core sites of one window for every target haplotype."""
    from .checkpoint import load_checkpoint, model_from_checkpoint
    from .data import Chromosome, read_window_arrays
    from .index import KeySearcher, load_index
    from .io.h5store import read_targets
    from .masks import read_mask
    from .predict import predict_window
    from .train import pick_device

    if method != "model":
        raise InputError(f"impute.method {method!r} is not known (use 'model')")
    t0 = time.time()
    dev = pick_device(device)
    chrom = Chromosome.load(contig, reference_h5, targets_h5, windows_tsv)
    layout = chrom.layout(window_id)
    arrays = read_window_arrays(reference_h5, layout)
    targets = read_targets(targets_h5)
    observed, _ = read_mask(mask_h5)
    slot_obs = chrom.slot_mask(observed, layout)
    cols = np.searchsorted(targets.variant_ref_index, layout.slot_index)
    query_slots = targets.haplotypes[:, cols]
    model = model_from_checkpoint(load_checkpoint(checkpoint)).to(dev)
    index, _ = load_index(index_path, expect_count=chrom.n_haplotypes,
                          expect_dim=model.cfg.d_key)
    probs = predict_window(model, layout, arrays, slot_obs, chrom.position, query_slots,
                           KeySearcher(index, dev), batch_size=batch_size, device=dev,
                           progress=f"impute {contig}:{window_id}")
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("hap_prob", data=probs.astype(np.float32))
        h5.attrs.update({"window_id": window_id, "contig": contig,
                         "core_start": layout.core_start, "core_end": layout.core_end,
                         "format": "vcfbert-window-imputation"})
    log.info("%s %s: %d haplotypes x %d sites in %.2f s on %s", contig, window_id,
             probs.shape[0], probs.shape[1], time.time() - t0, dev)


def ligate(*, contig: str, reference_h5: str, targets_h5: str, windows_tsv: str,
           window_files: list[str], out: str) -> None:
    """Concatenate the windows' cores of one chromosome and restore observed typed alleles."""
    from .io.h5store import read_targets, read_variant_table
    from .windows import read_windows

    table = read_variant_table(reference_h5)
    n_var = table["position"].size
    targets = read_targets(targets_h5)
    windows = read_windows(windows_tsv)
    by_id = {}
    for path in window_files:
        with h5py.File(path, "r") as h5:
            by_id[str(h5.attrs["window_id"])] = path
    n_h = targets.haplotypes.shape[0]
    hap_prob = np.full((n_h, n_var), np.nan, np.float32)
    for w in windows.itertuples():
        if w.window_id not in by_id:
            raise IntegrityError(f"window {w.window_id} of {contig} has no imputation file")
        with h5py.File(by_id[w.window_id], "r") as h5:
            if (int(h5.attrs["core_start"]), int(h5.attrs["core_end"])) != (w.core_start,
                                                                             w.core_end):
                raise IntegrityError(f"{by_id[w.window_id]}: core does not match the windows "
                                     "table; delete results/impute and re-run")
            hap_prob[:, w.core_start:w.core_end] = h5["hap_prob"][()]
    if np.isnan(hap_prob).any():
        raise IntegrityError(f"{contig}: some variants were not imputed (window cores do not "
                             "cover the chromosome)")
    typed = np.zeros(n_var, bool)
    typed[targets.variant_ref_index] = True
    obs = targets.haplotypes
    cols = targets.variant_ref_index
    hap_prob[:, cols] = np.where(obs >= 0, obs.astype(np.float32), hap_prob[:, cols])
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("hap_prob", data=hap_prob, compression="gzip", compression_opts=1)
        h5.create_dataset("typed", data=typed)
        h5.create_dataset("sample_id", data=np.array(targets.sample_id, dtype=object),
                          dtype=h5py.string_dtype("utf-8"))
        h5.attrs.update({"contig": contig, "format": "vcfbert-chromosome-imputation"})
    log.info("%s: ligated %d windows, %d variants, %d typed", contig, len(windows), n_var,
             typed.sum())


def write_vcf(*, chromosome_files: list[str], reference_h5: list[str], out: str,
              command: str) -> None:
    """Write ``imputed.vcf.gz`` (+ ``.tbi``) for all chromosomes, in the reference's order."""
    from .imputed_vcf import ChromosomeDosages, write_imputed_vcf
    from .io.h5store import read_variant_table

    chroms = []
    samples: list[str] | None = None
    for cpath, rpath in zip(chromosome_files, reference_h5, strict=True):
        table = read_variant_table(rpath)
        with h5py.File(cpath, "r") as h5:
            these = list(h5["sample_id"].asstr()[()])
            if samples is not None and these != samples:
                raise InputError("the target samples differ between chromosomes; give one "
                                 "target VCF with the same samples on every chromosome")
            samples = these
            chroms.append(ChromosomeDosages(
                contig=str(h5.attrs["contig"]), position=table["position"],
                alleles=table["alleles"], ids=table["ids"], hap_prob=h5["hap_prob"][()],
                typed=h5["typed"][()]))
    assert samples is not None
    write_imputed_vcf(out, chroms, samples, command=command)
    log.info("wrote %s: %d chromosomes, %d variants, %d samples", out, len(chroms),
             sum(c.position.size for c in chroms), len(samples))


def ensure_parent(path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
