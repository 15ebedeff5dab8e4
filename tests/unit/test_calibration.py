"""DR2 recalibration: the conditional DR2 against brute force and the writer's formula, the
isotonic map, the file, and the recalibrated DR2 the imputation jobs write (chrX males included)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from data.vcfs import write_vcf

from vcfbert import calibration as cal
from vcfbert.errors import IntegrityError
from vcfbert.evaluate import BIN_LABELS
from vcfbert.vcf_cells import by_variant, site_stats


def conditioned_dense(hp: np.ndarray, male: np.ndarray | None = None,
                      region: np.ndarray | None = None) -> np.ndarray:
    """p' = (p - A) / (1 - A - R) per variant, computed densely (a male's second copy at a
    haploid variant left out of A and R)."""
    p = np.clip(hp.astype(np.float64), 0, 1)
    counted = np.ones(p.shape, bool)
    if male is not None:
        for t in np.flatnonzero(male):
            counted[2 * t + 1, region] = False
    a = np.prod(np.where(counted, p, 1.0), axis=0)
    r = np.prod(np.where(counted, 1 - p, 1.0), axis=0)
    with np.errstate(invalid="ignore"):  # 0 / 0 where every haplotype is 0 (or every one 1)
        return (p - a) / (1 - a - r)


def test_conditioning_is_the_probability_given_both_alleles_present():
    """Brute force over every allele configuration of 5 independent haplotypes."""
    rng = np.random.default_rng(1)
    for p in [rng.random(5), np.array([0.2, 1e-3, 1e-3, 2e-3, 1e-4]),
              np.array([0.999, 0.98, 0.7, 0.999, 0.9])]:
        num = np.zeros(5)
        poly = 0.0
        for alleles in itertools.product([0, 1], repeat=5):
            a = np.array(alleles)
            if a.min() == a.max():
                continue
            w = np.prod(np.where(a == 1, p, 1 - p))
            poly += w
            num += w * a
        np.testing.assert_allclose(conditioned_dense(p[:, None])[:, 0], num / poly, rtol=1e-10)


@pytest.mark.parametrize("with_males", [False, True])
def test_streamed_sums_give_the_writers_dr2_and_the_conditional_dr2(with_males):
    """Summed over two blocks of samples; the plain DR2 is the writer's
    (vcf_cells.site_stats), the conditional one the writer's formula on p' computed densely."""
    rng = np.random.default_rng(4)
    n_t, v = 9, 14
    hp = rng.random((2 * n_t, v)).astype(np.float32) ** 3
    hp[:, 0] = 1e-4  # nearly absent everywhere
    hp[5, 0] = 0.3  # ... but one haplotype
    hp[:, 1] = 0.0  # absent: conditional DR2 undefined -> 0
    hp[:, 2] = 1.0  # fixed
    hp[:, 3] = 1 - hp[:, 3] * 1e-3  # a rare REF allele
    hp[:, 4] = 0.0  # one haplotype (a female's), exact zeros elsewhere
    hp[4, 4] = 0.6
    male = region = None
    if with_males:
        male = np.zeros(n_t, bool)
        male[[1, 4, 8]] = True
        region = np.arange(v) >= 2
        for t in np.flatnonzero(male):  # stores hold a male's allele twice
            hp[2 * t + 1, region] = hp[2 * t, region]
    sums = (cal.dr2_sums(hp[:8], None if male is None else male[:4], region, cells=7)
            + cal.dr2_sums(hp[8:], None if male is None else male[4:], region))
    m = np.zeros(n_t, bool) if male is None else male
    r = np.zeros(v, bool) if region is None else region
    np.testing.assert_allclose(cal.plain_dr2(sums), site_stats(by_variant(hp), m, r)[1],
                               rtol=1e-9, atol=1e-12)
    expect = site_stats(by_variant(conditioned_dense(hp, male, r)), m, r)[1]
    expect[1] = 0.0
    got = cal.conditional_dr2(sums)
    # float64 sums of doses near 2 (variant 3, a rare REF allele) cancel to ~1e-8
    np.testing.assert_allclose(got, expect, rtol=1e-7, atol=1e-7)
    assert got[0] > 0.8 > cal.plain_dr2(sums)[0]  # the one likely carrier, if any, is found
    assert got[4] == pytest.approx(1.0)


def sums_reference(hap_prob: np.ndarray, male: np.ndarray, region: np.ndarray,
                   use: np.ndarray) -> np.ndarray:
    """dr2_sums written out in numpy, one probability's logarithm at a time (float64)."""
    p = np.clip(hap_prob.astype(np.float32), 0, 1).astype(np.float64)
    p1, p2 = p[0::2], p[1::2]
    haploid = male[:, None] & region[None, :] & use
    diploid = ~(male[:, None] & region[None, :]) & use
    ds = p1 + p2
    with np.errstate(divide="ignore"):
        la1, la2, lr1, lr2 = np.log(p1), np.log(p2), np.log1p(-p1), np.log1p(-p2)
    z = np.zeros_like(ds)
    return np.stack([
        diploid.sum(0), np.where(diploid, ds, z).sum(0), np.where(diploid, ds * ds, z).sum(0),
        np.where(diploid, p1 * p2, z).sum(0), haploid.sum(0), np.where(haploid, p1, z).sum(0),
        np.where(haploid, p1 * p1, z).sum(0),
        np.where(diploid, la1 + la2, np.where(haploid, la1, z)).sum(0),
        np.where(diploid, lr1 + lr2, np.where(haploid, lr1, z)).sum(0)])


@pytest.mark.parametrize("n_t", [1, 2, 5, 8, 400])
@pytest.mark.parametrize("with_males", [False, True])
def test_sums_kernel_matches_the_sums_written_out(n_t, with_males):
    """The kernel multiplies probabilities before taking logarithms: the same sums, also
    with exact 0 and 1, tiny probabilities (float32 subnormals), males and left-out cells.
    400 samples of subnormals rescale the running product ~200 times (column 2)."""
    rng = np.random.default_rng(n_t)
    v = 11
    hp = (rng.random((2 * n_t, v)) ** 4).astype(np.float32)
    hp[:, 0] = 0.0
    hp[:, 1] = 1.0
    hp[:, 2] = 1e-45  # the smallest float32 subnormal everywhere: no underflow to -inf
    hp[0, 3] = 0.0  # one haplotype certain REF, one certain ALT
    hp[-1, 3] = 1.0
    hp[:, 4] = 1 - 1e-7 * rng.random(2 * n_t)
    hp[:, 5] = -0.1  # clipped to 0
    hp[:, 6] = 1.2  # clipped to 1
    male = np.zeros(n_t, bool)
    region = np.zeros(v, bool)
    use = np.ones((n_t, v), bool)
    if with_males:
        male[::2] = True
        region[5:] = True
        use[rng.random((n_t, v)) < 0.3] = False
    got = cal.dr2_sums(hp, male, region, use=None if not with_males else use, cells=3 * n_t)
    expect = sums_reference(hp, male, region, use)
    np.testing.assert_allclose(got[:7], expect[:7], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.isneginf(got[7:]), np.isneginf(expect[7:]))
    finite = np.isfinite(expect[7:])
    np.testing.assert_allclose(got[7:][finite], expect[7:][finite], rtol=1e-12, atol=1e-12)
    assert np.isfinite(got[7, 2])


def test_samples_left_out_by_use_do_not_count():
    rng = np.random.default_rng(2)
    hp = rng.random((12, 5))
    use = np.ones((6, 5), bool)
    use[[1, 4], 2] = False
    keep = np.flatnonzero(use[:, 2])
    rows = np.stack([2 * keep, 2 * keep + 1], 1).ravel()
    full = cal.dr2_sums(hp, use=use)
    np.testing.assert_allclose(full[:, 2], cal.dr2_sums(hp[rows][:, [2]])[:, 0])
    np.testing.assert_allclose(full[:, 0], cal.dr2_sums(hp[:, [0]])[:, 0])


def test_isotonic_pools_adjacent_violators():
    got = cal.isotonic(np.array([1.0, 3.0, 2.0, 2.0, 5.0, 0.0]), np.array([1, 1, 1, 2, 1, 1.0]))
    # 3, 2, 2 pool (weights 1, 1, 2) to 2.25; then 5, 0 pool to 2.5
    np.testing.assert_allclose(got, [1.0, 2.25, 2.25, 2.25, 2.5, 2.5])
    assert (np.diff(got) >= 0).all()


def synthetic(rng: np.random.Generator, n: int, af: float, curve) -> tuple[np.ndarray, ...]:
    x = rng.random(n)
    y = np.clip(curve(x) + rng.normal(scale=0.1, size=n), 0, 1)
    return x, y, np.full(n, af)


def test_fit_recovers_a_known_increasing_map_per_maf_bin():
    rng = np.random.default_rng(3)
    curves = {0.0003: lambda x: np.sqrt(x), 0.002: lambda x: 0.3 + 0.7 * x,
              0.2: lambda x: x ** 2}
    parts = [synthetic(rng, 20_000, af, f) for af, f in curves.items()]
    x, y, af = (np.concatenate(c) for c in zip(*parts, strict=True))
    y[::50] = np.nan  # undefined r²: skipped
    fitted = cal.fit(x, y, af)
    assert fitted.fitted.tolist() == [True, True, False, False, True]
    grid = np.linspace(0.05, 0.95, 19)
    for a, f in curves.items():
        got = fitted.apply(grid, np.full(grid.size, a))
        # the mean of a clipped noisy curve: a little above f near 0, below it near 1
        np.testing.assert_allclose(got, f(grid), atol=0.04)
        assert (np.diff(got) >= 0).all()
    # the bins without validation variants keep the identity
    np.testing.assert_allclose(fitted.apply(grid, np.full(grid.size, 0.007)), grid)


def test_a_bin_with_too_few_variants_keeps_the_identity():
    rng = np.random.default_rng(5)
    x, y, af = synthetic(rng, 150, 0.0003, lambda x: 0.5 + 0.5 * x)
    fitted = cal.fit(x, y, af, min_variants=200)
    assert not fitted.fitted.any() and fitted.variants[0] == 150
    np.testing.assert_allclose(fitted.apply(x, af), x)
    assert cal.fit(x, y, af, min_variants=100).fitted[0]


def test_json_round_trip_and_damaged_files(tmp_path):
    rng = np.random.default_rng(6)
    x, y, af = synthetic(rng, 5_000, 0.02, lambda x: x ** 0.5)
    fitted = cal.fit(x, y, af, source={"model": "model.pt", "validation_samples": [60]})
    path = tmp_path / "dr2_calibration.json"
    cal.save(fitted, path)
    back = cal.load(path)
    assert back.source == {"model": "model.pt", "validation_samples": [60]}
    assert back.fitted.tolist() == fitted.fitted.tolist()
    assert back.variants.tolist() == fitted.variants.tolist() == [0, 0, 0, 5_000, 0]
    for (kx, ky), (bx, by) in zip(fitted.knots, back.knots, strict=True):
        np.testing.assert_allclose(bx, kx, atol=1e-6)
        np.testing.assert_allclose(by, ky, atol=1e-6)
    np.testing.assert_allclose(back.groups[3], fitted.groups[3], atol=1e-6)
    assert back.groups[3][:, 2].sum() == 5_000  # the data the fit saw
    probe = rng.random(100)
    np.testing.assert_allclose(back.apply(probe, np.full(100, 0.02)),
                               fitted.apply(probe, np.full(100, 0.02)), atol=1e-5)
    content = json.loads(path.read_text())
    assert [b["maf_bin"] for b in content["bins"]] == BIN_LABELS
    path.write_text("{")
    with pytest.raises(IntegrityError, match="unreadable DR2 calibration.*fit it again"):
        cal.load(path)
    content["bins"][3]["knots"]["dr2"] = content["bins"][3]["knots"]["dr2"][::-1]
    path.write_text(json.dumps(content))
    with pytest.raises(IntegrityError, match=r"MAF bin \[0.01,0.05\) are not an increasing map"):
        cal.load(path)
    content["format_version"] = 99
    path.write_text(json.dumps(content))
    with pytest.raises(IntegrityError, match="not a vcfbert-dr2-calibration file of version 1"):
        cal.load(path)


def test_pieces_carry_the_recalibrated_dr2_of_untyped_variants(tmp_path):
    """chrX with haploid males: the DR2 of a window's core (``core_dosages``) is the map
    applied to the conditional DR2 computed densely with the writer's formula; NaN at typed
    variants, where the observed alleles are put back; the VCF written from the pieces
    carries it (and says so in its header)."""
    import cyvcf2

    from vcfbert.impute import write_vcf as write_imputed
    from vcfbert.ingest import parse_reference, parse_targets
    from vcfbert.io.h5store import read_targets, read_variant_table
    from vcfbert.vcf_pieces import core_dosages, write_piece
    from vcfbert.windows import define_windows, write_windows

    rng = np.random.default_rng(7)
    n_ref, n_var = 8, 40
    males = {1, 3, 6}
    records = []
    for j in range(n_var):
        gts = []
        for s in range(n_ref):
            a = rng.random(2) < 0.3
            gts.append(str(int(a[0])) if (s in males and j >= 4) else f"{int(a[0])}|{int(a[1])}")
        records.append((100 * (j + 1), "A", "G", gts))
    ref_vcf = write_vcf(tmp_path / "ref.vcf", [f"r{s}" for s in range(n_ref)], records,
                        contig="X")
    parse_reference(ref_vcf, "X", tmp_path / "r.h5")
    typed_at = list(range(2, n_var, 6))
    n_t = 5
    tgt_records = [(100 * (j + 1), "A", "G",
                    ["1" if (t in (0, 3) and j >= 4) else "0|1" for t in range(n_t)])
                   for j in typed_at]
    tgt_vcf = write_vcf(tmp_path / "t.vcf", [f"t{t}" for t in range(n_t)], tgt_records,
                        contig="X")
    parse_targets(tgt_vcf, tmp_path / "r.h5", "X", tmp_path / "t.h5", tmp_path / "qs.tsv",
                  tmp_path / "qn.tsv")
    table = read_variant_table(tmp_path / "r.h5")
    targets = read_targets(tmp_path / "t.h5")
    assert targets.sample_haploid.tolist() == [True, False, False, True, False]
    windows = define_windows(table["position"], targets.variant_ref_index, core_sites=2,
                             flank_sites=1)
    write_windows(windows, tmp_path / "w.tsv")
    hp = (rng.random((2 * n_t, n_var)) ** 4).astype(np.float32)  # mostly small
    hp[:, 0] = 1e-3
    hp[2, 0] = 0.4
    knots = [(np.array([0.0, 0.5, 1.0]), np.array([0.1, 0.8, 0.95])) for _ in BIN_LABELS]
    fitted = cal.Recalibration(knots=knots, groups=[np.zeros((0, 3))] * len(BIN_LABELS),
                               variants=np.full(len(BIN_LABELS), 300),
                               fitted=np.ones(len(BIN_LABELS), bool))
    files, cores = [], []
    called = targets.site_called
    for k, (lo, hi) in enumerate(zip(windows["core_start"], windows["core_end"], strict=True)):
        cores.append(core_dosages("X", table, targets, called, lo, hi, hp[:, lo:hi].copy(),
                                  np.zeros((2 * n_t, 0), np.float32), np.zeros(0, int), fitted))
        # an imputation job reads its chunk's rows of the table only: the same core
        part = core_dosages("X", read_variant_table(tmp_path / "r.h5", rows=(lo, hi)), targets,
                            called, lo, hi, hp[:, lo:hi].copy(),
                            np.zeros((2 * n_t, 0), np.float32), np.zeros(0, int), fitted,
                            table_start=lo)
        for name in ("position", "alleles", "ids", "hap_prob", "typed", "dr2",
                     "haploid_variants"):
            np.testing.assert_array_equal(getattr(part, name), getattr(cores[-1], name))
        with pytest.raises(ValueError, match="not in the table of variants"):
            core_dosages("X", read_variant_table(tmp_path / "r.h5", rows=(lo + 1, hi)),
                         targets, called, lo, hi, hp[:, lo:hi].copy(),
                         np.zeros((2 * n_t, 0), np.float32), np.zeros(0, int), fitted,
                         table_start=lo + 1)
        files.append(str(tmp_path / f"c{k}.vcf.gz"))
        write_piece(files[-1], [cores[-1]], lambda c: c, contig="X", core_start=lo, core_end=hi,
                    samples=targets.sample_id, window_ids=[windows["window_id"].iloc[k]],
                    dr2_recalibrated=True)
    dr2 = np.concatenate([c.dr2 for c in cores])
    typed = np.concatenate([c.typed for c in cores])
    joined = np.concatenate([c.hap_prob for c in cores], axis=1)
    assert typed.sum() == len(typed_at) and np.isnan(dr2[typed]).all()
    male, region = targets.sample_haploid, table["haploid"]
    assert region[4:].all() and not region[:4].any()
    # a male's second haplotype at haploid variants is ignored (not a copy of his first here)
    seen = targets.haplotypes >= 0  # the observed alleles are put back
    np.testing.assert_array_equal(joined[:, typed][seen], targets.haplotypes[seen])
    np.testing.assert_array_equal(joined[:, ~typed], hp[:, ~typed])
    dense = site_stats(by_variant(conditioned_dense(hp, male, region)), male, region)[1]
    expect = fitted.apply(dense, table["af"])
    np.testing.assert_allclose(dr2[~typed], expect[~typed], rtol=1e-7, atol=1e-9)
    # counted as diploid, the males would change it
    wrong = fitted.apply(site_stats(by_variant(conditioned_dense(hp)),
                                    np.zeros(n_t, bool), np.zeros(n_var, bool))[1], table["af"])
    assert not np.allclose(wrong[~typed & region], expect[~typed & region], atol=1e-3)
    # the writer writes it (3 decimals) at IMP records, its own DR2 at TYPED ones
    write_imputed(pieces=files, targets_h5=[str(tmp_path / "t.h5")],
                  reference_h5=[str(tmp_path / "r.h5")], out=str(tmp_path / "X.vcf.gz"),
                  command="test")
    vcf = cyvcf2.VCF(str(tmp_path / "X.vcf.gz"))
    assert "recalibrated at IMP markers" in vcf.raw_header
    own = site_stats(by_variant(joined), male, region)[1]
    for j, rec in enumerate(vcf):
        want = own[j] if typed[j] else dr2[j]
        assert rec.INFO["DR2"] == pytest.approx(float(f"{want:.3f}"), abs=1e-6), j
