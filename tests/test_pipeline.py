"""End-to-end: the smoke preset through the CLI, reuse, bench, report; resume; evaluation outputs."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from echolite import env, pipeline
from echolite.cli import main
from echolite.config import apply_overrides, load_config
from echolite.data.echonet import read_filelist
from echolite.data.phantom import synthesize
from echolite.identity import baseline_inputs
from echolite.tasks.ef import EFTask
from echolite.train import LAST, load_checkpoint, train_baseline

RUN_FILES = {"config.yaml", "environment.json", "run.log", "results.json", "report.md", "pareto.png",
             "agreement.png", "sensitivity.png", "example_input.pt", "predictions_test.csv",
             "run-identity.json", "best.pt"}
SMOKE_ROWS = ["fp32", "fp32-onnxruntime", "dynamic-int8", "static-int8", "static-int8-ort",
              "static-int8-ort-fallback"]
CPU = torch.device("cpu")


@pytest.mark.slow
def test_smoke_run_end_to_end(phantom_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--config", "smoke", "--data", str(phantom_root), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == RUN_FILES
    results = json.loads((out / "results.json").read_text())
    rows = {r["name"]: r for r in results["rows"]}
    assert [r["name"] for r in results["rows"]] == SMOKE_ROWS
    assert all(r["status"] == "ok" for r in results["rows"]), [r["error"] for r in results["rows"]]
    fp32 = rows["fp32"]
    assert fp32["backend"] == "pytorch-eager" and fp32["latency_ms"]["p50"] > 0
    assert fp32["size_bytes"]["state_dict"] > 40e6  # ResNet-18 in fp32: ~45 MB
    int8 = rows["static-int8"]
    assert int8["details"]["steps"][0]["quantized_ops"]["conv_int8"] == 20 and int8["precision"] == "int8"
    assert int8["details"]["runtime"]["int8_kernels"]["qconv"] == 20  # checked in the measured row
    assert int8["size_bytes"]["pt2"] <= 0.35 * fp32["size_bytes"]["state_dict"]
    assert rows["static-int8-ort"]["size_bytes"]["onnx"] <= 0.27 * fp32["size_bytes"]["state_dict"]
    assert rows["dynamic-int8"]["details"]["steps"][0]["quantized_ops"]["conv_int8"] == 0
    sens = rows["static-int8-ort-fallback"]["details"]["steps"][0]["sensitivity"]["layers"]
    assert len(sens) == 21 and "backbone.layer3.1.conv2" in {s["layer"] for s in sens}
    test = read_filelist(phantom_root).query("Split == 'TEST'")
    csv = pd.read_csv(out / "predictions_test.csv")
    assert csv["FileName"].tolist() == test["FileName"].tolist()
    assert csv["EF"].round(3).tolist() == test["EF"].round(3).tolist()
    assert csv["EF_pred"].round(3).tolist() == [round(p, 3) for p in fp32["prediction"]]
    assert fp32["metrics"]["n"] == len(test) == results["measure"]["eval"]["n"]
    assert results["run"]["environment"]["packages"]["torch"] == torch.__version__.split("+")[0]
    assert results["run"]["resolved"]["amp"] == "off (fp32)"
    assert "| fp32 | baseline | fp32 | pytorch-eager |" in capsys.readouterr().out

    # rerun: the baseline and every built stage are reused, every row is measured again
    logged = len((out / "run.log").read_text())
    assert main(["run", "--config", "smoke", "--data", str(phantom_root), "--out", str(out)]) == 0
    log = (out / "run.log").read_text()[logged:]
    assert "baseline: reusing" in log and "building" not in log
    assert "static-int8: step 1/1 static_ptq(): reusing" in log
    again = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in again["rows"]] == SMOKE_ROWS
    assert again["rows"][3]["latency_ms"] != int8["latency_ms"]  # timed in this process

    # bench re-times every saved artifact (.pt2, .onnx, state dicts) in one process, interleaved
    assert main(["bench", str(out), "--min-runs", "2", "--min-seconds", "0", "--rounds", "2"]) == 0
    bench = json.loads((out / "bench.json").read_text())
    assert [r["name"] for r in bench["rows"]] == SMOKE_ROWS and not bench["not_timed"]
    ref_rounds = bench["reference_p50_ms_rounds"]
    assert len(ref_rounds) == 2 and bench["reference_drift"] == pytest.approx(max(ref_rounds) / min(ref_rounds) - 1,
                                                                               abs=1e-3)
    ort_row = next(r for r in bench["rows"] if r["name"] == "static-int8-ort")
    by_hand = np.median(np.array(ort_row["p50_ms_rounds"]) / np.array(ref_rounds))  # same-round ratios
    assert ort_row["ratio_vs_fp32_eager"] == pytest.approx(by_hand, rel=1e-2)
    assert ort_row["ratio_min"] <= ort_row["ratio_vs_fp32_eager"] <= ort_row["ratio_max"]

    # predict on the run's own TEST videos: one clip is the row's clip; a bundle without torch agrees
    capsys.readouterr()
    assert main(["predict", "--model", str(out / "static-int8-ort"), "--split", "TEST", "--clips", "2",
                 "--csv", str(tmp_path / "test.csv")]) == 0
    assert "one clip vs the run's row: max |ΔEF| 0.0000" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "test.csv")
    assert table["FileName"].tolist() == test["FileName"].tolist() and (table["clips"] == 2).all()
    np.testing.assert_allclose(table["EF_pred_one_clip"], rows["static-int8-ort"]["prediction"], atol=1e-3)
    bundle = tmp_path / "bundle"
    assert main(["export", str(out), "static-int8-ort", "--out", str(bundle), "--check"]) == 0
    printed = capsys.readouterr().out
    assert f"{len(test)} TEST videos, one clip each: max |EF - the run's row| 0.00" in printed
    assert {p.name for p in bundle.iterdir()} == {"model.onnx", "preprocess.json", "MODEL_CARD.md", "predict.py",
                                                  "requirements.txt", "echolite"}
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "Not a medical device" in card and "phantom" in card and "paired Δ" in card
    assert main(["export", str(out), "static-int8-ort", "--out", str(bundle)]) == 2  # never overwrites
    assert main(["export", str(out), "static-int8", "--out", str(tmp_path / "b2")]) == 2  # needs PyTorch
    assert "needs PyTorch" in capsys.readouterr().err

    # the report is a function of results.json alone
    for name in ("report.md", "pareto.png", "agreement.png"):
        (out / name).unlink()
    for ckpt in (tmp_path / "store").glob("baseline-*/*.pt"):
        ckpt.unlink()
    assert main(["report", str(out)]) == 0
    assert "| static-int8 | static-ptq | int8 |" in (out / "report.md").read_text()
    assert (out / "agreement.png").stat().st_size > 1000


def _task(root, out, *sets):
    cfg = apply_overrides(load_config("smoke"), [f"data.root={root}", *sets])
    return pipeline.prepare(cfg, out)


def _train(task, folder):
    return train_baseline(task, folder, CPU, None, baseline_inputs(task, None))


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_weights(phantom_root, tmp_path, monkeypatch):
    task = _task(phantom_root, tmp_path / "run", "train.epochs=2")
    _train(task, tmp_path / "a")
    real, calls = task.val_score, []

    def dies_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is killed during epoch 2
        return real(*args, **kwargs)

    monkeypatch.setattr(task, "val_score", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        _train(task, tmp_path / "b")
    monkeypatch.undo()
    assert torch.load(tmp_path / "b" / LAST, weights_only=True)["epoch"] == 1
    _train(task, tmp_path / "b")  # resumes from epoch 1
    a = torch.load(tmp_path / "a" / LAST, weights_only=True)
    b = torch.load(tmp_path / "b" / LAST, weights_only=True)
    assert b["finished"] and [h["epoch"] for h in b["history"]] == [1, 2]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert [h["val_score"] for h in a["history"]] == [h["val_score"] for h in b["history"]]
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]


def test_a_kill_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / LAST
    env.atomic_torch_save({"epoch": 1, "w": torch.ones(3)}, path)

    def killed_mid_write(obj, f):
        Path(f).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(env.torch, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        env.atomic_torch_save({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [LAST]  # no temporary file left behind


def test_the_data_key_is_the_content_of_every_video_not_where_it_lies(phantom_copy, tmp_path, caplog):
    """Issue 16 (frame cache and keys by path and mtime): a moved dataset, or a video re-written with
    the same bytes, keeps its key; one changed byte of one video changes it."""
    before = _task(phantom_copy, tmp_path / "run").data.key
    video = sorted((phantom_copy / "Videos").iterdir())[0]
    video.write_bytes(video.read_bytes())  # re-written: same bytes, another mtime
    assert _task(phantom_copy, tmp_path / "run").data.key == before
    moved = phantom_copy.rename(tmp_path / "moved")
    assert _task(moved, tmp_path / "run").data.key == before
    data = bytearray((moved / "Videos" / video.name).read_bytes())
    data[-100] ^= 1  # one bit of one frame's JPEG data
    (moved / "Videos" / video.name).write_bytes(bytes(data))
    assert _task(moved, tmp_path / "run").data.key != before


def test_a_training_folder_of_other_data_is_refused_and_the_run_key_covers_the_data(phantom_root, tmp_path):
    from echolite import EcholiteError

    other = synthesize(tmp_path / "other", 12, seed=4)
    task_a = _task(phantom_root, tmp_path / "run", "train.epochs=1")
    task_b = _task(other, tmp_path / "run", "train.epochs=1")
    fa, fb = baseline_inputs(task_a, None), baseline_inputs(task_b, None)
    assert fa["data_key"] != fb["data_key"] and fa["train"] == fb["train"]
    _train(task_a, tmp_path / "ckpt")
    with pytest.raises(EcholiteError, match="holds a training made from other data or settings"):
        _train(task_b, tmp_path / "ckpt")


def _checkpoint(tmp_path, root):
    cfg = apply_overrides(load_config("smoke"), [f"data.root={root}"])
    torch.manual_seed(0)
    model = EFTask.build_model(cfg, {"pixel_mean": [40.0] * 3, "pixel_std": [50.0] * 3, "ef_mean": 55.0,
                                     "ef_std": 12.0})
    with torch.no_grad():  # give BatchNorm statistics that differ per video
        model.train()(torch.rand(2, 8, 3, 112, 112) * 255)
    path = tmp_path / "run" / "best.pt"
    path.parent.mkdir(parents=True)
    torch.save({"config": cfg.to_dict(), "stats": {"pixel_mean": [40.0] * 3, "pixel_std": [50.0] * 3,
                                                   "ef_mean": 55.0, "ef_std": 12.0},
                "model": model.state_dict()}, path)
    return path


def test_shuffled_filelist_keeps_names_targets_and_predictions_together(phantom_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = _checkpoint(tmp_path, phantom_copy)
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(phantom_copy), "--out", "a"]) == 0
    df = pd.read_csv(phantom_copy / "FileList.csv")
    df.sample(frac=1.0, random_state=3).to_csv(phantom_copy / "FileList.csv", index=False)
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(phantom_copy), "--out", "b"]) == 0
    a = pd.read_csv(tmp_path / "a" / "predictions_test.csv").set_index("FileName")
    b = pd.read_csv(tmp_path / "b" / "predictions_test.csv").set_index("FileName")
    truth = df.set_index("FileName")["EF"]
    assert list(a.index) != list(b.index) and set(a.index) == set(b.index)  # really shuffled
    assert (b["EF"] - truth.loc[b.index]).abs().max() < 1e-3  # each name keeps its own EF
    assert (b["EF_pred"] - a.loc[b.index, "EF_pred"]).abs().max() < 1e-3  # and its own prediction
    assert a["EF_pred"].nunique() == len(a)


def test_evaluate_on_other_data_never_writes_into_the_run(phantom_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = _checkpoint(tmp_path, phantom_root)
    (ckpt.parent / "predictions_test.csv").write_text("the run's own file\n")
    before = {p.name: p.stat().st_mtime_ns for p in ckpt.parent.iterdir()}
    other = synthesize(tmp_path / "other", 6, seed=9)
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(other)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in ckpt.parent.iterdir()} == before
    (out,) = [p for p in (tmp_path / "runs" / "evaluate").iterdir() if p.name != "store"]
    # named by the data folder and the checkpoint, each with a digest of its full path
    assert re.fullmatch(r"other-[0-9a-f]{6}-test-ckpt[0-9a-f]{8}", out.name), out.name
    assert (out / "predictions_test.csv").is_file()
    assert (ckpt.parent / "predictions_test.csv").read_text() == "the run's own file\n"
    _, cfg, _, _ = load_checkpoint(ckpt)
    assert cfg.data.root == str(phantom_root)
