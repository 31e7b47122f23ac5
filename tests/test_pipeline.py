"""End-to-end: the smoke preset through the CLI, resume, reuse and report regeneration."""

import json

import torch

from echolite.cli import main
from echolite.config import apply_overrides, load_config
from echolite.data.echonet import read_filelist
from echolite.train import LAST, load_checkpoint, train

RUN_FILES = {"config.yaml", "environment.json", "run.log", "results.json", "report.md",
             "pred_vs_true.png", "baseline"}


def test_smoke_run_end_to_end(phantom_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--config", "smoke", "--data", str(phantom_root), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert {p.name for p in (out / "baseline").iterdir()} == {"best.pt", "last.pt",
                                                              "predictions_test.csv"}
    results = json.loads((out / "results.json").read_text())
    (row,) = results["rows"]
    assert row["name"] == "fp32" and row["status"] == "ok" and row["backend"] == "pytorch-eager"
    n_test = (read_filelist(phantom_root).Split == "TEST").sum()
    assert row["metrics"]["n"] == n_test == len(row["predictions"]["ef_pred"])
    assert row["size_bytes"]["state_dict"] > 40e6  # ResNet-18 in fp32: ~45 MB
    assert results["run"]["environment"]["packages"]["torch"] == torch.__version__.split("+")[0]
    assert "| resnet18-meanstd | baseline | fp32 | pytorch-eager |" in capsys.readouterr().out

    # rerun: the finished baseline is reused, not retrained
    assert main(["run", "--config", "smoke", "--data", str(phantom_root), "--out", str(out)]) == 0
    assert "already finished" in (out / "run.log").read_text()

    # the report is a function of results.json alone
    (out / "report.md").unlink()
    (out / "pred_vs_true.png").unlink()
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
