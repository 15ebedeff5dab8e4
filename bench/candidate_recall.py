"""Do the copying states hold the carriers of a haplotype's rare alleles? Retrieval against
longest matches around the core (the IMPUTE5/PBWT way of choosing states).

    python bench/candidate_recall.py <run> --windows w0003,w0006,w0009 [--k 384] [--samples 48]
        [--match 96]

On a finished workflow run, for held-out panel haplotypes (validation samples, their own sample
excluded, as the DR2 calibration imputes them) and each window's core, it compares three sets of
``k`` copying states:

* ``retrieval``: the top ``k`` of the window's keys by inner product (what the imputation's
  index returns, with the final weights and the final mask);
* ``longest``: the ``k`` haplotypes with the longest exact match around the core's centre
  (left + right runs over the observed typed sites, the model's own match-run feature;
  ties broken by key similarity);
* ``half``: the top ``k / 2`` of each, the rest filled from retrieval;
* ``anchored``: the imputation's states with ``impute.match_states: --match`` (the longest
  matches around anchors spread over the core, taken in turn, then retrieval's;
  :func:`vcfbert.match_states.merge_match_states`).

For every rare ALT allele a query carries at an untyped core site (ALT frequency in the rest of
the panel in (0, 0.001) and [0.001, 0.005)), it reports the share that at least one state
carries (no state carrying it: the HMM cannot copy it) and the mean number of carriers among
the states. A diagnostic outside the workflow (the default model trains and imputes with the
anchored states).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--windows", required=True)
    ap.add_argument("--chrom", default="20")
    ap.add_argument("--k", type=int, default=384)
    ap.add_argument("--samples", type=int, default=48)
    ap.add_argument("--match", type=int, default=96, help="match states of the anchored set")
    args = ap.parse_args()

    from vcfbert import keyencoder
    from vcfbert.masks import read_mask
    from vcfbert.match_states import centre_runs, core_anchors, merge_match_states
    from vcfbert.split import read_split
    from vcfbert.train import _train_haps, spread_samples
    from vcfbert.windowdata import Chromosome, query_tokens, read_window_arrays

    res = args.run / "results"
    c = args.chrom
    chrom = Chromosome.load(c, str(res / f"ingest/{c}/reference.h5"),
                            str(res / f"ingest/{c}/targets.h5"), str(res / f"windows/{c}.tsv"))
    params = keyencoder.load(res / "train/model.keys.npz")
    observed = read_mask(res / f"masks/{c}/final.h5")[0]
    split = read_split(res / "train/split.tsv")
    val = set(split.loc[split["split"] == "val", "sample"])
    haps = spread_samples(_train_haps(chrom, val), args.samples)
    bins = {"[0,0.001)": (0.0, 0.001), "[0.001,0.005)": (0.001, 0.005)}
    tally = {(name, b): [0, 0, 0.0, 0.0] for name in ("retrieval", "longest", "half", "anchored")
             for b in bins}
    for wid in args.windows.split(","):
        layout = chrom.layout(wid)
        arrays = read_window_arrays(chrom.reference_h5, layout)
        slot_obs = chrom.slot_mask(observed, layout)
        keys = keyencoder.encode_keys(params, query_tokens(arrays.ref_slots, slot_obs),
                                      layout.slot_core_dist)
        sim = keys[haps] @ keys.T  # [b, H]
        own = (haps // 2)[:, None] == (np.arange(keys.shape[0]) // 2)[None, :]
        sim[own] = -np.inf
        core = layout.core_slots
        centre = int(core[len(core) // 2]) if core.size else layout.n_slots // 2
        runs = np.empty((haps.size, arrays.ref_slots.shape[0]), np.int32)
        centre_runs(arrays.ref_slots[haps], slot_obs, arrays.ref_slots, centre, runs)
        runs = runs.astype(np.float64)
        runs[own] = -np.inf
        by_sim = np.argsort(-sim, axis=1, kind="stable")
        by_run = np.lexsort((-sim, -runs), axis=1)  # longest first, then most similar
        k = args.k
        sets = {"retrieval": by_sim[:, :k], "longest": by_run[:, :k]}
        half = []
        for r in range(len(haps)):
            chosen = list(dict.fromkeys(list(by_run[r, :k // 2]) + list(by_sim[r, :k])))[:k]
            half.append(chosen)
        sets["half"] = np.array(half)
        top = by_sim[:, :k]
        sets["anchored"] = merge_match_states(
            arrays.ref_slots[haps], slot_obs, arrays.ref_slots, keys, keys[haps], top,
            np.take_along_axis(sim, top, 1).astype(np.float32), core_anchors(core),
            args.match, own)[0]
        typed = np.zeros(layout.n_sites, bool)  # the core's typed sites are not imputed
        in_core = chrom.typed_index[(chrom.typed_index >= layout.core_start)
                                    & (chrom.typed_index < layout.core_end)]
        typed[in_core - layout.core_start] = True
        truth = arrays.ref_core[haps]  # [b, n]
        own_ac = arrays.ref_core[(haps // 2) * 2].astype(np.int32) \
            + arrays.ref_core[(haps // 2) * 2 + 1]
        af = (arrays.ac_core[None, :] - own_ac) / (chrom.n_haplotypes - 2)
        for name, states in sets.items():
            for r in range(len(haps)):
                carried = (truth[r] == 1) & ~typed & (af[r] > 0)
                cand = arrays.ref_core[states[r]]  # [k, n]
                n_carry = (cand == 1).sum(0)
                for b, (lo, hi) in bins.items():
                    sel = carried & (af[r] >= lo) & (af[r] < hi)  # a rare ALT
                    t = tally[(name, b)]
                    t[0] += int(sel.sum())
                    t[1] += int((n_carry[sel] > 0).sum())
                    t[2] += float(n_carry[sel].sum())
                    t[3] += float((arrays.ac_core[sel] - own_ac[r][sel]).sum())
        print(f"{wid}: done", flush=True)
    print(f"\n{len(haps)} held-out haplotypes x {len(args.windows.split(','))} windows, "
          f"k = {args.k}\n")
    print("| states | ALT frequency | rare ALT alleles carried | share with a carrier among "
          "the states | mean carriers among the states | mean carriers in the panel |")
    print("|---|---|---|---|---|---|")
    for (name, b), (n, hit, carriers, panel) in tally.items():
        print(f"| {name} | {b} | {n} | {hit / max(n, 1):.4f} | {carriers / max(n, 1):.2f} "
              f"| {panel / max(n, 1):.2f} |")


if __name__ == "__main__":
    main()
