import itertools

import numpy as np
import pytest

from echolite.metrics.bootstrap import paired_delta, resample_indices, with_ci
from echolite.metrics.regression import auc, auc_below, mae, r2, rmse


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    labels = rng.random(60) < 0.3
    scores = np.round(rng.normal(size=60) + labels, 1)  # with ties
    pos, neg = scores[labels], scores[~labels]
    pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)]
    assert auc(labels, scores) == pytest.approx(np.mean(pairs))


def test_regression_values_and_cis():
    y = np.array([30.0, 45.0, 55.0, 60.0, 65.0, 70.0] * 5)
    p = y + np.tile([2.0, -2.0, 1.0, -1.0, 0.0, 3.0], 5)
    idx = resample_indices(len(y), 200, seed=0)
    m = with_ci({"mae": mae, "rmse": rmse, "r2": r2, "auc": auc_below(50)}, y, p, idx)
    assert m["mae"]["value"] == pytest.approx(1.5)
    assert m["rmse"]["value"] == pytest.approx(np.sqrt(19 / 6))
    assert m["auc"]["value"] == 1.0
    assert m["mae"]["ci_low"] <= 1.5 <= m["mae"]["ci_high"]
    assert 0.9 < m["r2"]["value"] < 1.0
    # the CI is the percentile interval of the metric over exactly these resamples
    boot = np.array([mae(y[i], p[i]) for i in idx])
    assert m["mae"]["ci_low"] == pytest.approx(np.percentile(boot, 2.5))


def test_paired_delta_uses_the_same_resamples():
    rng = np.random.default_rng(1)
    y = rng.normal(55, 12, 80)
    ref = y + rng.normal(0, 4, 80)
    var = ref + rng.normal(0.3, 0.2, 80)  # the variant moves every prediction a little
    idx = resample_indices(80, 500, seed=3)
    d = paired_delta({"mae": mae}, y, var, ref, idx)["mae"]
    by_hand = np.array([mae(y[i], var[i]) - mae(y[i], ref[i]) for i in idx])
    assert d["value"] == pytest.approx(mae(y, var) - mae(y, ref))
    assert d["ci_low"] == pytest.approx(np.percentile(by_hand, 2.5))
    assert d["ci_high"] == pytest.approx(np.percentile(by_hand, 97.5))
    # pairing removes the spread shared by both models: far narrower than unpaired CIs
    unpaired = with_ci({"mae": mae}, y, ref, idx)["mae"]
    assert d["ci_high"] - d["ci_low"] < 0.3 * (unpaired["ci_high"] - unpaired["ci_low"])
    same = paired_delta({"mae": mae}, y, ref, ref, idx)["mae"]
    assert same["value"] == same["ci_low"] == same["ci_high"] == 0.0


def test_undefined_resamples_are_dropped_and_counted():
    y = np.array([40.0] + [60.0] * 9)  # one positive for AUC(EF<50): many resamples have none
    p = y + 1.0
    idx = resample_indices(len(y), 300, seed=0)
    m = with_ci({"auc": auc_below(50)}, y, p, idx)["auc"]
    expected = int(sum(not (y[i] < 50).any() for i in idx))
    assert m["dropped_nan"] == expected > 0 and m["resamples"] == 300


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="equal length"):
        with_ci({"mae": mae}, np.zeros(3), np.zeros(4), resample_indices(3, 10, 0))
