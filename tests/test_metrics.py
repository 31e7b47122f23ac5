import itertools

import numpy as np
import pytest

from echolite.metrics import auc, regression_metrics


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    labels = rng.random(60) < 0.3
    scores = np.round(rng.normal(size=60) + labels, 1)  # with ties
    pos, neg = scores[labels], scores[~labels]
    pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)]
    assert auc(labels, scores) == pytest.approx(np.mean(pairs))


def test_regression_metrics_values_and_cis():
    y = np.array([30.0, 45.0, 55.0, 60.0, 65.0, 70.0] * 5)
    p = y + np.tile([2.0, -2.0, 1.0, -1.0, 0.0, 3.0], 5)
    m = regression_metrics(y, p, threshold=50, n_bootstrap=200, reference=y.mean())
    assert m["mae"]["value"] == pytest.approx(1.5)
    assert m["rmse"]["value"] == pytest.approx(np.sqrt(19 / 6))
    assert m["auc"]["value"] == 1.0
    assert m["mae"]["ci_low"] <= 1.5 <= m["mae"]["ci_high"]
    assert m["mae_predict_reference"] > m["mae"]["value"]
    assert 0.9 < m["r2"]["value"] < 1.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="equal-length"):
        regression_metrics(np.zeros(3), np.zeros(4))
