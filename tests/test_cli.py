"""Bad input: every case is one line naming the file or key, what is wrong and what to do; a non-zero
exit; no traceback; before any long work (the README's troubleshooting list is this corpus)."""

import pytest

from echolite.cli import main


def _break_filelist_empty(root):
    (root / "FileList.csv").write_bytes(b"")


def _break_tracings_header(root):
    (root / "VolumeTracings.csv").write_bytes(b"\xff\xfe\x00\x81garbage\x00\n\x81\x82\n")


def _break_tracings_columns(root):
    (root / "VolumeTracings.csv").write_text("FileName,X1,Y1\n")


CONFIG_CASES = [  # (--set, the message)
    ("compress.qat_epochs=0", "compress.qat_epochs must be >= 1, got 0"),
    ("compress.observer=foo", "compress.observer must be one of minmax, histogram, percentile, but got 'foo'"),
    ("compress.ort_calibrator=x", "compress.ort_calibrator must be one of minmax, entropy, percentile, but got 'x'"),
    ("compress.finetune_lr=0", "compress.finetune_lr must be > 0 (a learning rate), got 0.0"),
    ("compress.calib_items=0", "compress.calib_items must be >= 1, got 0"),
    ("data.stats_items=0", "data.stats_items must be >= 1 (TRAIN videos for the pixel statistics), got 0"),
    ("train.lrr=1", "unknown config key 'train.lrr'"),
    ("train.epochs=2.5", "train.epochs must be integer, but got 2.5"),
    ("train.amp=maybe", "train.amp must be one of auto, off, bf16, fp16, but got 'maybe'"),
    ("compress.methods=[static-int8-typo]", "unknown method 'static-int8-typo'"),
    ("data.phantom_version=3", "data.phantom_version must be one of 1, 2, but got 3"),
    ("model.channels=rgb", "model.channels must be one of grey, motion, but got 'rgb'"),
]


@pytest.mark.parametrize("override, message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_a_bad_setting_is_one_line_before_any_work(override, message, tmp_path, capsys):
    code = main(["run", "--config", "smoke", "--set", override, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("echolite: error: --set: ") and message in err[0], err[0]
    assert not (tmp_path / "store").exists()  # nothing was generated or trained


@pytest.mark.parametrize("flags", [["--pretrained", "/nonexistent/r18.pth"],
                                   ["--set", "model.pretrained=/nonexistent/r18.pth"]])
def test_a_missing_pretrained_file_is_one_line_before_any_work(flags, tmp_path, capsys):
    code = main(["run", "--config", "smoke", *flags, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert "model.pretrained: /nonexistent/r18.pth: no such file" in err[0], err[0]
    assert not (tmp_path / "store").exists()  # nothing was generated or trained


DATA_CASES = [  # (how the data is broken, the file named, the message)
    (_break_filelist_empty, "FileList.csv", "is empty (0 bytes or no header)"),
    (_break_tracings_header, "VolumeTracings.csv", "header cannot be read"),
    (_break_tracings_columns, "VolumeTracings.csv", "missing column(s) X2, Y2, Frame"),
]


@pytest.mark.parametrize("damage, file, message", DATA_CASES, ids=[c[1] + ": " + c[2] for c in DATA_CASES])
def test_a_bad_dataset_is_named_before_any_work(damage, file, message, phantom_copy, tmp_path, capsys):
    damage(phantom_copy)
    assert main(["validate", "--data", str(phantom_copy)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    problem = next(line for line in err.splitlines() if file in line)
    assert message in problem and "->" in problem  # what is wrong -> what to do
    code = main(["run", "--config", "smoke", "--data", str(phantom_copy), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "echolite: error:" in err.splitlines()[-1]
    assert not list((tmp_path / "store").glob("baseline-*"))  # nothing trained


def test_evaluate_and_validate_need_only_the_split_asked_for(phantom_copy, tmp_path, capsys, monkeypatch):
    """Issue 16: external validation sets hold only TEST rows."""
    import pandas as pd
    import torch

    from echolite.config import apply_overrides, load_config
    from echolite.tasks.ef import EFTask

    df = pd.read_csv(phantom_copy / "FileList.csv")
    df[df["Split"] == "TEST"].to_csv(phantom_copy / "FileList.csv", index=False)
    assert main(["validate", "--data", str(phantom_copy)]) == 1  # the full check still wants every split
    assert main(["validate", "--data", str(phantom_copy), "--split", "TEST"]) == 0
    capsys.readouterr()
    cfg = apply_overrides(load_config("smoke"), [f"data.root={phantom_copy}"])
    model = EFTask.build_model(cfg, {"pixel_mean": [40.0] * 3, "pixel_std": [50.0] * 3, "ef_mean": 55.0,
                                     "ef_std": 12.0})
    torch.save({"config": cfg.to_dict(), "stats": {}, "model": model.state_dict()}, tmp_path / "best.pt")
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--checkpoint", str(tmp_path / "best.pt"), "--data", str(phantom_copy),
                 "--out", str(tmp_path / "ev")]) == 0
    assert len(pd.read_csv(tmp_path / "ev" / "predictions_test.csv")) == len(df[df["Split"] == "TEST"])
