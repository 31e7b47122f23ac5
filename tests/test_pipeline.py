"""End-to-end: the smoke preset through the CLI, resume, reuse and report regeneration."""

import json

import pandas as pd
import torch

from echolite.cli import main
from echolite.config import apply_overrides, load_config
from echolite.data.echonet import read_filelist
from echolite.train import LAST, load_checkpoint, train

RUN_FILES = {"config.yaml", "environment.json", "run.log", "results.json", "report.md",
             "pred_vs_true.png", "pareto.png", "sensitivity.png", "baseline", "variants"}
SMOKE_ROWS = ["fp32", "fp32-onnxruntime", "dynamic-int8", "static-int8", "static-int8-onnxruntime",
              "static-int8-ort"]


def test_smoke_run_end_to_end(phantom_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--config", "smoke", "--data", str(phantom_root), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert {p.name for p in (out / "baseline").iterdir()} == {"best.pt", "last.pt",
                                                              "predictions_test.csv"}
    results = json.loads((out / "results.json").read_text())
    rows = {r["name"]: r for r in results["rows"]}
    assert [r["name"] for r in results["rows"]][: len(SMOKE_ROWS)] == SMOKE_ROWS
    assert all(r["status"] == "ok" for r in results["rows"]), [r["error"] for r in results["rows"]]
    row = rows["fp32"]
    assert row["backend"] == "pytorch-eager" and row["latency_ms"]["p50"] > 0
    csv = pd.read_csv(out / "baseline" / "predictions_test.csv")
    assert csv["EF_pred"].round(3).tolist() == row["predictions"]["ef_pred"]
    assert set(csv["FileName"]) == set(read_filelist(phantom_root).query("Split == 'TEST'").FileName)
    assert "latency_last_ms" in row["details"]  # fp32 eager timed first and last
    int8 = rows["static-int8"]
    assert int8["details"]["quantized_ops"]["conv_int8"] == 20 and int8["precision"] == "int8"
    assert int8["size_bytes"]["state_dict"] <= 0.27 * row["size_bytes"]["state_dict"]
    assert rows["static-int8-onnxruntime"]["details"]["parity_max_abs_diff_ef"] < 2.0
    assert rows["dynamic-int8"]["details"]["quantized_ops"]["conv_int8"] == 0
    assert len(rows["static-int8-ort"]["details"]["sensitivity"]["layers"]) == 21
    n_test = (read_filelist(phantom_root).Split == "TEST").sum()
    assert row["metrics"]["n"] == n_test == len(row["predictions"]["ef_pred"])
    assert row["size_bytes"]["state_dict"] > 40e6  # ResNet-18 in fp32: ~45 MB
    assert results["run"]["environment"]["packages"]["torch"] == torch.__version__.split("+")[0]
    assert "| fp32 | resnet18-meanstd | baseline | fp32 | pytorch-eager |" in capsys.readouterr().out

    # rerun: the finished baseline and every finished variant are reused
    assert main(["run", "--config", "smoke", "--data", str(phantom_root), "--out", str(out)]) == 0
    log = (out / "run.log").read_text()
    assert "already finished" in log and "static-int8: reusing the finished variant" in log

    # bench re-times the saved artifacts (.pt2, .onnx) in one process
    assert main(["bench", str(out), "--min-runs", "2", "--min-seconds", "0"]) == 0
    bench = json.loads((out / "bench.json").read_text())
    timed = [r["variant"] for r in bench["rows"]]
    assert timed[0] == "fp32 [pytorch-eager] (first)" and timed[-1] == "fp32 [pytorch-eager] (last)"
    assert "static-int8 [torch.compile-inductor]" in timed and "static-int8-ort [onnxruntime-cpu]" in timed

    # the report is a function of results.json alone
    (out / "report.md").unlink()
    (out / "pred_vs_true.png").unlink()
    (out / "bench.json").unlink()
    (out / "baseline" / "best.pt").rename(tmp_path / "elsewhere.pt")
    assert main(["report", str(out)]) == 0
    assert "| resnet18-meanstd |" in (out / "report.md").read_text()
    assert (out / "pred_vs_true.png").stat().st_size > 1000


def test_training_resumes_after_interruption(phantom_root, tmp_path):
    cfg = apply_overrides(load_config("smoke"), ["train.epochs=2"])
    table = read_filelist(phantom_root)
    best = train(cfg, phantom_root, table, tmp_path, torch.device("cpu"))
    full = torch.load(tmp_path / LAST, weights_only=True)
    # pretend the process died after epoch 1
    first = torch.load(tmp_path / LAST, weights_only=True)
    first.update(epoch=1, finished=False, history=first["history"][:1])
    torch.save(first, tmp_path / LAST)
    train(cfg, phantom_root, table, tmp_path, torch.device("cpu"))
    resumed = torch.load(tmp_path / LAST, weights_only=True)
    assert resumed["finished"] and [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][1]["train_loss"] != full["history"][0]["train_loss"]
    model, ckpt = load_checkpoint(best)
    assert ckpt["config"]["train"]["epochs"] == 2 and not model.training


def test_other_config_in_same_folder_is_refused(phantom_root, tmp_path):
    import pytest

    from echolite import EcholiteError

    table = read_filelist(phantom_root)
    cfg = apply_overrides(load_config("smoke"), ["train.epochs=1"])
    train(cfg, phantom_root, table, tmp_path, torch.device("cpu"))
    with pytest.raises(EcholiteError, match="different config"):
        train(apply_overrides(cfg, ["train.lr=0.1"]), phantom_root, table, tmp_path,
              torch.device("cpu"))
