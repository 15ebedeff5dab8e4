"""vcfbert.validation_metrics: the epoch's validation metrics summed window by window equal
those computed from every window's values kept and concatenated (the code before 2026-12-05,
written out here as the reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vcfbert.maf_bins import BIN_LABELS, maf_bin
from vcfbert.validation_metrics import ValidationSums


def concatenated_metrics(windows: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """The metrics from all windows' dosages, truths and frequencies at once."""
    doses, truths, afs = [], [], []
    ll_sum, ll_n = 0.0, 0
    for probs, truth, af in windows:
        p = np.clip(probs, 1e-6, 1 - 1e-6)
        ll_sum += float(-(truth * np.log(p) + (1 - truth) * np.log1p(-p)).sum())
        ll_n += truth.size
        doses.append((probs[0::2] + probs[1::2]).T)
        truths.append((truth[0::2] + truth[1::2]).T)
        afs.append(af.T)
    dose, truth, af = np.concatenate(doses), np.concatenate(truths), np.concatenate(afs)
    bins = np.where(af > 0, maf_bin(af.ravel()).reshape(af.shape), "absent")
    out = {"val_logloss": ll_sum / ll_n}
    r2s = []
    for label in BIN_LABELS:
        sel = bins == label
        d, t = dose[sel], truth[sel]
        r2 = float(np.corrcoef(d, t)[0, 1] ** 2) if d.size > 1 and d.std() > 0 and t.std() > 0 \
            else float("nan")
        out[f"val_r2_{label}"] = r2
        if not math.isnan(r2):
            r2s.append(r2)
    present = af > 0
    out["val_r2_overall"] = float(np.corrcoef(dose[present], truth[present])[0, 1] ** 2)
    out["val_r2_mean_bins"] = float(np.mean(r2s)) if r2s else float("nan")

    def f1(sel):
        h, t = np.round(dose[sel]), truth[sel]
        tp, fp, fn = ((h >= 1) & (t >= 1)).sum(), ((h >= 1) & (t < 1)).sum(), \
            ((h < 1) & (t >= 1)).sum()
        return float(2 * tp / (2 * tp + fp + fn)) if (tp + fp + fn) else float("nan")

    maf = np.minimum(af, 1 - af)
    out["val_f1"] = f1(present)
    out["val_rare_f1"] = f1(present & (maf < 0.01))
    return out


def random_window(rng, samples: int, sites: int, empty_bin: bool = False):
    """probs/truth float32 [2s, n] and a leave-one-out af [s, n] spread over every MAF bin
    (and absent variants, af 0); with ``empty_bin`` none in [0.005, 0.01)."""
    site_af = rng.choice([0.0, 0.0004, 0.003, 0.007, 0.03, 0.3, 0.8, 1.0], size=sites)
    if empty_bin:
        site_af[site_af == 0.007] = 0.03
    # carriers in every bin (at 20 %, whatever the bin): each bin's r² is defined
    truth = (rng.random((2 * samples, sites)) < np.minimum(site_af, 0.2) + 0.2 * (site_af > 0)
             ).astype(np.float32)
    noise = rng.normal(0, 0.2, truth.shape)
    probs = np.clip(truth * 0.9 + 0.05 + noise, 0, 1).astype(np.float32)
    own = (truth[0::2] + truth[1::2]) / 6000.0
    af = np.clip(site_af[None, :] - own, 0, 1) * (site_af[None, :] > 0)
    return probs, truth, af


@pytest.mark.parametrize("empty_bin", [False, True])
def test_sums_window_by_window_equal_the_concatenated_metrics(empty_bin):
    rng = np.random.default_rng(11)
    windows = [random_window(rng, 12, n, empty_bin) for n in (40, 1, 75, 0, 30)]
    sums = ValidationSums()
    for w in windows:
        sums.add(*w)
    got, want = sums.metrics(), concatenated_metrics([w for w in windows if w[0].size])
    assert set(got) == set(want)
    for key, value in want.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert math.isnan(got["val_r2_[0.005,0.01)"]) == empty_bin
    # one window or the same windows split differently: the same metrics
    whole = ValidationSums()
    probs = np.concatenate([w[0] for w in windows], axis=1)
    truth = np.concatenate([w[1] for w in windows], axis=1)
    whole.add(probs, truth, np.concatenate([w[2] for w in windows], axis=1))
    for key, value in whole.metrics().items():
        # the log-loss is a float32 sum per window (as before): 1e-7 apart between groupings
        rel = 1e-6 if key == "val_logloss" else 1e-9
        assert value == pytest.approx(got[key], rel=rel, abs=1e-12, nan_ok=True), key


def test_no_window_gives_no_metrics():
    assert ValidationSums().metrics() == {}
