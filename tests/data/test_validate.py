import pandas as pd
import pytest

from echolite.cli import main
from echolite.data.validate import validate


def _break(root):
    """Introduce one problem of each kind; returns the expected (FileName, fragment) pairs."""
    df = pd.read_csv(root / "FileList.csv")
    names = df.FileName.tolist()
    df.loc[0, "EF"] = float("nan")
    df.loc[1, "EF"] = 150.0
    df.loc[2, "Split"] = "dev"
    df.loc[3, "NumberOfFrames"] = df.loc[3, "NumberOfFrames"] + 40
    (root / "Videos" / f"{names[4]}.avi").unlink()
    (root / "Videos" / f"{names[5]}.avi").write_bytes(b"")
    (root / "Videos" / f"{names[6]}.avi").write_bytes(b"this is not a video" * 100)
    df.loc[7, "FileName"] = "../FileList"
    df = pd.concat([df, df.iloc[[8]]], ignore_index=True)  # duplicate row
    df.loc[9, "Split"] = "test"  # lower case is fine
    df.loc[10, "FileName"] = names[10] + ".avi"  # extension is fine
    df.to_csv(root / "FileList.csv", index=False)
    return [(names[0], "EF"), (names[1], "EF 150"), (names[2], "Split 'DEV'"),
            (names[3], "FileList declares"), (names[4], "missing"), (names[5], "empty file"),
            (names[6], "unreadable"), ("../FileList", "outside Videos"), (names[8], "duplicate")]


def test_clean_phantom_validates(phantom_root):
    report = validate(phantom_root)
    assert report.ok and report.n_rows == 12, [str(p) for p in report.problems]


def test_every_problem_reported_once_with_location(phantom_copy):
    expected = _break(phantom_copy)
    report = validate(phantom_copy)
    assert len(report.problems) == len(expected), [str(p) for p in report.problems]
    for name, fragment in expected:
        hits = [p for p in report.problems if p.file_name == name]
        assert len(hits) == 1 and fragment in hits[0].what, (name, [str(p) for p in hits])
    line_of_first = next(p for p in report.problems if p.file_name == expected[0][0]).where
    assert line_of_first == "FileList.csv line 2"
    assert not report.fatal and "9 problem(s) in 9 of 13 rows" in report.summary()


def test_cli_validate_exits_nonzero_with_one_line_summary(phantom_copy, capsys):
    _break(phantom_copy)
    assert main(["validate", "--data", str(phantom_copy)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 10 and "problem(s) in 9 of 13 rows" in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_drop_bad_rows_lists_reasons(phantom_copy, tmp_path, capsys):
    _break(phantom_copy)
    out = tmp_path / "dropped.csv"
    assert main(["validate", "--data", str(phantom_copy), "--drop-bad", str(out)]) == 0
    dropped = pd.read_csv(out)
    assert len(dropped) == 9 and set(dropped.columns) == {"FileName", "where", "reason"}
    assert "4 usable rows" in capsys.readouterr().out


@pytest.mark.parametrize("damage, fragment", [
    (lambda r: (r / "FileList.csv").unlink(), "FileList.csv: missing"),
    (lambda r: pd.read_csv(r / "FileList.csv").drop(columns=["EF", "Split"])
        .to_csv(r / "FileList.csv", index=False), "missing column(s) EF, Split"),
])
def test_fatal_problems(phantom_copy, damage, fragment):
    damage(phantom_copy)
    report = validate(phantom_copy)
    assert report.fatal and fragment in str(report.problems[0])


def test_video_cut_short_is_reported(phantom_copy):
    df = pd.read_csv(phantom_copy / "FileList.csv")
    for name, keep in ((df.FileName[0], 0.6), (df.FileName[1], 0.999)):
        path = phantom_copy / "Videos" / f"{name}.avi"
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])  # only part of its bytes present
    report = validate(phantom_copy)
    assert [p.file_name for p in report.problems] == list(df.FileName[:2])
    assert all("cut short" in p.what for p in report.problems)


def test_header_without_rows_is_one_fatal_line(phantom_copy, capsys):
    (phantom_copy / "FileList.csv").write_text(
        "FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split\n")
    assert main(["validate", "--data", str(phantom_copy)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "FileList.csv: has a header but no rows" in err[0] and len(err) == 2


def test_a_split_without_rows_is_an_error_before_training(phantom_copy, tmp_path, capsys):
    df = pd.read_csv(phantom_copy / "FileList.csv")
    df.loc[df.Split == "TEST", "Split"] = "TRAIN"
    df.to_csv(phantom_copy / "FileList.csv", index=False)
    report = validate(phantom_copy)
    assert report.fatal and [str(p).split(" -> ")[0] for p in report.problems] == [
        f"{phantom_copy / 'FileList.csv'}: no TEST rows (column Split)"]
    code = main(["run", "--config", "smoke", "--data", str(phantom_copy), "--out", str(tmp_path / "run")])
    assert code == 2 and "no TEST rows" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_run_refuses_broken_data_before_training(phantom_copy, tmp_path, capsys):
    _break(phantom_copy)
    code = main(["run", "--config", "smoke", "--data", str(phantom_copy), "--out",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "echolite: error:" in err and "Traceback" not in err
    assert not (tmp_path / "store").exists()
