"""The report core on hand-made results.json files: the recommendation, the table, the figures."""

import json

import pytest

from echolite.figures import pareto_front
from echolite.report import table_markdown, write_report
from echolite.results import SCHEMA, recommend


def _row(name, p50, size, delta=None, family="quantization", value=3.0):
    metrics = {"values": {"mae": {"value": value, "ci_low": value - 0.3, "ci_high": value + 0.3}}}
    if delta is not None:
        rel, lo, hi = delta
        metrics["paired_delta"] = {"mae": {"value": rel * 3.0, "ci_low": lo * 3.0, "ci_high": hi * 3.0,
                                           "relative": rel, "rel_ci_low": lo, "rel_ci_high": hi}}
    return {"name": name, "family": family, "method": "m", "precision": "int8", "backend": "b",
            "status": "ok", "error": None, "metrics": metrics, "prediction": [1.0, 2.0],
            "size_bytes": {"file": size},
            "size_compressed_bytes": size // 2, "latency_ms": {"p50": p50, "p90": p50 * 1.1,
                                                                "throughput_items_per_s": 1000 / p50},
            "details": {"steps": []}}


def results(rows, higher_is_better=False, relative=True, budget=0.05, split="VAL"):
    return {"schema": SCHEMA, "run": {"name": "t", "created": "now", "command": "echolite run", "config": {},
                                      "environment": {}, "data": {}, "resolved": {}},
            "task": {"name": "ef", "title": "test", "item": "video", "primary": "mae", "model": "m",
                     "metrics": [{"key": "mae", "label": "MAE", "unit": "EF points", "fmt": ".2f",
                                  "higher_is_better": higher_is_better}],
                     "budget": {"max_worsening": budget, "relative": relative, "text": "MAE +5 %"}},
            "measure": {"device": "cpu: test, 2 threads", "threads": 2, "latency_batch": 1,
                        "throughput_batch": 16, "reference_p50_first_ms": 40.0,
                        "reference_p50_last_ms": 41.0, "reference_drift": 0.025,
                        "protocol": "p", "eval": {"split": split, "n": 2, "ids": ["a", "b"],
                                                  "targets": [1.0, 2.0], "n_bootstrap": 10}},
            "rows": [_row("fp32", 40.0, 44_000_000, family="reference"), *rows]}


def test_recommends_the_fastest_variant_whose_paired_bound_is_within_budget():
    r = results([_row("fast-but-worse", 5.0, 3_000_000, (0.02, -0.01, 0.08)),  # upper bound 8 % > 5 %
                 _row("good", 9.0, 11_000_000, (0.01, -0.02, 0.04)),
                 _row("slower-good", 12.0, 11_000_000, (0.0, -0.01, 0.01))])
    best, why = recommend(r)
    assert best["name"] == "good" and "within the budget" in why


def test_the_choice_is_made_on_val_not_on_test():
    fast = _row("fast", 5.0, 3_000_000, (0.01, -0.02, 0.04))  # within budget on TEST...
    fast["selection"] = {"split": "VAL", "paired_delta": {"mae": {"relative": 0.06, "rel_ci_low": 0.02,
                                                                 "rel_ci_high": 0.11}}}  # ...not on VAL
    slow = _row("slow", 9.0, 11_000_000, (0.03, -0.01, 0.08))  # outside on TEST, within on VAL
    slow["selection"] = {"split": "VAL", "paired_delta": {"mae": {"relative": 0.0, "rel_ci_low": -0.02,
                                                                 "rel_ci_high": 0.02}}}
    unscored = _row("fastest-without-val-scores", 1.0, 3_000_000, (0.0, -0.01, 0.01))
    best, why = recommend(results([fast, slow, unscored], split="TEST"))
    assert best["name"] == "slow" and "bound on VAL" in why


def test_rows_scored_on_test_alone_are_never_recommended():
    best, why = recommend(results([_row("good", 9.0, 11_000_000, (0.01, -0.02, 0.04))], split="TEST"))
    assert best is None and "never chosen on TEST" in why


def test_a_fine_tuning_that_kept_epoch_0_is_said_in_the_table_and_summary(tmp_path):
    qat = _row("qat-int8", 9.0, 11_000_000, (0.0, -0.01, 0.01))
    history = [{"epoch": 0, "val_score": 2.46}, {"epoch": 1, "val_score": 2.53}]
    qat["details"]["steps"] = [{"method": "qat", "kept_epoch": 0, "history": history}]
    trained = _row("qat-trained", 9.5, 11_000_000, (0.0, -0.01, 0.01))
    history = [{"epoch": 0, "val_score": 2.5}, {"epoch": 1, "val_score": 2.4}]
    trained["details"]["steps"] = [{"method": "qat", "kept_epoch": 1, "history": history}]
    r = results([qat, trained])
    table = table_markdown(r)
    assert "| qat-int8 | m (epoch 0 kept) |" in table and "| qat-trained | m |" in table
    (tmp_path / "results.json").write_text(json.dumps(r))
    (tmp_path / "confusion.png").write_bytes(b"an old report's figure")
    (tmp_path / "report.md").write_text("![confusion.png](confusion.png)\n")  # the earlier report's
    (tmp_path / "mine.png").write_bytes(b"a user's own file")
    report = write_report(tmp_path).read_text()
    assert "`qat-int8`: qat kept epoch 0 of 1 (no epoch beat its start on VAL)" in report
    assert "qat-trained`:" not in report
    assert not (tmp_path / "confusion.png").exists()  # the earlier report's figure, not drawn now
    assert (tmp_path / "mine.png").read_bytes() == b"a user's own file"  # not the report's: kept
    assert "VAL bound is optimistic" not in report  # scored on VAL: no TEST check to point to


def test_none_qualifies_is_said():
    r = results([_row("a", 5.0, 3_000_000, (0.02, 0.01, 0.08)), _row("b", 9.0, 11_000_000, (0.1, 0.06, 0.2))])
    best, why = recommend(r)
    assert best is None and why.startswith("no variant")


def test_higher_is_better_metrics_use_the_lower_bound_in_absolute_units():
    r = results([_row("drops-2pp", 5.0, 3e6, (-2 / 3, -1.0, -1 / 3)),  # Δ in units: -2 [-3, -1]
                 _row("drops-half-pp", 9.0, 3e6, (-0.5 / 3, -0.9 / 3, 0.1 / 3))],  # Δ -0.5 [-0.9, +0.1]
                higher_is_better=True, relative=False, budget=1.0)
    best, _ = recommend(r)
    assert best["name"] == "drops-half-pp"


def test_failed_rows_are_listed_and_never_recommended(tmp_path):
    failed = {"name": "broken", "family": "quantization", "status": "failed", "phase": "build",
              "error": "step 1 (static_ptq): RuntimeError: boom"}
    r = results([failed, _row("good", 9.0, 11_000_000, (0.01, -0.02, 0.04))])
    assert recommend(r)[0]["name"] == "good"
    table = table_markdown(r)
    assert "| broken | **failed** (build): step 1 (static_ptq): RuntimeError: boom |" in table
    assert table.count("cpu: test") == 0  # the device is in the header, not on every row


def test_report_is_a_function_of_results_json_alone(tmp_path):
    r = results([_row("good", 9.0, 11_000_000, (0.01, -0.02, 0.04))])
    (tmp_path / "results.json").write_text(json.dumps(r))
    text = write_report(tmp_path).read_text()
    lines = text.splitlines()
    summary = lines[lines.index("## Summary") + 2: lines.index("## Summary") + 5]
    assert summary[0].startswith("- **Baseline**") and summary[1].startswith("- **Recommended: `good`**")
    assert "4.0× smaller, 4.4× faster on cpu: test, 2 threads" in summary[1]
    assert (tmp_path / "pareto.png").stat().st_size > 5000 and (tmp_path / "agreement.png").is_file()


@pytest.mark.parametrize("points, front", [
    ([(1, 5), (2, 3), (3, 4), (4, 1)], [0, 1, 3]),
    ([(1, 1), (2, 2)], [0]),
    ([(2, 1), (1, 2), (1, 2)], [1, 2, 0]),
])
def test_pareto_front(points, front):
    assert pareto_front(points) == front


def test_a_recommendation_its_test_check_contradicts_is_said_prominently(tmp_path):
    """Issue 16: VAL chose both the fine-tuning epochs and the recommendation; when TEST disagrees the
    summary says so instead of presenting the choice as confirmed."""
    slow = _row("slow", 9.0, 11_000_000, (0.03, -0.01, 0.08))  # outside the budget on TEST (upper 8 %)
    slow["selection"] = {"split": "VAL", "paired_delta": {"mae": {"relative": 0.0, "rel_ci_low": -0.02,
                                                                 "rel_ci_high": 0.02}}}
    (tmp_path / "results.json").write_text(json.dumps(results([slow], split="TEST")))
    text = write_report(tmp_path).read_text()
    assert "**Recommended: `slow`**" in text
    assert "**Not confirmed on TEST**: `slow`'s paired 95 % bound there is +8.0 %" in text
    confirmed = _row("fine", 9.0, 11_000_000, (0.0, -0.01, 0.02))
    confirmed["selection"] = slow["selection"]
    (tmp_path / "results.json").write_text(json.dumps(results([confirmed], split="TEST")))
    assert "Not confirmed" not in write_report(tmp_path).read_text()
