"""The classification task: CIFAR-10-layout reader, its safety and validation, digits, end to end."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from echolite import EcholiteError
from echolite.cli import main
from echolite.data.cifar import META, TEST_BATCH, TRAIN_BATCHES, read_cifar, stratified_split, validate
from echolite.data.digits import write_digits

CHECKER = Path(__file__).with_name("cifar_check.py")  # ../shared/tools/cifar_check.py, vendored


def _write(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def tiny_cifar(folder: Path) -> tuple[np.ndarray, list]:
    """A hand-made folder: every batch holds the same 3 images (known pixels) and labels."""
    folder.mkdir(parents=True, exist_ok=True)
    images = np.zeros((3, 3072), np.uint8)
    images[0, 0] = 255  # image 0: top-left red pixel
    images[1, 1024 + 32 * 5 + 7] = 17  # image 1: green plane, row 5, column 7
    images[2, 2048:] = 200  # image 2: all blue
    labels = [7, 0, 9]
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        _write(folder / name, {b"batch_label": b"x", b"labels": labels, b"data": images,
                               b"filenames": [b"a.png", b"b.png", b"c.png"]})
    _write(folder / META, {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072})
    return images, labels


def test_reader_gives_exact_pixels_and_labels_in_the_official_layout(tmp_path):
    images, labels = tiny_cifar(tmp_path / "cifar-10-batches-py")
    data = read_cifar(tmp_path)  # the parent of cifar-10-batches-py works too
    assert data.classes[:2] == ["class0", "class1"] and len(data.classes) == 10
    assert data.train.images.shape == (15, 3, 32, 32) and data.test.images.shape == (3, 3, 32, 32)
    assert data.test.labels.tolist() == labels and data.train.labels.tolist() == labels * 5
    t = data.test.images
    assert t[0, 0, 0, 0] == 255 and t[0].sum() == 255  # R plane, row-major
    assert t[1, 1, 5, 7] == 17 and t[1].sum() == 17
    assert (t[2, 2] == 200).all() and t[2, :2].sum() == 0


class Boom:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path):
    folder = tmp_path / "evil"
    tiny_cifar(folder)
    marker = tmp_path / "pwned"
    Boom.marker = marker
    _write(folder / "data_batch_3", {b"data": Boom(), b"labels": [0]})
    with pytest.raises(EcholiteError, match=r"data_batch_3: refusing to load posix\.system"):
        read_cifar(folder)
    assert not marker.exists()
    report = validate(folder)
    assert [Path(p.where).name for p in report.problems] == ["data_batch_3"]


@pytest.mark.parametrize("damage, file, fragment", [
    (lambda f: (f / "data_batch_2").unlink(), "data_batch_2", "missing"),
    (lambda f: (f / "test_batch").write_bytes((f / "test_batch").read_bytes()[:500]), "test_batch",
     "not a readable pickle"),
    (lambda f: _write(f / "data_batch_1", {b"data": np.zeros((3, 1024), np.uint8), b"labels": [0, 1, 2]}),
     "data_batch_1", "must be uint8 (N, 3072)"),
    (lambda f: _write(f / "data_batch_1", {b"data": np.zeros((3, 3072), np.float32), b"labels": [0, 1, 2]}),
     "data_batch_1", "must be uint8 (N, 3072)"),
    (lambda f: _write(f / "data_batch_4", {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 10]}),
     "data_batch_4", "label 10 of image 2 is outside 0..9"),
    (lambda f: _write(f / "data_batch_5", {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1]}),
     "data_batch_5", "2 labels for 3 images"),
    (lambda f: _write(f / "data_batch_5", {"data": np.zeros((3, 3072), np.uint8), "labels": [0, 1, 2]}),
     "data_batch_5", "keys must be bytes"),
    (lambda f: _write(f / META, {b"num_vis": 3072}), "batches.meta", "no b'label_names'"),
])
def test_every_validation_error_is_one_line_naming_the_file(tmp_path, capsys, damage, file, fragment):
    folder = tmp_path / "cifar-10-batches-py"
    tiny_cifar(folder)
    damage(folder)
    assert main(["validate", "--task", "cifar10", "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith(str(folder / file)) and fragment in err[0], err
    code = main(["run", "--task", "cifar10", "--config", "smoke", "--data", str(tmp_path),
                 "--out", str(tmp_path / "run")])
    assert code == 2 and "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "store").exists()  # refused before any work


def test_val_is_carved_stratified_and_deterministic():
    labels = np.repeat(np.arange(10), [50, 60, 70, 80, 90, 100, 110, 120, 130, 140])
    train, val = stratified_split(labels, 190, seed=0)
    assert len(val) == 190 and len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(labels)
    share = np.bincount(labels[val], minlength=10) / 190
    assert np.abs(share - np.bincount(labels) / len(labels)).max() < 0.01
    assert np.array_equal(val, stratified_split(labels, 190, seed=0)[1])
    assert not np.array_equal(val, stratified_split(labels, 190, seed=1)[1])


def test_digits_are_real_data_in_the_official_layout(tmp_path):
    folder = write_digits(tmp_path / "digits")
    out = subprocess.run([sys.executable, str(CHECKER), str(tmp_path / "digits")], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "ok: 1497 train, 300 test, 10 classes"
    data = read_cifar(folder)
    assert np.bincount(data.test.labels).min() >= 28  # stratified: every digit in TEST
    assert (data.train.images[:, 0] == data.train.images[:, 1]).all()  # grey in 3 equal channels
    provenance = json.loads((tmp_path / "digits" / "PROVENANCE.json").read_text())
    assert "load_digits" in provenance["source"] and provenance["images"] == 1797


@pytest.mark.slow
def test_classification_run_end_to_end_through_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--task", "cifar10", "--config", "smoke", "--out", str(out),
                 "--set", "compress.methods=[static-int8, static-int8-ort, structured50-ft-int8-ort, "
                 "distill-small-cnn-int8-ort, student-small-cnn-int8-ort]",
                 "--set", "train.epochs=3", "--set", "compress.distill_epochs=2"]) == 0
    results = json.loads((out / "results.json").read_text())
    rows = {r["name"]: r for r in results["rows"]}
    assert list(rows) == ["fp32", "static-int8", "static-int8-ort", "structured50-ft-int8-ort",
                          "distill-small-cnn-int8-ort", "student-small-cnn-int8-ort"]
    assert all(r["status"] == "ok" for r in rows.values()), [r["error"] for r in rows.values()]
    fp32 = rows["fp32"]["metrics"]
    assert fp32["values"]["accuracy"]["value"] >= 90.0 and fp32["n"] == 300
    assert set(fp32["extra"]["per_class_accuracy"]) == {str(d) for d in range(10)}
    assert np.asarray(fp32["extra"]["confusion"]).sum() == 300
    int8 = rows["static-int8"]
    assert int8["details"]["steps"][0]["quantized_ops"]["conv_int8"] == 5
    assert int8["size_bytes"]["pt2"] <= 0.35 * rows["fp32"]["size_bytes"]["state_dict"]
    stack = rows["structured50-ft-int8-ort"]
    assert [s["method"] for s in stack["details"]["steps"]] == ["structured-prune", "finetune", "ort-qdq"]
    assert stack["details"]["steps"][0]["macs_ratio"] < 0.4
    student = rows["distill-small-cnn-int8-ort"]
    assert student["family"] == "students" and student["details"]["steps"][0]["student"] == {"arch": "small-cnn"}
    assert student["details"]["steps"][0]["params"] < 0.3 * rows["fp32"]["details"]["complexity"]["params"]
    vs = student["details"]["vs_alone"]
    assert vs["alone"] == "student-small-cnn-int8-ort"
    targets = np.asarray(results["measure"]["eval"]["targets"])
    by_hand = 100 * (np.mean(np.asarray(student["prediction"]) == targets)
                     - np.mean(np.asarray(rows[vs["alone"]]["prediction"]) == targets))
    assert vs["paired_delta"]["accuracy"]["value"] == pytest.approx(by_hand)  # distilled minus alone
    assert "Does the teacher help?" in (out / "report.md").read_text()
    assert (out / "confusion.png").stat().st_size > 1000 and (out / "predictions_test.csv").is_file()
    report = (out / "report.md").read_text()
    assert "## Accuracy and size per method" in report
    assert "| static-int8-ort | int8 | onnxruntime-cpu |" in report
    assert "MAE" not in report and "Bland" not in report
    assert results["run"]["data"]["kind"] == "built-in sklearn digits in the CIFAR-10 layout"
    assert main(["bench", str(out), "--min-runs", "2", "--min-seconds", "0"]) == 0


@pytest.mark.slow
def test_search_end_to_end_through_the_cli_distils_a_student_and_checks_the_winner_on_test(tmp_path, capsys):
    out = tmp_path / "search"
    args = ["search", "--task", "cifar10", "--config", "smoke", "--out", str(out), "--budget", "5pp",
            "--objective", "size", "--set", "search.students=[teacher,small-cnn]", "--set", "search.prune=[0]",
            "--set", "search.runtimes=[int8-ort]", "--set", "compress.distill_epochs=2", "--set", "train.epochs=3"]
    assert main(args) == 0
    record = json.loads((out / "search.json").read_text())
    assert [c["name"] for c in record["candidates"]] == ["static-int8-ort", "distill-small-cnn-int8-ort"]
    assert all(c["status"] == "ok" for c in record["candidates"]), record["candidates"]
    student = record["candidates"][1]
    assert student["size_bytes"] < 0.4 * record["candidates"][0]["size_bytes"]  # 0.17 M vs 0.67 M int8 parameters
    within = [c for c in record["candidates"] if c["bound"] is not None and c["bound"] <= 5.0]
    assert record["winner"] == (min(within, key=lambda c: c["size_bytes"])["name"] if within else None)
    assert record["split"] == "VAL" and record["n"] == 100
    if record["winner"]:
        assert record["test_check"]["split"] == "TEST" and record["test_check"]["n"] == 300
    assert "winner:" in capsys.readouterr().out and (out / "search_front.png").is_file()
