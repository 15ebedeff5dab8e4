"""Why the windows and the retrieval look the way they do: ablations on a simulated scenario.

Each row imputes the scenario's targets and scores them with vcfbert's evaluator:

* ``flanks``: the position-centred longest-match rule, but copying only from the K candidates
  a window-level key retrieves (center-weighted Hamming, like the model's initial key), for
  several flank sizes. Short flanks cap the match runs the rule can see.
* ``copying``: the *untrained* model (initial weights: a Li–Stephens copier over the retrieved
  candidates) for several numbers of kept candidates k and initial effective sizes Ne.

Usage (scenario data from ``bench/run.py <scenario>``, i.e. ``bench/out/<scenario>/data``):

    python bench/ablation_retrieval.py ooa_phased [--only flanks|copying]

Writes ``bench/out/<scenario>/ablation_retrieval.tsv``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import torch

from vcfbert.baselines import longest_match
from vcfbert.encode import reference_keys
from vcfbert.evaluate import BIN_LABELS, _align, maf_bin, read_truth, score, site_table
from vcfbert.index import KeySearcher
from vcfbert.ingest import parse_reference, parse_targets
from vcfbert.io.h5store import read_reference, read_targets
from vcfbert.model import ModelConfig, VcfBert
from vcfbert.predict import predict_window
from vcfbert.windowdata import Chromosome, read_window_arrays
from vcfbert.windows import define_windows, write_windows

ROOT = Path(__file__).resolve().parents[1]


def r2_by_bin(prob: np.ndarray, sites: pd.DataFrame, truth: np.ndarray) -> list[float]:
    dose = (prob[0::2] + prob[1::2]).T
    bins = maf_bin(sites["ref_af"].to_numpy())
    untyped = ~sites["typed"].to_numpy()
    out = []
    for label in BIN_LABELS:
        sel = (bins == label) & untyped
        out.append(round(score(dose[sel], dose[sel], truth[sel])["r2"], 4))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario")
    ap.add_argument("--only", choices=["flanks", "copying"])
    a = ap.parse_args()
    torch.set_num_threads(2)
    out = ROOT / "bench/out" / a.scenario
    data = out / "data"
    tmp = Path(tempfile.mkdtemp())
    contig = "20"
    parse_reference(data / "reference.vcf.gz", contig, tmp / "ref.h5")
    parse_targets(data / "targets.vcf.gz", tmp / "ref.h5", contig, tmp / "tgt.h5",
                  tmp / "a.tsv", tmp / "b.tsv")
    ref, tgt = read_reference(tmp / "ref.h5"), read_targets(tmp / "tgt.h5")
    sites = site_table([str(tmp / "ref.h5")], [str(tmp / "tgt.h5")])
    truth, _, _, _ = _align(sites, read_truth(data / "truth.vcf.gz"), tgt.sample_id)
    typed = tgt.variant_ref_index
    rows = []
    if a.only in (None, "flanks"):
        for flank in (16, 32, 64, 128):
            windows = define_windows(ref.position, typed, core_sites=32, flank_sites=flank)
            prob = np.zeros((tgt.haplotypes.shape[0], ref.n_variants), np.float32)
            for w in windows.itertuples():
                sel = (typed >= w.start_idx) & (typed < w.end_idx)
                slots = typed[sel]
                k = np.arange(slots.size)
                inc = np.flatnonzero((slots >= w.core_start) & (slots < w.core_end))
                dist = np.where(k < inc[0], inc[0] - k, np.where(k > inc[-1], k - inc[-1], 0))
                q = tgt.haplotypes[:, sel].astype(np.int16)
                R = ref.haplotypes[:, slots].astype(np.int16)
                sim = (np.where(q < 0, 0, 2 * q - 1) * 0.97**dist) @ (2 * R - 1).T
                top = np.argsort(-sim, axis=1, kind="stable")[:, :128]
                core = np.arange(w.core_start, w.core_end)
                interval = np.searchsorted(slots, core)
                for i in range(q.shape[0]):
                    c = top[i]
                    prob[i, core] = longest_match(q[i:i + 1], R[c], ref.haplotypes[c][:, core],
                                                  interval)[0]
            rows.append({"ablation": "flanks", "setting": f"flank_sites={flank}, K=128",
                         **dict(zip(BIN_LABELS, r2_by_bin(prob, sites, truth), strict=True))})
            print(rows[-1], flush=True)
    if a.only in (None, "copying"):
        windows = define_windows(ref.position, typed, core_sites=32, flank_sites=128)
        write_windows(windows, tmp / "w.tsv")
        chrom = Chromosome.load(contig, str(tmp / "ref.h5"), str(tmp / "tgt.h5"),
                                str(tmp / "w.tsv"))
        for k_keep, ne in ((64, 20000), (128, 10000), (128, 20000), (128, 40000),
                           (256, 40000)):
            torch.manual_seed(1)
            model = VcfBert(ModelConfig(k_keep=k_keep, k_retrieve=k_keep + 32, ne_init=ne))
            prob = np.zeros((tgt.haplotypes.shape[0], ref.n_variants), np.float32)
            for wid in windows["window_id"]:
                lay = chrom.layout(wid)
                arr = read_window_arrays(chrom.reference_h5, lay)
                obs = np.ones(lay.n_slots, bool)
                keys = reference_keys(model, lay, arr, obs)
                index = faiss.IndexFlatIP(keys.shape[1])
                index.add(keys)
                qs = tgt.haplotypes[:, np.searchsorted(typed, lay.slot_index)]
                prob[:, lay.core_start:lay.core_end] = predict_window(
                    model, lay, arr, obs, chrom.position, qs, KeySearcher(index))
            prob[:, typed] = np.where(tgt.haplotypes >= 0, tgt.haplotypes, prob[:, typed])
            rows.append({"ablation": "copying (untrained)", "setting": f"k_keep={k_keep}, "
                         f"Ne={ne}", **dict(zip(BIN_LABELS, r2_by_bin(prob, sites, truth),
                                                strict=True))})
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "ablation_retrieval.tsv", sep="\t", index=False)
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
