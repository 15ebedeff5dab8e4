"""DR2 of a finished run with and without the recalibration, against the true per-variant r².

For a run directory of the workflow (``<run>/results``: the final model, its stores, windows
and final masks), this

1. loads the run's ``results/train/dr2_calibration.json`` (``--calibration`` for another file),
   or, when there is none (a run made before the workflow fitted one), fits one on
   ``--fit-samples`` validation samples of the run's final model, as the workflow's
   ``calibrate_dr2`` rule does (:func:`vcfbert.train.calibrate_dr2`, written to ``--workdir``);
2. imputes the targets again, window by window, as the imputation jobs do
   (:func:`vcfbert.impute.predict_cores`, observed alleles put back), and computes from the
   haplotype probabilities the DR2 the writer computes (raw), the conditional DR2 (step 1
   of :mod:`vcfbert.calibration`, no learned map) and the recalibrated DR2 the imputation
   jobs write (typed variants keep the writer's);
3. bins the untyped variants with a defined true r² by DR2 (10 bins of 0.1) and reports the
   mean DR2 and mean true r² per bin and mean |DR2 − true r²| over the bins, variant-weighted —
   as ``bench/calibration.py`` does — next to other methods' per-variant tables (``--compare``).

The true r² comes from a per-variant table of the run's evaluation (``--per-variant``; default
``<run>/results/evaluation/per_variant.tsv.gz``): the dosages do not change, so neither does it.

    python bench/dr2_recalibration.py bench/out/ooa_speed/speed.vcfbert \\
        --per-variant bench/out/ooa_speed/speed.vcfbert_impute.accuracy.pv.tsv.gz \\
        --compare beagle=bench/out/ooa_speed/speed.beagle.accuracy.pv.tsv.gz \\
        --compare minimac4=bench/out/ooa_speed/speed.minimac4.accuracy.pv.tsv.gz

Writes ``--out`` (default ``<workdir>/dr2_recalibration.tsv``): one row per (method, DR2 bin).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vcfbert import calibration  # noqa: E402
from vcfbert.io.h5store import read_variant_table  # noqa: E402

log = logging.getLogger("dr2_recalibration")


def binned(dr2: np.ndarray, true_r2: np.ndarray) -> tuple[pd.DataFrame, float]:
    """(per DR2 bin of 0.1: mean DR2, mean true r², variants; variant-weighted mean
    |DR2 − true r²| over the bins), as ``bench/calibration.py`` computes them."""
    df = pd.DataFrame({"dr2": dr2, "true_r2": true_r2})
    b = np.clip((df["dr2"] * 10).astype(int), 0, 9)
    g = df.groupby(b).agg(dr2=("dr2", "mean"), true_r2=("true_r2", "mean"),
                          n=("dr2", "size")).reset_index(names="bin")
    return g, float(np.average(np.abs(g["dr2"] - g["true_r2"]), weights=g["n"]))


def run_dr2(results: Path, contig: str, label: str, cal: calibration.Recalibration,
            threads: int = 1) -> pd.DataFrame:
    """Per variant of one chromosome: position, REF, ALT, typed, DR2 raw, conditional and
    recalibrated, from the run's final model imputing its targets again."""
    from vcfbert.impute import predict_cores
    from vcfbert.io.h5store import read_targets
    from vcfbert.vcf_pieces import core_dosages
    from vcfbert.windows import read_windows

    ref_h5 = str(results / "ingest" / label / "reference.h5")
    tgt_h5 = str(results / "ingest" / label / "targets.h5")
    windows_tsv = str(results / "windows" / f"{label}.tsv")
    table = read_variant_table(ref_h5)
    targets = read_targets(tgt_h5)
    called = targets.site_called
    n_v = table["position"].size
    typed = np.zeros(n_v, bool)
    sums = np.zeros((len(calibration.SUM_ROWS), n_v))
    for lo, hi, probs, loo, loo_cols in predict_cores(
            checkpoint=str(results / "train/model.pt"),
            key_encoder=str(results / "train/model.keys.npz"), contig=contig,
            window_ids=read_windows(windows_tsv)["window_id"].tolist(), reference_h5=ref_h5,
            targets_h5=tgt_h5, windows_tsv=windows_tsv,
            mask_h5=str(results / "masks" / label / "final.h5"), device="cpu",
            threads=threads, targets=targets):
        core = core_dosages(contig, table, targets, called, lo, hi, probs, loo, loo_cols, None)
        male, region = core.haploid_cells(0, hi - lo)
        typed[lo:hi] = core.typed
        sums[:, lo:hi] = calibration.dr2_sums(core.hap_prob, male, region)
    raw = calibration.plain_dr2(sums)
    cond = np.where(typed, raw, calibration.conditional_dr2(sums))
    recal = np.where(typed, raw, cal.apply(calibration.conditional_dr2(sums), table["af"]))
    return pd.DataFrame({"contig": contig, "position": table["position"],
                         "ref": table["alleles"][:, 0], "alt": table["alleles"][:, 1],
                         "typed_run": typed, "dr2_raw": raw, "dr2_conditional": cond,
                         "dr2_recalibrated": recal})


def the_calibration(results: Path, args: argparse.Namespace) -> calibration.Recalibration:
    """The file given, the run's own, or one fitted now on its validation samples."""
    path = Path(args.calibration) if args.calibration else results / "train/dr2_calibration.json"
    if path.exists():
        log.info("calibration: %s", path)
        return calibration.load(path)
    from vcfbert.train import calibrate_dr2
    from vcfbert.windowdata import Chromosome

    out = Path(args.workdir) / f"dr2_calibration.{args.fit_samples}.json"
    if out.exists():  # fitted before, for this model
        from vcfbert.atomic import sha256_file

        cal = calibration.load(out)
        if cal.source.get("model_sha256") == sha256_file(results / "train/model.pt"):
            log.info("calibration: %s (fitted before)", out)
            return cal
    chroms_tsv = pd.read_csv(results / "ingest/chromosomes.tsv", sep="\t", dtype=str)
    chroms = [Chromosome.load(c, str(results / f"ingest/{w}/reference.h5"),
                              str(results / f"ingest/{w}/targets.h5"),
                              str(results / f"windows/{w}.tsv"))
              for c, w in zip(chroms_tsv["contig"], chroms_tsv["wildcard"], strict=True)]
    t0 = time.time()
    cal = calibrate_dr2(checkpoint=str(results / "train/model.pt"), chroms=chroms,
                        final_masks=[str(results / f"masks/{w}/final.h5")
                                     for w in chroms_tsv["wildcard"]],
                        split_tsv=str(results / "train/split.tsv"), out=str(out),
                        samples=args.fit_samples, device="cpu")
    log.info("fitted on %s validation samples in %.1f s: %s", args.fit_samples or "all",
             time.time() - t0, out)
    return cal


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="run directory (holding results/)")
    ap.add_argument("--per-variant", help="per-variant table with the true r² "
                    "(default <run>/results/evaluation/per_variant.tsv.gz)")
    ap.add_argument("--calibration", help="a dr2_calibration.json (default: the run's, else "
                    "fitted now)")
    ap.add_argument("--fit-samples", type=int, default=300,
                    help="validation samples to fit on when fitting (0: all; default 300, the "
                    "workflow's train.dr2_calibration_samples)")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=PV",
                    help="another method's per-variant table (bench/run.py's *.accuracy.pv.tsv.gz)")
    ap.add_argument("--workdir", default="/tmp/dr2_recalibration")
    ap.add_argument("--out", help="table to write (default <workdir>/dr2_recalibration.tsv)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    results = Path(args.run) / "results"
    cal = the_calibration(results, args)
    print(pd.DataFrame({"maf_bin": calibration.BIN_LABELS, "fitted": cal.fitted,
                        "validation_variants": cal.variants,
                        **{f"conditional {x} ->": [round(float(np.interp(x, kx, ky)), 3)
                                                   for kx, ky in cal.knots]
                           for x in (0.3, 0.5, 0.8, 0.9)}}).to_string(index=False))
    chroms = pd.read_csv(results / "ingest/chromosomes.tsv", sep="\t", dtype=str)
    ours = pd.concat([run_dr2(results, c, w, cal)
                      for c, w in zip(chroms["contig"], chroms["wildcard"], strict=True)])
    pv = pd.read_csv(args.per_variant or results / "evaluation/per_variant.tsv.gz", sep="\t",
                     dtype={"contig": str})
    df = pv.merge(ours, on=["contig", "position", "ref", "alt"], how="inner", validate="1:1")
    if len(df) != len(pv):
        raise SystemExit(f"{len(pv) - len(df)} variants of the per-variant table are not in the run")
    # the VCF carries the recalibrated DR2 at untyped variants and the raw one at typed ones
    # (3 decimals): recomputed with the calibration it was written with, they agree
    written = np.where(df["typed_run"], df["dr2_raw"], df["dr2_recalibrated"])
    off = np.abs(np.round(written, 3) - df["dr2"]).max()
    log.info("DR2 recomputed vs the table's (the VCF's): max |difference| %.4f (small only when "
             "the VCF was written with this calibration)", off)
    sub = df[~df["typed"].astype(bool) & df["true_r2"].notna()]
    methods = {"vcfbert (raw DR2)": sub["dr2_raw"].to_numpy(),
               "vcfbert (conditional DR2, no map)": sub["dr2_conditional"].to_numpy(),
               "vcfbert (recalibrated DR2)": sub["dr2_recalibrated"].to_numpy()}
    truths = {k: sub["true_r2"].to_numpy() for k in methods}
    for spec in args.compare:
        name, path = spec.split("=", 1)
        other = pd.read_csv(path, sep="\t")
        o = other[~other["typed"].astype(bool) & other["true_r2"].notna() & other["dr2"].notna()]
        methods[name], truths[name] = o["dr2"].to_numpy(), o["true_r2"].to_numpy()
    rows = []
    for name, dr2 in methods.items():
        g, err = binned(dr2, truths[name])
        g.insert(0, "method", name)
        rows.append(g)
        below = int((dr2 < 0.9).sum()), int((dr2 < 0.8).sum()), int((dr2 < 0.3).sum())
        print(f"{name:34s} mean |DR2 - true r²| {err:.3f}   variants with DR2 < 0.9 / 0.8 / "
              f"0.3: {below[0]} / {below[1]} / {below[2]} of {dr2.size}")
    out = pd.concat(rows, ignore_index=True)
    print(out.pivot(index="bin", columns="method", values="true_r2").round(3).to_string())
    out_path = args.out or str(Path(args.workdir) / "dr2_recalibration.tsv")
    out.to_csv(out_path, sep="\t", index=False, float_format="%.4f")
    log.info("wrote %s", out_path)


if __name__ == "__main__":
    main()
