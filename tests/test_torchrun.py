"""Scale: training under torchrun (DDP, gloo) on the real EF model, and what `echolite run` makes of it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from echolite.data.phantom import synthesize
from echolite.train import BEST, LAST

TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.slow


def _last(out: Path) -> Path | None:
    """The baseline's last.pt in the store beside ``out`` (echolite train trains into the store)."""
    found = sorted((out.parent / "store").glob(f"baseline-*/{LAST}"))
    return found[0] if found else None


def _train(args, out, world=1, **popen):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    launcher = [sys.executable] if world == 1 else \
        [str(TORCHRUN), "--standalone", f"--nproc-per-node={world}"]
    cmd = [*launcher, "-m", "echolite", *args, "--out", str(out)]
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(_last(out), weights_only=True)


@pytest.fixture(scope="module")
def phantom40(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("phantom40"), 40, seed=3, workers=2)


def test_torchrun_two_processes_train_like_one_with_the_same_global_batch(phantom40, tmp_path):
    """train.batch_size is the global batch: 8 = one process x 8 = two processes x 4."""
    args = ["train", "--config", "smoke", "--data", str(phantom40), "--set", "train.epochs=3",
            "--set", "train.batch_size=8", "--set", "train.lr=3e-4"]
    # BatchNorm frozen: the same items, augmentation and averaged gradients at every step, so
    # two processes compute what one does up to float summation order
    one = _train([*args, "--set", "train.freeze_bn=true"], tmp_path / "one" / "run")  # own stores: no reuse
    two = _train([*args, "--set", "train.freeze_bn=true"], tmp_path / "two" / "run", world=2)
    assert {p.name for p in (tmp_path / "two" / "run").iterdir()} == {BEST, "run.log", "run-identity.json"}
    assert two["finished"] and [h["epoch"] for h in two["history"]] == [1, 2, 3]
    for a, b in zip(one["history"], two["history"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.01), (a, b)
        assert b["val_score"] == pytest.approx(a["val_score"], rel=0.01), (a, b)
    log = (tmp_path / "two" / "run" / "run.log").read_text()
    assert log.count("train epoch 3/3") == 1  # one process logs
    # what trained is logged and recorded (issue 16: a torchrun training looked like a single one)
    assert "2 process(es) (gloo), 4 items per process and step (global batch 8)" in log
    assert two["processes"]["world_size"] == 2 and two["processes"]["backend"] == "gloo"
    assert one["processes"]["world_size"] == 1
    # BatchNorm training: each process normalises its own 4 clips (no SyncBatchNorm on CPUs; on
    # GPUs echolite converts to SyncBatchNorm), so the curves only agree loosely
    one_bn = _train(args, tmp_path / "one_bn" / "run")
    two_bn = _train(args, tmp_path / "two_bn" / "run", world=2)
    loss = [(h1["train_loss"], h2["train_loss"]) for h1, h2 in zip(one_bn["history"], two_bn["history"])]
    assert abs(loss[0][0] - loss[0][1]) <= 0.1 * loss[0][0], loss  # the same start, then apart
    assert loss[-1][0] < loss[0][0] and loss[-1][1] < loss[0][1], loss  # both learn


def test_a_killed_torchrun_training_resumes_in_one_process(phantom40, tmp_path):
    args = ["train", "--config", "smoke", "--data", str(phantom40), "--set", "train.epochs=3",
            "--set", "train.batch_size=8"]
    out = tmp_path / "run"
    proc = _train(args, out, world=2, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        last = _last(out)
        if last is not None and torch.load(last, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # a real kill of every process, mid-epoch
    proc.wait()
    killed = torch.load(_last(out), weights_only=True)
    assert 1 <= killed["epoch"] < 3 and not killed["finished"]
    resumed = _train(args, out)  # world size 1 now
    assert resumed["finished"] and [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][0] == killed["history"][0]


def test_train_under_torchrun_then_run_trains_once_and_measures_that_checkpoint(phantom40, tmp_path):
    """Issue 16: `echolite train --out O` (two processes) then `echolite run --out O`: one training,
    and the run's rows come from that checkpoint."""
    settings = ["--config", "smoke", "--data", str(phantom40), "--set", "train.epochs=2", "--set",
                "train.batch_size=8", "--set", "compress.methods=[static-int8-ort]"]
    out = tmp_path / "O"
    trained = _train(["train", *settings], out, world=2)
    assert (out / BEST).resolve() == _last(out).with_name(BEST).resolve()  # O/best.pt is the store's
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "echolite", "run", *settings, "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (out / "run.log").read_text()
    assert log.count("train epoch 1/2") == 1 and "baseline: reusing" in log
    results = json.loads((out / "results.json").read_text())
    baseline = results["rows"][0]["details"]["baseline"]
    assert baseline["store"] == _last(out).parent.name and baseline["best_epoch"] == trained["best_epoch"]
    assert baseline["processes"]["world_size"] == 2 and results["run"]["resolved"]["processes"] == 2
