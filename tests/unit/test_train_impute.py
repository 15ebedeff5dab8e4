"""Training and imputation on the tiny simulation: keys, shards, an epoch, resume, impute."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vcfbert import keyencoder
from vcfbert.checkpoint import load_checkpoint, model_from_checkpoint
from vcfbert.data import Chromosome, query_tokens
from vcfbert.encode import encode_window, reference_keys
from vcfbert.errors import InputError, IntegrityError
from vcfbert.impute import impute_chunk, write_vcf
from vcfbert.index import KeySearcher, build_index, flat_index
from vcfbert.io.h5store import read_targets, store_samples
from vcfbert.masks import epoch_mask, read_mask, write_mask
from vcfbert.model import VcfBert
from vcfbert.predict import predict_window
from vcfbert.split import split_samples, write_split
from vcfbert.train import TrainConfig, init_model, train_epoch
from vcfbert.windowdata import read_window_arrays
from vcfbert.windows import impute_chunks

MODEL = dict(d_model=16, n_layers=1, n_heads=2, d_ff=32, d_key=32, k_retrieve=24, k_keep=16)


@pytest.fixture(scope="module")
def prepared(tiny_stores, tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    chrom = Chromosome.load("20", tiny_stores["ref"], tiny_stores["tgt"], tiny_stores["windows"])
    samples, pops = store_samples(tiny_stores["ref"])
    write_split(split_samples(samples, pops, val_fraction=0.2, seed=1), d / "split.tsv")
    n_typed = chrom.typed_index.size
    write_mask(d / "m0.h5", epoch_mask(n_typed, 0, "20", 0.1), version="0", contig="20",
               drop_fraction=0.1)
    write_mask(d / "final.h5", np.ones(n_typed, bool), version="final", contig="20",
               drop_fraction=0.0)
    init_model(MODEL, d / "init.pt", seed=3)
    model = model_from_checkpoint(load_checkpoint(d / "init.pt"))
    params = keyencoder.load(keyencoder.companion_path(d / "init.pt"))
    indexes = {}
    for wid in chrom.windows["window_id"]:
        keys = encode_window(params, chrom, wid, str(d / "m0.h5"), d / f"{wid}.npy")
        # numpy keys (index jobs) equal the model's torch keys (queries)
        layout = chrom.layout(wid)
        arrays = read_window_arrays(chrom.reference_h5, layout)
        obs = chrom.slot_mask(read_mask(d / "m0.h5")[0], layout)
        np.testing.assert_allclose(keys, reference_keys(model, layout, arrays, obs), atol=1e-5)
        assert keys.shape == (chrom.n_haplotypes, 32)
        assert np.allclose(np.linalg.norm(keys, axis=1), 1, atol=1e-5)
        build_index(keys, d / f"{wid}.faiss", meta={"epoch": "0"})
        indexes[("20", wid)] = str(d / f"{wid}.faiss")
    return {"d": d, "chrom": chrom, "indexes": indexes}


def _train(prepared, out, cfg_overrides=None, *, epoch=0, previous=None, **kw):
    """An epoch on the tiny simulation (``previous``: the checkpoint it starts from, the
    initial weights by default), written to ``out``; epoch 0's indexes and mask whatever
    ``epoch``."""
    d = prepared["d"]
    cfg = TrainConfig(batch_size=8, max_batches_per_epoch=6, checkpoint_every=2,
                      val_max_haplotypes=8, max_sites_per_batch=64, **(cfg_overrides or {}))
    return train_epoch(epoch=epoch, previous_checkpoint=str(previous or d / "init.pt"),
                       chroms=[prepared["chrom"]], masks=[str(d / "m0.h5")],
                       final_masks=[str(d / "final.h5")], index_paths=prepared["indexes"],
                       split_tsv=str(d / "split.tsv"), out_checkpoint=str(out / "model.pt"),
                       out_metrics=str(out / "metrics.json"), partial_dir=str(out) + ".partial",
                       cfg=cfg, device="cpu", progress=False, **kw)


def _validation_inputs(prepared):
    """(window ids (at least 3), the initial model, the validation haplotypes, the final
    mask) of the tiny simulation."""
    from vcfbert.split import read_split

    d, chrom = prepared["d"], prepared["chrom"]
    ids = list(chrom.windows["window_id"])
    assert len(ids) >= 3
    model = model_from_checkpoint(load_checkpoint(d / "init.pt"))
    split = read_split(d / "split.tsv")
    val = set(split.loc[split["split"] == "val", "sample"])
    haps = np.array([h for i, s in enumerate(chrom.sample_id) if s in val
                     for h in (2 * i, 2 * i + 1)])
    return ids, model, haps, read_mask(d / "final.h5")[0]


def test_epoch_trains_and_reports_metrics(prepared, tmp_path):
    metrics = _train(prepared, tmp_path / "a")
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert saved["epoch"] == 0 and saved["step"] == 6 and saved["batches"] == 6
    for key in ("train_loss", "train_f1", "val_f1", "val_rare_f1", "val_r2_overall", "lr",
                "haplotype_windows_per_s", "wall_seconds"):
        assert key in metrics
    assert 0.5 < metrics["val_r2_overall"] <= 1.0
    before = load_checkpoint(prepared["d"] / "init.pt")["model"]["tok.weight"]
    after = load_checkpoint(tmp_path / "a" / "model.pt")["model"]["tok.weight"]
    assert not torch.equal(before, after)  # the embedding weights changed


def test_epoch_with_match_states_keeps_them(prepared, tmp_path, monkeypatch):
    """With train.match_states every batch carries its states by match length, re-scoring
    keeps all of them, and the epoch trains and validates (with the same states)."""
    forced_counts, dropped = [], []
    rescore = VcfBert.rescore

    def spy(self, batch):
        sim, keep = rescore(self, batch)
        if self.training:
            assert batch.cand_forced is not None
            kept = torch.zeros_like(batch.cand_forced).scatter_(1, keep, True)
            forced_counts.append(int(batch.cand_forced.sum()))
            dropped.append(int((batch.cand_forced & batch.cand_valid & ~kept).sum()))
        return sim, keep

    monkeypatch.setattr(VcfBert, "rescore", spy)
    metrics = _train(prepared, tmp_path / "m", cfg_overrides={"match_states": 3})
    assert len(forced_counts) == 6 and min(forced_counts) > 0 and sum(dropped) == 0
    assert 0.5 < metrics["val_r2_overall"] <= 1.0


def test_interrupted_epoch_resumes_to_identical_weights(prepared, tmp_path):
    _train(prepared, tmp_path / "full")
    assert _train(prepared, tmp_path / "cut", stop_after_batches=3) is None
    assert (tmp_path / "cut.partial" / "resume.pt").exists()
    assert not (tmp_path / "cut" / "model.pt").exists()
    _train(prepared, tmp_path / "cut")
    a = load_checkpoint(tmp_path / "full" / "model.pt")
    b = load_checkpoint(tmp_path / "cut" / "model.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert not (tmp_path / "cut.partial" / "resume.pt").exists()


def test_weight_average_saves_the_average_and_trains_on_the_raw_weights(prepared, tmp_path):
    """With train.weight_average_decay the checkpoint holds the averaged weights and the raw
    ones beside them; averaging leaves the training itself alone (the raw weights equal an
    unaveraged epoch's), a resumed epoch ends with the same average, and the next epoch goes
    on from the raw weights (with the same indexes, the unaveraged sequence's weights)."""
    from vcfbert.weight_average import EXTRA_KEY

    avg_cfg = {"weight_average_decay": 0.9}
    _train(prepared, tmp_path / "plain")
    _train(prepared, tmp_path / "avg", cfg_overrides=avg_cfg)
    plain = load_checkpoint(tmp_path / "plain" / "model.pt")
    avg = load_checkpoint(tmp_path / "avg" / "model.pt")
    carried = avg["extra"][EXTRA_KEY]
    assert carried["updates"] == 6
    for k in plain["model"]:
        assert torch.equal(carried["train_model"][k], plain["model"][k]), k
    assert not torch.equal(avg["model"]["tok.weight"], plain["model"]["tok.weight"])
    # the key encoder beside the checkpoint is the averaged model's
    params = keyencoder.load(keyencoder.companion_path(tmp_path / "avg" / "model.pt"))
    plain_params = keyencoder.load(keyencoder.companion_path(tmp_path / "plain" / "model.pt"))
    assert not np.array_equal(params.table, plain_params.table)
    assert avg["metrics"]["val_r2_overall"] > 0.5

    assert _train(prepared, tmp_path / "cut", cfg_overrides=avg_cfg, stop_after_batches=3) is None
    _train(prepared, tmp_path / "cut", cfg_overrides=avg_cfg)
    resumed = load_checkpoint(tmp_path / "cut" / "model.pt")
    for k in avg["model"]:
        assert torch.equal(resumed["model"][k], avg["model"][k]), k

    _train(prepared, tmp_path / "plain1", epoch=1, previous=tmp_path / "plain" / "model.pt")
    _train(prepared, tmp_path / "avg1", avg_cfg, epoch=1, previous=tmp_path / "avg" / "model.pt")
    plain1 = load_checkpoint(tmp_path / "plain1" / "model.pt")
    avg1 = load_checkpoint(tmp_path / "avg1" / "model.pt")
    assert avg1["extra"][EXTRA_KEY]["updates"] == 12
    for k in plain1["model"]:
        assert torch.equal(avg1["extra"][EXTRA_KEY]["train_model"][k], plain1["model"][k]), k


def _impute_pieces(prepared, tiny_stores, out_dir, per_job, **kw):
    d, chrom = prepared["d"], prepared["chrom"]
    chunks = impute_chunks(chrom.windows["window_id"].tolist(), per_job)
    files = []
    for cid, members in chunks.items():
        out = out_dir / f"{cid}.vcf.gz"
        impute_chunk(checkpoint=str(d / "init.pt"),
                     key_encoder=keyencoder.companion_path(d / "init.pt"), contig="20",
                     window_ids=members, reference_h5=tiny_stores["ref"],
                     targets_h5=tiny_stores["tgt"], windows_tsv=tiny_stores["windows"],
                     mask_h5=str(d / "final.h5"), out=str(out), batch_size=16, device="cpu",
                     **kw)
        files.append(str(out))
    return chunks, files


def _body(path):
    """The records of a bgzipped VCF (header dropped)."""
    import gzip

    return [x for x in gzip.open(path, "rt").read().splitlines() if not x.startswith("#")]


def test_impute_chunks_write_pieces_that_make_the_vcf(prepared, tiny_stores, tmp_path):
    """Each imputation job writes the finished records of its windows; the VCF is the header
    and the pieces, whatever the grouping of windows into jobs; the pieces must tile the
    chromosome, agree with the targets and fields asked for, and be intact."""
    import cyvcf2

    chrom = prepared["chrom"]
    wids = chrom.windows["window_id"].tolist()
    (tmp_path / "two").mkdir()
    chunks, files = _impute_pieces(prepared, tiny_stores, tmp_path / "two", 2,
                                   format_fields=["AP1", "AP2"])
    assert len(chunks) == -(-len(wids) // 2) and sum(map(len, chunks.values())) == len(wids)
    common = dict(targets_h5=[tiny_stores["tgt"]], reference_h5=[tiny_stores["ref"]],
                  command="test")
    vcf = tmp_path / "two.vcf.gz"
    write_vcf(pieces=files[::-1], out=str(vcf), format_fields=["AP1", "AP2"], **common)
    targets = read_targets(tiny_stores["tgt"])
    reader = cyvcf2.VCF(str(vcf))
    assert reader.samples == targets.sample_id
    ap = np.array([np.stack([rec.format("AP1")[:, 0], rec.format("AP2")[:, 0]], 1).ravel()
                   for rec in reader]).T  # [2T, V] at 3 decimals
    assert ap.shape == (targets.haplotypes.shape[0], chrom.position.size)
    assert ((ap >= 0) & (ap <= 1)).all()
    typed = np.zeros(chrom.position.size, bool)
    typed[targets.variant_ref_index] = True
    np.testing.assert_array_equal(ap[:, typed], targets.haplotypes)  # the observed alleles
    # ... the model's own probabilities elsewhere (written to 3 decimals)
    d = prepared["d"]
    model = model_from_checkpoint(load_checkpoint(d / "init.pt"))
    params = keyencoder.load(keyencoder.companion_path(d / "init.pt"))
    observed = read_mask(d / "final.h5")[0]
    layout, arrays, obs, keys = window_inputs(chrom, wids[1], observed, params)
    cols = np.searchsorted(targets.variant_ref_index, layout.slot_index)
    probs = predict_window(model, layout, arrays, obs, chrom.position,
                           targets.haplotypes[:, cols],
                           KeySearcher(flat_index(keys), "cpu",
                                       never=chrom.second_copies(layout)),
                           batch_size=16, index_is_current=True)
    core = ap[:, layout.core_start:layout.core_end]
    untyped = ~typed[layout.core_start:layout.core_end]
    np.testing.assert_allclose(core[:, untyped], probs[:, untyped], atol=5e-4 + 1e-6)
    # the index made from the pieces' sizes finds what htslib's index of the file finds
    import shutil

    import pysam

    theirs = tmp_path / "theirs.vcf.gz"
    shutil.copy(vcf, theirs)
    pysam.tabix_index(str(theirs), preset="vcf", force=True, keep_original=True)
    with pysam.TabixFile(str(vcf)) as ours, pysam.TabixFile(str(theirs)) as htslib:
        for pos in [*chrom.position[::5].tolist(), int(chrom.position[-1])]:
            for lo, hi in ((pos - 1, pos), (pos - 1, pos + 20_000)):
                got = list(ours.fetch(chrom.contig, lo, hi))
                assert got and got == list(htslib.fetch(chrom.contig, lo, hi))
    # one window per job: the same records
    (tmp_path / "one").mkdir()
    _, singles = _impute_pieces(prepared, tiny_stores, tmp_path / "one", 1,
                                format_fields=["AP1", "AP2"])
    write_vcf(pieces=singles, out=str(tmp_path / "one.vcf.gz"), format_fields=["AP1", "AP2"],
              **common)
    assert _body(tmp_path / "one.vcf.gz") == _body(vcf)
    # what write_vcf refuses
    with pytest.raises(IntegrityError, match="cover every variant"):
        write_vcf(pieces=files[1:], out=str(tmp_path / "bad.vcf.gz"),
                  format_fields=["AP1", "AP2"], **common)
    with pytest.raises(IntegrityError, match="FORMAT fields"):
        write_vcf(pieces=files, out=str(tmp_path / "bad.vcf.gz"), **common)
    raw = bytearray(Path(files[0]).read_bytes())
    raw[40] ^= 0xFF  # one flipped byte inside the first compressed block
    Path(files[0]).write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="does not match its sidecar"):
        write_vcf(pieces=files, out=str(tmp_path / "bad.vcf.gz"),
                  format_fields=["AP1", "AP2"], **common)
    assert not (tmp_path / "bad.vcf.gz").exists()


def test_pieces_without_gp(prepared, tiny_stores, tmp_path):
    """output.gp: false: the pieces and the VCF have GT:DS (and the extra fields), each cell
    the GP-writing run's cell without its GP part; write_vcf refuses pieces written with the
    other setting, and a sidecar from before the setting existed counts as with GP."""
    import json

    from vcfbert.vcf_pieces import read_piece, sidecar_path

    common = dict(targets_h5=[tiny_stores["tgt"]], reference_h5=[tiny_stores["ref"]],
                  command="test")
    runs = {}
    for gp in (True, False):
        (tmp_path / str(gp)).mkdir()
        _, files = _impute_pieces(prepared, tiny_stores, tmp_path / str(gp), 2,
                                  format_fields=["AP1"], gp=gp)
        runs[gp] = files
        write_vcf(pieces=files, out=str(tmp_path / f"{gp}.vcf.gz"), format_fields=["AP1"],
                  gp=gp, **common)
    with_gp, without = _body(tmp_path / "True.vcf.gz"), _body(tmp_path / "False.vcf.gz")
    assert len(with_gp) == len(without) > 0
    for a, b in zip(with_gp, without, strict=True):
        fa, fb = a.split("\t"), b.split("\t")
        assert fa[8] == "GT:DS:GP:AP1" and fb[8] == "GT:DS:AP1"
        assert fb[:8] == fa[:8]
        assert fb[9:] == [":".join(c.split(":")[:2] + c.split(":")[3:]) for c in fa[9:]]
    header = [x for x in __import__("gzip").open(tmp_path / "False.vcf.gz", "rt")
              if x.startswith("##FORMAT")]
    assert [h.split(",")[0] for h in header] == ["##FORMAT=<ID=GT", "##FORMAT=<ID=DS",
                                                 "##FORMAT=<ID=AP1"]
    with pytest.raises(IntegrityError, match="without GP, output.gp is true"):
        write_vcf(pieces=runs[False], out=str(tmp_path / "bad.vcf.gz"), format_fields=["AP1"],
                  **common)
    with pytest.raises(IntegrityError, match="with GP, output.gp is false"):
        write_vcf(pieces=runs[True], out=str(tmp_path / "bad.vcf.gz"), format_fields=["AP1"],
                  gp=False, **common)
    side = sidecar_path(runs[True][0])
    meta = json.loads(side.read_text())
    del meta["gp"]
    side.write_text(json.dumps(meta))
    assert read_piece(runs[True][0]).gp is True


def test_er2_of_the_pieces_is_the_loo_correlation(prepared, tiny_stores, tmp_path):
    """INFO/ER2 is written on TYPED records where defined: the squared correlation of the
    leave-one-out dose (predict_window's, the site's own emission divided out) with the
    observed genotype, over samples with both alleles observed."""
    import cyvcf2

    d, chrom = prepared["d"], prepared["chrom"]
    _, files = _impute_pieces(prepared, tiny_stores, tmp_path, 2)
    vcf = tmp_path / "imputed.vcf.gz"
    write_vcf(pieces=files, targets_h5=[tiny_stores["tgt"]], reference_h5=[tiny_stores["ref"]],
              out=str(vcf), command="test")
    targets = read_targets(tiny_stores["tgt"])
    model = model_from_checkpoint(load_checkpoint(d / "init.pt"))
    params = keyencoder.load(keyencoder.companion_path(d / "init.pt"))
    observed = read_mask(d / "final.h5")[0]
    loo = np.full(targets.haplotypes.shape, np.nan)
    for wid in chrom.windows["window_id"]:
        layout, arrays, obs, keys = window_inputs(chrom, wid, observed, params)
        cols = np.searchsorted(targets.variant_ref_index, layout.slot_index)
        _, window_loo = predict_window(model, layout, arrays, obs, chrom.position,
                                       targets.haplotypes[:, cols],
                                       KeySearcher(flat_index(keys)), batch_size=16,
                                       index_is_current=True, slot_loo=True)
        core = layout.core_slots
        loo[:, cols[core]] = window_loo[:, core]
    assert np.isfinite(loo).all()  # every typed site is in one core
    calls = targets.haplotypes
    expect = np.full(chrom.position.size, np.nan)
    for j, v in enumerate(targets.variant_ref_index):
        ok = (calls[0::2, j] >= 0) & (calls[1::2, j] >= 0)
        x = (loo[0::2, j] + loo[1::2, j])[ok].astype(np.float64)
        y = (calls[0::2, j] + calls[1::2, j])[ok].astype(np.float64)
        if ok.sum() >= 2 and x.std() > 0 and y.std() > 0:
            expect[v] = np.corrcoef(x, y)[0, 1] ** 2
    typed = np.zeros(chrom.position.size, bool)
    typed[targets.variant_ref_index] = True
    assert np.isfinite(expect).sum() > 10 and np.isnan(expect[~typed]).all()
    assert np.nanmean(expect) > 0.5  # leaving a typed site out, the copying HMM still finds it
    reader = cyvcf2.VCF(str(vcf))
    assert reader.get_header_type("ER2")["Number"] == "1"
    written = np.array([rec.INFO.get("ER2", np.nan) for rec in reader], np.float64)
    flags = np.array([rec.INFO.get("TYPED") is not None for rec in cyvcf2.VCF(str(vcf))])
    np.testing.assert_array_equal(flags, typed)
    np.testing.assert_array_equal(np.isnan(written), np.isnan(expect))
    np.testing.assert_allclose(written, np.round(expect, 3), atol=1e-6)
    import shutil  # not conftest.have: "conftest" may name tests/workflow's module under xdist
    import subprocess

    if shutil.which("bcftools"):
        res = subprocess.run(["bcftools", "query", "-f", "%INFO/ER2\n", str(vcf)],
                             capture_output=True, text=True, check=True)
        text = res.stdout.split()
        assert len(text) == chrom.position.size
        got = np.array([np.nan if t == "." else float(t) for t in text])
        np.testing.assert_allclose(got, np.round(expect, 3), atol=1e-6)


def test_calibrate_dr2_fits_on_the_validation_samples(prepared, tmp_path):
    """The calibration pass imputes the validation samples as the targets are imputed; its
    true r² per variant is the squared correlation of dose and truth over the samples whose
    panel (without them) carries both alleles; the file names what it was fitted on."""
    from vcfbert.calibration import load
    from vcfbert.data import WindowArrayCache
    from vcfbert.evaluate import per_variant_r2
    from vcfbert.split import read_split
    from vcfbert.train import calibrate_dr2, calibration_data, spread_samples, validation_windows

    d, chrom = prepared["d"], prepared["chrom"]
    _, model, haps, mask = _validation_inputs(prepared)
    split = read_split(d / "split.tsv")
    assert spread_samples(haps, 2).tolist() == [*haps[:2], *haps[-2:]]
    x, y = calibration_data(model, chrom, haps, mask, device="cpu")
    dose = np.full((chrom.af.size, haps.size // 2), np.nan)
    truth = np.full_like(dose, np.nan)
    for win in validation_windows(model, [chrom], [haps], [mask], max_haplotypes=0,
                                  device="cpu", cache=WindowArrayCache(), index_is_current=True):
        lo, hi = win.layout.core_start, win.layout.core_end
        ok = (win.af > 0) & (win.af < 1)
        dose[lo:hi] = np.where(ok, win.probs[0::2] + win.probs[1::2], np.nan).T
        truth[lo:hi] = np.where(ok, win.truth[0::2] + win.truth[1::2], np.nan).T
    expect = per_variant_r2(dose, truth)
    assert np.isfinite(expect).sum() > 20
    np.testing.assert_array_equal(np.isfinite(y), np.isfinite(expect))
    np.testing.assert_allclose(y[np.isfinite(y)], expect[np.isfinite(y)], rtol=1e-5, atol=1e-6)
    assert ((x >= 0) & (x <= 1)).all()
    out = tmp_path / "dr2_calibration.json"
    calibrate_dr2(checkpoint=str(d / "init.pt"), chroms=[chrom], final_masks=[str(d / "final.h5")],
                  split_tsv=str(d / "split.tsv"), out=str(out), samples=0, device="cpu")
    back = load(out)
    assert back.source["validation_samples"] == [haps.size // 2]
    assert back.source["model"] == "init.pt" and back.source["windows"] == len(chrom.windows)
    untyped = np.ones(x.size, bool)
    untyped[chrom.typed_index] = False
    assert back.variants.sum() == (np.isfinite(y) & untyped).sum()
    # no validation sample (train.val_fraction 0): the identity map, and a warning
    split.assign(split="train").to_csv(tmp_path / "all_train.tsv", sep="\t", index=False)
    none = calibrate_dr2(checkpoint=str(d / "init.pt"), chroms=[chrom],
                         final_masks=[str(d / "final.h5")], split_tsv=str(tmp_path / "all_train.tsv"),
                         out=str(tmp_path / "none.json"), samples=0, device="cpu")
    assert not none.fitted.any() and load(tmp_path / "none.json").source["validation_samples"] == [0]


def test_validation_on_fewer_windows(prepared, tmp_path):
    """train.val_max_windows: an epoch's validation scores the windows spread_windows picks
    and only those (its sums are those of validation_windows over them), and all windows at
    0 or at a cap above their number."""
    from vcfbert.data import WindowArrayCache
    from vcfbert.train import validate, validation_windows
    from vcfbert.validation_metrics import ValidationSums

    chrom = prepared["chrom"]
    ids, model, haps, mask = _validation_inputs(prepared)

    def scored(windows):
        sums = ValidationSums()
        for win in validation_windows(model, [chrom], [haps], [mask], max_haplotypes=8,
                                      device="cpu", cache=WindowArrayCache(), windows=windows):
            sums.add(win.probs, win.truth, win.af)
        return sums.metrics()

    def validated(cap):
        return validate(model, [chrom], [haps], [mask], max_haplotypes=8, device="cpu",
                        cache=WindowArrayCache(), max_windows=cap)

    def same(a, b):  # equal dicts, NaN (a bin without variants) equal to NaN
        np.testing.assert_equal(a, b)
        return True

    every = validated(0)
    assert every.pop("val_windows") == len(ids)
    for cap in (len(ids), len(ids) + 5):
        again = validated(cap)
        assert again.pop("val_windows") == len(ids)
        assert same(again, every)
    assert same(scored(None), every)
    two = validated(2)
    assert two.pop("val_windows") == 2
    assert same(two, scored([[ids[0], ids[-1]]]))
    assert two["val_r2_overall"] != every["val_r2_overall"]
    # the epoch passes the config's cap through
    capped = _train(prepared, tmp_path / "v", cfg_overrides={"val_max_windows": 2})
    assert capped["val_windows"] == 2
    assert capped["val_r2_overall"] == pytest.approx(
        validate(model_from_checkpoint(load_checkpoint(tmp_path / "v" / "model.pt")),
                 [chrom], [haps], [mask], max_haplotypes=8, device="cpu",
                 cache=WindowArrayCache(), max_windows=2)["val_r2_overall"], abs=1e-4)


def test_calibrate_dr2_on_fewer_windows(prepared, tmp_path):
    """train.dr2_calibration_windows: the windows are spread over the chromosomes taken as one
    sequence; the calibration pass on some windows gives, in their cores, what the pass over
    every window gives, and nothing elsewhere; the map is fitted on those variants alone."""
    from vcfbert.calibration import load
    from vcfbert.train import calibrate_dr2, calibration_data, spread_windows

    assert spread_windows([["a", "b", "c"], ["d", "e"]], 3) == [["a", "c"], ["e"]]
    assert spread_windows([["a", "b", "c"], ["d", "e"]], 1) == [["a"], []]
    for n in (0, 5, 9):
        assert spread_windows([["a", "b", "c"], ["d", "e"]], n) == [["a", "b", "c"], ["d", "e"]]
    d, chrom = prepared["d"], prepared["chrom"]
    ids, model, haps, mask = _validation_inputs(prepared)
    _, y_all = calibration_data(model, chrom, haps, mask, device="cpu")
    some = [ids[0], ids[-1]]
    _, y = calibration_data(model, chrom, haps, mask, device="cpu", windows=some)
    inside = np.zeros(y.size, bool)
    for wid in some:
        layout = chrom.layout(wid)
        inside[layout.core_start:layout.core_end] = True
    assert not np.isfinite(y[~inside]).any()
    np.testing.assert_array_equal(np.isfinite(y[inside]), np.isfinite(y_all[inside]))
    fin = inside & np.isfinite(y_all)
    assert fin.sum() > 5
    np.testing.assert_allclose(y[fin], y_all[fin], rtol=1e-5, atol=1e-6)
    out = tmp_path / "dr2_calibration.json"
    calibrate_dr2(checkpoint=str(d / "init.pt"), chroms=[chrom], final_masks=[str(d / "final.h5")],
                  split_tsv=str(d / "split.tsv"), out=str(out), samples=0, device="cpu",
                  windows=2)
    back = load(out)
    assert back.source["windows"] == 2
    untyped = np.ones(y.size, bool)
    untyped[chrom.typed_index] = False
    assert back.variants.sum() == (np.isfinite(y) & untyped).sum()


def test_imputation_warns_when_dr2_was_fitted_with_other_match_states(prepared, tiny_stores,
                                                                       tmp_path, caplog):
    """A DR2 calibration fitted with one impute.match_states and an imputation with another:
    one warning that names both (the DR2 would be fitted to other states); none when equal."""
    from vcfbert.train import calibrate_dr2

    d, chrom = prepared["d"], prepared["chrom"]
    cal = tmp_path / "dr2.json"
    calibrate_dr2(checkpoint=str(d / "init.pt"), chroms=[chrom], final_masks=[str(d / "final.h5")],
                  split_tsv=str(d / "split.tsv"), out=str(cal), samples=0, device="cpu",
                  match_states=2)
    for used, warned in ((0, True), (2, False)):
        caplog.clear()
        (tmp_path / f"m{used}").mkdir()
        with caplog.at_level("WARNING", logger="vcfbert.impute"):
            _impute_pieces(prepared, tiny_stores, tmp_path / f"m{used}", 100,
                           dr2_calibration=str(cal), match_states=used)
        messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert bool(messages) == warned
        if warned:
            assert "impute.match_states: 2" in messages[0] and "uses 0" in messages[0]


def window_inputs(chrom, wid, observed, params):
    """(layout, reference arrays, observed slots, reference keys) of one window under the
    final mask ``observed``, keys from the key-encoder ``params``."""
    layout = chrom.layout(wid)
    arrays = read_window_arrays(chrom.reference_h5, layout)
    obs = chrom.slot_mask(observed, layout)
    keys = keyencoder.encode_keys(params, query_tokens(arrays.ref_slots, obs),
                                  layout.slot_core_dist)
    return layout, arrays, obs, keys


@pytest.mark.parametrize("k_retrieve", [None, 24])
def test_fast_window_prediction_equals_the_torch_forward(prepared, tiny_stores, k_retrieve):
    """The fused CPU path gives the model's own probabilities: for targets (k_retrieve ==
    k_keep: the same hits, scored by the index or re-scored), and for validation queries (own
    sample excluded, leave-one-out frequencies, k_retrieve > k_keep) re-scored with the
    current weights. (With k_retrieve > k_keep the index's top k_keep can differ from the
    re-scored one among candidates tied at the boundary: identical keys, either is right.)"""
    d = prepared["d"]
    chrom = prepared["chrom"]
    model = model_from_checkpoint(load_checkpoint(d / "init.pt"))
    with torch.no_grad():  # activate the zero-initialised heads
        gen = torch.Generator().manual_seed(0)
        for head in (model.rate_head, model.mismatch_head, model.emit_head, model.out_head):
            head[-1].weight.copy_(torch.randn(head[-1].weight.shape, generator=gen) * 0.3)
    model.cfg.k_retrieve = k_retrieve or model.cfg.k_keep
    params = keyencoder.from_model(model)
    targets = read_targets(tiny_stores["tgt"])
    observed = read_mask(d / "final.h5")[0]
    panel_haps = np.arange(0, 20) if k_retrieve else None
    for wid in chrom.windows["window_id"][:2]:
        layout, arrays, obs, keys = window_inputs(chrom, wid, observed, params)
        searcher = KeySearcher(flat_index(keys))
        if panel_haps is None:
            qs = targets.haplotypes[:, np.searchsorted(targets.variant_ref_index,
                                                       layout.slot_index)]
        else:
            qs = arrays.ref_slots[panel_haps]
        slow, slow_loo = predict_window(model, layout, arrays, obs, chrom.position, qs,
                                        searcher, panel_haps=panel_haps, batch_size=8,
                                        fast=False, slot_loo=True)
        np.testing.assert_array_equal(  # the leave-one-out output changes nothing else
            slow, predict_window(model, layout, arrays, obs, chrom.position, qs, searcher,
                                 panel_haps=panel_haps, batch_size=8, fast=False))
        for current in ((False,) if k_retrieve else (True, False)):
            fast, fast_loo = predict_window(model, layout, arrays, obs, chrom.position, qs,
                                            searcher, panel_haps=panel_haps, batch_size=8,
                                            fast=True, index_is_current=current, slot_loo=True)
            np.testing.assert_allclose(fast, slow, atol=2e-5)
            assert fast_loo.shape == (qs.shape[0], layout.n_slots)
            np.testing.assert_allclose(fast_loo, slow_loo, atol=2e-5)
            # batches on several threads: every row computed once, by the same function
            par, par_loo = predict_window(model, layout, arrays, obs, chrom.position, qs,
                                          searcher, panel_haps=panel_haps, batch_size=8,
                                          fast=True, index_is_current=current, slot_loo=True,
                                          threads=3)
            np.testing.assert_allclose(par, fast, atol=1e-6)
            np.testing.assert_allclose(par_loo, fast_loo, atol=1e-6)


def _second_window_targets(prepared, tiny_stores, model):
    """(layout, arrays, observed slots, searcher over the model's keys, the targets' alleles
    at the slots) of the tiny panel's second window, under the final mask."""
    chrom = prepared["chrom"]
    targets = read_targets(tiny_stores["tgt"])
    observed = read_mask(prepared["d"] / "final.h5")[0]
    layout, arrays, obs, keys = window_inputs(chrom, chrom.windows["window_id"][1], observed,
                                              keyencoder.from_model(model))
    qs = targets.haplotypes[:, np.searchsorted(targets.variant_ref_index, layout.slot_index)]
    return layout, arrays, obs, KeySearcher(flat_index(keys)), qs


def test_repeated_target_queries_are_computed_once(prepared, tiny_stores, monkeypatch):
    """Targets that repeat another's alleles at the slots are computed once and get its rows:
    the same probabilities and leave-one-out doses as computing every query, on the fused CPU
    path and the torch path, with fewer queries run."""
    import vcfbert.predict as predict_mod

    chrom = prepared["chrom"]
    model = model_from_checkpoint(load_checkpoint(prepared["d"] / "init.pt"))
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        for head in (model.rate_head, model.mismatch_head, model.emit_head, model.out_head):
            head[-1].weight.copy_(torch.randn(head[-1].weight.shape, generator=gen) * 0.3)
    layout, arrays, obs, searcher, qs = _second_window_targets(prepared, tiny_stores, model)
    qs = np.concatenate([qs, qs[[3, 0, 3]], qs[:2]])  # five repeats, out of order
    n_distinct = np.unique(qs, axis=0).shape[0]
    monkeypatch.setattr(predict_mod, "REPEAT_ROWS_AT_ONCE", 2)  # their rows copied 2 at a time
    run = []
    original = predict_mod.query_keys
    monkeypatch.setattr(predict_mod, "query_keys",
                        lambda model, layout, q, *a, **k: run.append(q.shape[0])
                        or original(model, layout, q, *a, **k))
    for fast in (True, False):
        run.clear()
        every, every_loo = predict_window(model, layout, arrays, obs, chrom.position, qs,
                                          searcher, batch_size=8, fast=fast, slot_loo=True,
                                          distinct=False)
        assert sum(run) == qs.shape[0]
        run.clear()
        once, once_loo = predict_window(model, layout, arrays, obs, chrom.position, qs,
                                        searcher, batch_size=8, fast=fast, slot_loo=True)
        assert sum(run) == n_distinct < qs.shape[0]
        np.testing.assert_allclose(once, every, atol=1e-6)
        np.testing.assert_allclose(once_loo, every_loo, atol=1e-6)
        np.testing.assert_array_equal(once[-5:], once[[3, 0, 3, 0, 1]])


def test_dataloader_workers_fork_and_stay_cpu_only(prepared, tmp_path, monkeypatch):
    """num_workers > 0 with the fork start method: workers only read arrays (no CUDA), and the
    epoch ends with exactly the weights of the single-process run."""
    import vcfbert.data as data_mod

    seen = []
    original = data_mod.EpochBatches.__getitem__

    def spy(self, i):
        item = original(self, i)
        seen.append(torch.cuda.is_initialized())
        assert all(isinstance(v, (int, str, np.ndarray)) or hasattr(v, "ref_slots")
                   for v in item.values())
        return item

    monkeypatch.setattr(data_mod.EpochBatches, "__getitem__", spy)
    _train(prepared, tmp_path / "w0")
    d = prepared["d"]
    cfg = TrainConfig(batch_size=8, max_batches_per_epoch=6, checkpoint_every=2,
                      val_max_haplotypes=8, max_sites_per_batch=64, num_workers=2)
    train_epoch(epoch=0, previous_checkpoint=str(d / "init.pt"), chroms=[prepared["chrom"]],
                masks=[str(d / "m0.h5")], final_masks=[str(d / "final.h5")],
                index_paths=prepared["indexes"], split_tsv=str(d / "split.tsv"),
                out_checkpoint=str(tmp_path / "w2" / "model.pt"),
                out_metrics=str(tmp_path / "w2" / "metrics.json"),
                partial_dir=str(tmp_path / "w2.partial"), cfg=cfg, device="cpu", progress=False)
    assert not any(seen)
    a = load_checkpoint(tmp_path / "w0" / "model.pt")["model"]
    b = load_checkpoint(tmp_path / "w2" / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_process_training_equals_one_process(prepared, tmp_path):
    """torchrun with 2 CPU processes (gloo) = one process with the same global batch."""
    import subprocess
    import sys

    from vcfbert import steps

    d = prepared["d"]
    chrom = prepared["chrom"]
    for (contig, wid), path in prepared["indexes"].items():  # sidecars name their window
        side = json.loads(open(path[:-6] + ".json").read())
        side.update(contig=contig, window_id=wid)
        open(path[:-6] + ".json", "w").write(json.dumps(side))
    kwargs = dict(epoch=0, previous=str(d / "init.pt"), contigs=["20"],
                  reference_h5=[chrom.reference_h5], targets_h5=[chrom.targets_h5],
                  windows_tsv=[str(tmp_path / "w.tsv")], masks=[str(d / "m0.h5")],
                  final_masks=[str(d / "final.h5")], indexes=list(prepared["indexes"].values()),
                  split_tsv=str(d / "split.tsv"),
                  train_config=dict(batch_size=8, max_batches_per_epoch=4,
                                    val_max_haplotypes=8, max_sites_per_batch=64),
                  device="cpu")
    from vcfbert.windows import write_windows

    write_windows(pd.DataFrame(chrom.windows.columns), tmp_path / "w.tsv")
    steps.train_epoch(**kwargs, out_model=str(tmp_path / "one/model.pt"),
                      out_metrics=str(tmp_path / "one/metrics.json"))
    args = {**kwargs, "out_model": str(tmp_path / "two/model.pt"),
            "out_metrics": str(tmp_path / "two/metrics.json")}
    (tmp_path / "two").mkdir()
    (tmp_path / "args.json").write_text(json.dumps(args))
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", "-m", "vcfbert.ddp", str(tmp_path / "args.json")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    a = load_checkpoint(tmp_path / "one/model.pt")["model"]
    b = load_checkpoint(tmp_path / "two/model.pt")["model"]
    for k in a:
        # Adam turns float-rounding differences of near-zero gradients into ~lr-sized steps
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4)
    assert not torch.equal(a["tok.weight"], load_checkpoint(d / "init.pt")["model"]["tok.weight"])


def test_consecutive_reader_equals_whole_reads(tiny_stores, tmp_path):
    """ConsecutiveWindowReader (imputation, DR2 calibration) gives read_window_arrays' arrays
    for windows in order, out of order, repeated, and when the store changes."""
    import shutil

    from vcfbert.windowdata import ConsecutiveWindowReader

    chrom = Chromosome.load("20", tiny_stores["ref"], tiny_stores["tgt"], tiny_stores["windows"])
    ids = list(chrom.windows["window_id"])
    assert len(ids) >= 3
    other = tmp_path / "copy.h5"
    shutil.copyfile(tiny_stores["ref"], other)
    visits = ([(chrom.reference_h5, w) for w in ids]  # in order: the kept part is reused
              + [(chrom.reference_h5, ids[0]), (chrom.reference_h5, ids[0]),  # back, repeat
                 (chrom.reference_h5, ids[-1]), (str(other), ids[-1]),  # jump, other store
                 (str(other), ids[1])])
    reader = ConsecutiveWindowReader()
    previous = None
    for path, wid in visits:
        layout = chrom.layout(wid)
        got = reader.read(path, layout)
        want = read_window_arrays(path, layout)
        for name in ("ref_slots", "ref_core", "ac_slots", "ac_core"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
        if previous is not None:  # arrays handed out before stay valid
            np.testing.assert_array_equal(previous[0].ref_core, previous[1].ref_core)
        previous = (got, want)
    # get(): the slots from the target store's copy of the reference at the typed sites, the
    # core from the reference store; the span read when the target store has no copy
    import dataclasses

    import h5py

    old = tmp_path / "old_targets.h5"
    shutil.copyfile(chrom.targets_h5, old)
    with h5py.File(old, "a") as h5:
        del h5["reference_call_haplotype"]
    legacy = dataclasses.replace(chrom, targets_h5=str(old))
    for source in (chrom, legacy):
        for wid in [*ids, ids[0]]:
            layout = chrom.layout(wid)
            got = reader.get(source, wid, layout)
            want = read_window_arrays(chrom.reference_h5, layout)
            for name in ("ref_slots", "ref_core", "ac_slots", "ac_core"):
                np.testing.assert_array_equal(getattr(got, name), getattr(want, name),
                                              err_msg=f"{name} {wid}")
            assert got.ref_slots.flags.c_contiguous and got.ref_core.flags.c_contiguous


def test_epoch_cache_warms_in_order_with_the_same_arrays(prepared):
    """EpochBatches.warm_cache reads the epoch's windows once, in order, into the cache the
    batches then use; the arrays equal read_window_arrays'; it declines when they do not fit."""
    from vcfbert.data import BatchSpec, EpochBatches

    chrom = prepared["chrom"]
    wids = list(chrom.windows["window_id"])
    specs = [BatchSpec(0, w, np.arange(4)) for w in reversed(wids)]
    mask = [np.ones(chrom.typed_index.size, bool)]
    small = EpochBatches([chrom], specs, mask, cache_windows=len(wids) - 1)
    assert not small.warm_cache()
    assert not small.window_cache()._items
    data = EpochBatches([chrom], specs, mask)
    assert not data.warm_cache(len(specs))  # no batch left: nothing to read
    assert data.warm_cache(1)  # the windows of batches 1.. (all but the last window)
    assert sorted(w for _, w in data.window_cache()._items) == sorted(wids[:-1])
    assert data.warm_cache()
    for w in wids:
        got = data.window_cache()._items[("20", w)]
        want = read_window_arrays(chrom.reference_h5, chrom.layout(w))
        np.testing.assert_array_equal(got.ref_slots, want.ref_slots)
        np.testing.assert_array_equal(got.ref_core, want.ref_core)
        np.testing.assert_array_equal(got.ac_core, want.ac_core)
    item = data[0]
    assert item["arrays"] is data.window_cache()._items[("20", wids[-1])]


def test_window_cache_keeps_its_bytes_and_evicts_the_window_read_again_last(prepared):
    """WindowArrayCache under a byte bound: it never holds more than the bound (beyond the
    window asked for), drops the window whose next use is farthest (least recently used
    without next_use), and hands out read_window_arrays' arrays."""
    from vcfbert.windowdata import WindowArrayCache, array_bytes, window_bytes

    chrom = prepared["chrom"]
    wids = list(chrom.windows["window_id"])
    assert len(wids) >= 3
    layouts = {w: chrom.layout(w) for w in wids}
    sizes = {w: window_bytes(chrom.n_haplotypes, layouts[w]) for w in wids}
    for w in wids:  # the estimate from the layout is what the arrays take
        assert sizes[w] == array_bytes(read_window_arrays(chrom.reference_h5, layouts[w]))
    a, b, c = wids[:3]
    bound = sizes[a] + sizes[b] + min(sizes.values()) // 2  # two windows, not three
    cache = WindowArrayCache(max_bytes=bound)
    order = {a: 5.0, b: 9.0, c: 7.0}  # next uses: b comes back last
    for w in (a, b, c):
        got = cache.get(chrom, w, layouts[w], next_use=lambda key: order[key[1]])
        want = read_window_arrays(chrom.reference_h5, layouts[w])
        np.testing.assert_array_equal(got.ref_core, want.ref_core)
        np.testing.assert_array_equal(got.ref_slots, want.ref_slots)
        assert cache.nbytes <= max(bound, sizes[w])
    assert {k[1] for k in cache._items} == {a, c} and cache.reads == 3
    cache.get(chrom, a, layouts[a])  # a hit: no read, a becomes the most recent
    assert cache.reads == 3
    cache.get(chrom, b, layouts[b])  # least recently used first without next_use: c goes
    assert {k[1] for k in cache._items} == {a, b} and cache.reads == 4
    # a bound below one window keeps only the window asked for
    one = WindowArrayCache(max_bytes=1)
    for w in wids:
        one.get(chrom, w, layouts[w])
        assert [k[1] for k in one._items] == [w]
    # warm declines what does not fit in bytes, as in number
    assert not WindowArrayCache(max_bytes=bound).warm([(chrom, w, layouts[w]) for w in wids])
    roomy = WindowArrayCache(max_bytes=sum(sizes.values()))
    assert roomy.warm([(chrom, w, layouts[w]) for w in wids]) and roomy.reads == len(wids)


def test_a_byte_bound_on_the_window_cache_trains_the_same_model(prepared, tmp_path,
                                                                  monkeypatch):
    """train.window_cache_gib changes how often windows are read, not what is learnt: an
    epoch whose cache holds one window at a time re-reads windows and ends with exactly the
    weights of the epoch that kept them all."""
    import vcfbert.windowdata as wd

    reads = []
    original = wd.ConsecutiveWindowReader.get

    def counted(self, chrom, window_id, layout):
        reads.append(window_id)
        return original(self, chrom, window_id, layout)

    monkeypatch.setattr(wd.ConsecutiveWindowReader, "get", counted)
    _train(prepared, tmp_path / "all")
    kept_reads = len(reads)
    reads.clear()
    _train(prepared, tmp_path / "one", {"window_cache_gib": 1e-9})
    assert len(reads) > kept_reads  # the warm read was declined and windows came back
    a = load_checkpoint(tmp_path / "all" / "model.pt")["model"]
    b = load_checkpoint(tmp_path / "one" / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma = json.loads((tmp_path / "all" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert {k: v for k, v in ma.items() if "second" not in k and "per_s" not in k} == {
        k: v for k, v in mb.items() if "second" not in k and "per_s" not in k}


def test_slot_alleles_from_the_target_store_equal_the_window_read(tiny_stores, tmp_path,
                                                                  monkeypatch):
    """The key jobs read a window's slot alleles from the target store's copy of the
    reference at the typed sites: the same alleles as the window's span read from the
    reference store, for every window; a target store without the copy falls back to it; and
    the copy is read in small blocks of variants as well."""
    import dataclasses
    import shutil

    import h5py

    from vcfbert.io import h5store
    from vcfbert.windowdata import read_slot_alleles

    chrom = Chromosome.load("20", tiny_stores["ref"], tiny_stores["tgt"], tiny_stores["windows"])
    with h5py.File(chrom.targets_h5) as h5:
        assert "reference_call_haplotype" in h5
    old = tmp_path / "old_targets.h5"
    shutil.copyfile(chrom.targets_h5, old)
    with h5py.File(old, "a") as h5:
        del h5["reference_call_haplotype"]
    legacy = dataclasses.replace(chrom, targets_h5=str(old))
    for wid in chrom.windows["window_id"]:
        layout = chrom.layout(wid)
        want = read_window_arrays(chrom.reference_h5, layout).ref_slots
        np.testing.assert_array_equal(read_slot_alleles(chrom, layout), want, err_msg=wid)
        np.testing.assert_array_equal(read_slot_alleles(legacy, layout), want, err_msg=wid)
    monkeypatch.setattr(h5store, "BLOCK", 5)  # many blocks, most holding a few typed sites
    whole = h5store.read_reference(chrom.reference_h5).haplotypes
    np.testing.assert_array_equal(h5store.reference_at_sites(chrom.reference_h5,
                                                             chrom.typed_index),
                                  whole[:, chrom.typed_index])


def test_slot_alleles_from_a_trained_panels_copy(tiny_stores, tmp_path):
    """A trained panel's batch has a target store without the copy of the reference: its
    windows' slots come from the panel's reference_at_array.h5 (written from a training
    run's target store), the same alleles as the window read; a copy at other sites is
    refused in one line."""
    import shutil

    import h5py

    from vcfbert.errors import IntegrityError
    from vcfbert.io.h5store import read_target_sites, write_reference_at_sites
    from vcfbert.trained_panel import _write_reference_at_array
    from vcfbert.windowdata import _slots_from_target_store

    batch = tmp_path / "batch_targets.h5"
    shutil.copyfile(tiny_stores["tgt"], batch)
    with h5py.File(batch, "a") as h5:
        del h5["reference_call_haplotype"]
    copy = tmp_path / "reference_at_array.h5"
    _write_reference_at_array(copy, "20", tiny_stores["ref"], tiny_stores["tgt"],
                              read_target_sites(tiny_stores["tgt"]))
    chrom = Chromosome.load("20", tiny_stores["ref"], str(batch), tiny_stores["windows"],
                            str(copy))
    for wid in chrom.windows["window_id"]:
        layout = chrom.layout(wid)
        got = _slots_from_target_store(chrom, layout)
        assert got is not None, wid  # read from the copy, not the span
        np.testing.assert_array_equal(got, read_window_arrays(chrom.reference_h5,
                                                              layout).ref_slots, err_msg=wid)
    index = read_target_sites(tiny_stores["tgt"])
    other = tmp_path / "other.h5"
    write_reference_at_sites(other, contig="20", variant_ref_index=index[1:],
                             haplotypes=np.zeros((4, index.size - 1), np.int8))
    with pytest.raises(IntegrityError, match="holds the reference at other sites"):
        Chromosome.load("20", tiny_stores["ref"], str(batch), tiny_stores["windows"],
                        str(other))
    with pytest.raises(ValueError, match="haplotypes: 3 sites"):
        write_reference_at_sites(other, contig="20", variant_ref_index=index[:2],
                                 haplotypes=np.zeros((4, 3), np.int8))


def test_match_states_run_on_both_paths(prepared, tiny_stores):
    """Imputation with part of the copying states chosen by match length (targets, and panel
    haplotypes with their own sample excluded): probabilities in [0, 1], and the torch path
    (a GPU's) gets the same states as the fused CPU path, so the same probabilities (it
    ignored impute.match_states before)."""
    chrom = prepared["chrom"]
    model = model_from_checkpoint(load_checkpoint(prepared["d"] / "init.pt"))
    with torch.no_grad():  # activate the zero-initialised heads, so that the states matter
        gen = torch.Generator().manual_seed(0)
        for head in (model.rate_head, model.mismatch_head, model.emit_head, model.out_head):
            head[-1].weight.copy_(torch.randn(head[-1].weight.shape, generator=gen) * 0.3)
    layout, arrays, obs, searcher, qs = _second_window_targets(prepared, tiny_stores, model)
    for queries, panel_haps in ((qs, None), (arrays.ref_slots[:6], np.arange(6))):
        def run(fast, match_states, queries=queries, panel_haps=panel_haps):
            return predict_window(model, layout, arrays, obs, chrom.position, queries,
                                  searcher, panel_haps=panel_haps, batch_size=4, fast=fast,
                                  index_is_current=True, match_states=match_states)

        base, got = run(True, 0), run(True, 8)
        assert got.shape == base.shape and np.isfinite(got).all()
        assert got.min() >= 0 and got.max() <= 1
        assert np.abs(got - base).max() > 1e-3  # the states by match length change the result
        np.testing.assert_allclose(run(False, 8), got, atol=2e-5)


_AFTER_COMPILE = """
import json, sys
import numba
from vcfbert import keyencoder
from vcfbert.data import Chromosome
from vcfbert.evaluate import site_table
from vcfbert.evaluate_stream import evaluate
from vcfbert.impute import impute_chunk, write_vcf
from vcfbert.ingest import parse_targets
from vcfbert.kernels import KERNELS, kernel
from vcfbert.train import TrainConfig, calibrate_dr2, train_epoch

a = json.loads(sys.argv[1])
d, t = a["d"], a["tmp"]
chrom = Chromosome.load("20", a["ref"], a["tgt"], a["windows"])
cfg = TrainConfig(batch_size=8, max_batches_per_epoch=2, val_max_haplotypes=8,
                  max_sites_per_batch=64, match_states=3)
train_epoch(epoch=0, previous_checkpoint=d + "/init.pt", chroms=[chrom], masks=[d + "/m0.h5"],
            final_masks=[d + "/final.h5"], index_paths={tuple(k.split(":")): v
                                                        for k, v in a["indexes"].items()},
            split_tsv=d + "/split.tsv", out_checkpoint=t + "/model.pt",
            out_metrics=t + "/metrics.json", partial_dir=t + "/partial", cfg=cfg, device="cpu",
            progress=False)
calibrate_dr2(checkpoint=d + "/init.pt", chroms=[chrom], final_masks=[d + "/final.h5"],
              split_tsv=d + "/split.tsv", out=t + "/dr2.json", samples=4, device="cpu",
              match_states=3)
impute_chunk(checkpoint=d + "/init.pt", key_encoder=keyencoder.companion_path(d + "/init.pt"),
             contig="20", window_ids=chrom.windows["window_id"].tolist(), reference_h5=a["ref"],
             targets_h5=a["tgt"], windows_tsv=a["windows"], mask_h5=d + "/final.h5",
             out=t + "/c.vcf.gz", batch_size=16, device="cpu", match_states=3,
             dr2_calibration=t + "/dr2.json")
write_vcf(pieces=[t + "/c.vcf.gz"], out=t + "/imputed.vcf.gz", targets_h5=[a["tgt"]],
          reference_h5=[a["ref"]], command="test")
evaluate(t + "/imputed.vcf.gz", a["truth"], site_table([a["ref"]], [a["tgt"]]))
parse_targets(a["targets_vcf"], a["ref"], "20", t + "/tgt.h5", t + "/qs.tsv", t + "/qm.tsv")
report = {}
for name in KERNELS:
    st = kernel(name).stats
    report[name] = [sum(st.cache_hits.values()), sum(st.cache_misses.values())]
# every numba kernel of the package these steps loaded, listed or not
from numba.core.registry import CPUDispatcher
for module in [m for n, m in sys.modules.items() if n.startswith("vcfbert")]:
    for attr, value in list(vars(module).items()):
        name = module.__name__ + ":" + attr
        if isinstance(value, CPUDispatcher) and name not in report and value.stats.cache_misses:
            report[name] = [sum(value.stats.cache_hits.values()),
                            sum(value.stats.cache_misses.values())]
from vcfbert.kernels import _READY
checked = sorted(f"{d.py_func.__module__}:{d.py_func.__name__}" for d in _READY)
print(json.dumps({"kernels": report, "ready_checked": checked}))
"""


def test_jobs_find_every_kernel_compiled_ahead(prepared, tiny_stores, tmp_path):
    """After :func:`vcfbert.kernels.compile_kernels` filled an empty numba cache, a training
    epoch (match states, validation), a DR2 calibration, an imputation with it, the VCF, its evaluation and target
    parsing, in a fresh process, load every kernel they call from the cache and compile
    none: the signatures in vcfbert.kernels.KERNELS are the ones the pipeline uses, and
    no kernel of the package that those steps call is missing from it; each was checked
    with :func:`vcfbert.kernels.ready` before its first call."""
    import os
    import subprocess
    import sys

    from vcfbert.kernels import KERNELS

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    done = subprocess.run(
        [sys.executable, "-c", "import json; from vcfbert.kernels import compile_kernels; "
         "print(json.dumps(compile_kernels()))"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout.splitlines()[-1])) == set(KERNELS)
    paths = tiny_stores["paths"]
    args = {"d": str(prepared["d"]), "tmp": str(tmp_path), "ref": tiny_stores["ref"],
            "tgt": tiny_stores["tgt"], "windows": tiny_stores["windows"],
            "indexes": {":".join(k): v for k, v in prepared["indexes"].items()},
            "truth": paths.truth_vcf, "targets_vcf": paths.target_vcf}
    run = subprocess.run([sys.executable, "-c", _AFTER_COMPILE, json.dumps(args)], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.splitlines()[-1])
    report = out["kernels"]
    compiled_in_the_jobs = {name: misses for name, (_, misses) in report.items() if misses}
    assert not compiled_in_the_jobs, (
        f"kernels compiled by the jobs, not ahead: {compiled_in_the_jobs}; add their "
        "signatures to vcfbert.kernels.KERNELS")
    assert all(hits for hits, _ in report.values()), report  # every kernel listed is used
    # and every one was first checked against compile_kernels' lock (kernels.ready), so that
    # a job never compiles a second copy of a kernel being compiled beside it
    assert set(report) <= set(out["ready_checked"]), set(report) - set(out["ready_checked"])


_IMPUTATION_JOB = """
import json, sys
from vcfbert import keyencoder, steps
a = json.loads(sys.argv[1])
steps.impute_chunk(checkpoint=a["d"] + "/init.pt",
                   key_encoder=keyencoder.companion_path(a["d"] + "/init.pt"), contig="20",
                   chunk="c0000", windows_per_job=99, reference_h5=a["ref"],
                   targets_h5=a["tgt"], windows_tsv=a["windows"], mask_h5=a["d"] + "/final.h5",
                   out=a["tmp"] + "/c0000.vcf.gz", batch_size=16, device="cpu")
print(json.dumps(sorted(m for m in ("pandas", "vcfbert.train", "vcfbert.evaluate",
                                    "vcfbert.split") if m in sys.modules)))
"""


def test_the_imputation_job_imports_neither_pandas_nor_the_training_code(prepared, tiny_stores,
                                                                          tmp_path):
    """An imputation job (the function its Snakemake script calls, in a fresh process) reads
    its windows without pandas and picks its device without the training module: pandas'
    import alone was ~0.3 s of the job's serial start (docs/model.md, "Inference speed")."""
    import subprocess
    import sys

    args = {"d": str(prepared["d"]), "tmp": str(tmp_path), "ref": tiny_stores["ref"],
            "tgt": tiny_stores["tgt"], "windows": tiny_stores["windows"]}
    run = subprocess.run([sys.executable, "-c", _IMPUTATION_JOB, json.dumps(args)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "c0000.vcf.gz").stat().st_size > 0
    assert json.loads(run.stdout.splitlines()[-1]) == []


def test_imputation_and_dr2_jobs_cap_their_thread_pools_at_one_thread(prepared, tiny_stores,
                                                                     tmp_path, monkeypatch):
    """A job given one thread (or several, one per batch) caps torch's, FAISS's and BLAS's own
    pools to one thread, also outside Snakemake: uncapped, two 1-thread jobs sharing the
    cores oversubscribed them."""
    import vcfbert.runtime as runtime
    import vcfbert.train as train_mod
    from vcfbert.train import calibrate_dr2

    calls = []
    monkeypatch.setattr(runtime, "cap_threads", calls.append)
    monkeypatch.setattr(train_mod, "cap_threads", calls.append)
    _impute_pieces(prepared, tiny_stores, tmp_path, 99, threads=1)
    assert calls == [1]
    d, chrom = prepared["d"], prepared["chrom"]
    calibrate_dr2(checkpoint=str(d / "init.pt"), chroms=[chrom], final_masks=[str(d / "final.h5")],
                  split_tsv=str(d / "split.tsv"), out=str(tmp_path / "dr2.json"), samples=4,
                  device="cpu", threads=1)
    assert calls == [1, 1]


def test_predict_cores_keeps_no_window_outputs_while_predicting_the_next(prepared, tiny_stores,
                                                                        monkeypatch):
    """Once a window's predictions are handed over, the generator drops them: while it
    predicts the next window, they live only as long as their consumer keeps them."""
    import gc
    import weakref

    import vcfbert.predict as predict_mod
    from vcfbert.impute import predict_cores

    d, chrom = prepared["d"], prepared["chrom"]
    window_ids = chrom.windows["window_id"].tolist()
    assert len(window_ids) >= 3
    real = predict_mod.predict_window
    refs, alive = [], []

    def spy(*args, **kwargs):
        gc.collect()
        alive.extend(ref() is not None for ref in refs)
        result = real(*args, **kwargs)
        refs.append(weakref.ref(result[0]))
        return result

    monkeypatch.setattr(predict_mod, "predict_window", spy)
    n = 0
    for item in predict_cores(checkpoint=str(d / "init.pt"),
                              key_encoder=keyencoder.companion_path(d / "init.pt"), contig="20",
                              window_ids=window_ids, reference_h5=tiny_stores["ref"],
                              targets_h5=tiny_stores["tgt"], windows_tsv=tiny_stores["windows"],
                              mask_h5=str(d / "final.h5"), batch_size=16, device="cpu"):
        assert item[2].shape[1] == item[1] - item[0]
        n += 1
        del item
    assert n == len(window_ids) and len(refs) == n
    assert alive == [False] * (n * (n - 1) // 2)


def test_imputed_manifest_lists_each_vcf_with_its_hash(tmp_path):
    """The manifest's table, written with the csv module: one row per chromosome in the
    ingest table's order, the files by name, their size and SHA-256; pandas reads it back."""
    import hashlib

    import pandas as pd

    from vcfbert import steps

    chroms = tmp_path / "chromosomes.tsv"
    chroms.write_text("contig\twildcard\treference_file\ttarget_file\tgenetic_map_file\n"
                      "chr20\tchr20\tr20.vcf.gz\tt20.vcf.gz\t\n"
                      "chrX\tchrX\trX.vcf.gz\ttX.vcf.gz\tmap.txt\n")
    vcfs = []
    for name, body in [("chr20.vcf.gz", b"twenty"), ("chrX.vcf.gz", b"x" * 1000)]:
        (tmp_path / name).write_bytes(body)
        vcfs.append(str(tmp_path / name))
    out = tmp_path / "imputed" / "chromosomes.tsv"
    steps.imputed_manifest(vcfs=vcfs, chromosomes_tsv=str(chroms), out=str(out))
    assert out.read_text().splitlines()[0] == "contig\tvcf\tindex\tbytes\tsha256"
    table = pd.read_csv(out, sep="\t", dtype={"contig": str})
    assert table["contig"].tolist() == ["chr20", "chrX"]
    assert table["vcf"].tolist() == ["chr20.vcf.gz", "chrX.vcf.gz"]
    assert table["index"].tolist() == ["chr20.vcf.gz.tbi", "chrX.vcf.gz.tbi"]
    assert table["bytes"].tolist() == [6, 1000]
    assert table["sha256"].tolist() == [hashlib.sha256(b"twenty").hexdigest(),
                                        hashlib.sha256(b"x" * 1000).hexdigest()]
    with pytest.raises(InputError, match="2 chromosomes and 1 imputed"):
        steps.imputed_manifest(vcfs=vcfs[:1], chromosomes_tsv=str(chroms), out=str(out))
