"""Scale: the decoded-frame cache, and training under torchrun (DDP, gloo) on the real EF model."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from echolite.config import apply_overrides, load_config
from echolite.data import framecache
from echolite.data.echonet import EchoClips
from echolite.data.phantom import synthesize
from echolite.data.video import read_frames, write_video
from echolite.tasks.ef import EFTask
from echolite.train import BEST, LAST

TORCHRUN = Path(sys.executable).with_name("torchrun")


def test_frame_cache_serves_the_decoded_frames_and_is_rebuilt_when_a_source_changes(phantom_copy, tmp_path):
    sets = [f"data.root={phantom_copy}", f"data.cache_dir={tmp_path / 'c'}"]
    cfg = apply_overrides(load_config("smoke"), sets)
    colour = phantom_copy / "Videos" / f"{EFTask.prepare(cfg, tmp_path).table['FileName'][4]}.avi"
    frames = read_frames(colour)  # the same video with unequal colour channels: one conversion
    frames[..., 0] //= 2          # (not a channel pick) must give the same grey on both paths
    write_video(colour, frames, fps=50.0)
    data = EFTask.prepare(cfg, tmp_path)
    names = data.table["FileName"].tolist()
    assert framecache.open_cache(data.root, data.table, data.key, cfg.data.cache_dir, False) is None
    cache = framecache.open_cache(data.root, data.table, data.key, cfg.data.cache_dir, True, workers=2)
    assert len(cache.videos) == len(names) and framecache.verify(cache.folder) == []
    avi = EchoClips(data.root, data.table, 8, 112, shift_px=4)
    cached = EchoClips(data.root, data.table, 8, 112, shift_px=4, cache=cache)
    for item in (0, (3, 12345), 4, len(names) - 1):  # evaluation and training sampling, colour
        clip, ef = cached[item]
        assert clip.shape == (8, 1, 112, 112) and clip.dtype == torch.uint8
        assert torch.equal(clip, avi[item][0]) and ef == avi[item][1]
    # the task reads it whenever it exists
    assert EFTask(cfg, data).cache is not None
    # a source video that changes makes the cache unusable until rebuilt
    video = phantom_copy / "Videos" / f"{names[2]}.avi"
    os.utime(video, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert "source video(s) changed" in framecache.check(cache.folder, data.root, names, data.key)
    assert EFTask(cfg, data).cache is None  # not silently used
    rebuilt = framecache.open_cache(data.root, data.table, data.key, cfg.data.cache_dir, True)
    assert framecache.check(rebuilt.folder, data.root, names, data.key) is None
    # corruption of the cached frames is found by the full check
    with open(rebuilt.folder / framecache.FRAMES, "r+b") as f:
        f.seek(rebuilt.videos[names[1]]["offset"] * 112 * 112 + 5000)
        f.write(b"\xff" * 64)
    assert framecache.verify(rebuilt.folder) == [names[1]]


def _train(args, out, world=1, **popen):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    launcher = [sys.executable] if world == 1 else \
        [str(TORCHRUN), "--standalone", f"--nproc-per-node={world}"]
    cmd = [*launcher, "-m", "echolite", *args, "--out", str(out)]
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out / LAST, weights_only=True)


@pytest.fixture(scope="module")
def phantom40(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("phantom40"), 40, seed=3, workers=2)


def test_torchrun_two_processes_train_like_one_with_the_same_global_batch(phantom40, tmp_path):
    """train.batch_size is the global batch: 8 = one process x 8 = two processes x 4."""
    args = ["train", "--config", "smoke", "--data", str(phantom40), "--set", "train.epochs=3",
            "--set", "train.batch_size=8", "--set", "train.lr=3e-4"]
    # BatchNorm frozen: the same items, augmentation and averaged gradients at every step, so
    # two processes compute what one does up to float summation order
    one = _train([*args, "--set", "train.freeze_bn=true"], tmp_path / "one")
    two = _train([*args, "--set", "train.freeze_bn=true"], tmp_path / "two", world=2)
    assert {p.name for p in (tmp_path / "two").iterdir()} == {BEST, LAST, "run.log"}  # process 0 wrote
    assert two["finished"] and [h["epoch"] for h in two["history"]] == [1, 2, 3]
    for a, b in zip(one["history"], two["history"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.01), (a, b)
        assert b["val_score"] == pytest.approx(a["val_score"], rel=0.01), (a, b)
    assert (tmp_path / "two" / "run.log").read_text().count("train epoch 3/3") == 1  # one process logs
    # BatchNorm training: each process normalises its own 4 clips (no SyncBatchNorm on CPUs; on
    # GPUs echolite converts to SyncBatchNorm), so the curves only agree loosely
    one_bn, two_bn = _train(args, tmp_path / "one_bn"), _train(args, tmp_path / "two_bn", world=2)
    loss = [(h1["train_loss"], h2["train_loss"]) for h1, h2 in zip(one_bn["history"], two_bn["history"])]
    assert all(abs(a - b) <= 0.4 * a for a, b in loss), loss


def test_a_killed_torchrun_training_resumes_in_one_process(phantom40, tmp_path):
    args = ["train", "--config", "smoke", "--data", str(phantom40), "--set", "train.epochs=3",
            "--set", "train.batch_size=8"]
    out = tmp_path / "run"
    proc = _train(args, out, world=2, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if (out / LAST).is_file() and torch.load(out / LAST, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # a real kill of every process, mid-epoch
    proc.wait()
    killed = torch.load(out / LAST, weights_only=True)
    assert 1 <= killed["epoch"] < 3 and not killed["finished"]
    resumed = _train(args, out)  # world size 1 now
    assert resumed["finished"] and [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][0] == killed["history"][0]
