"""``echolite predict`` and the export bundle's runner: videos of any container, size, frame rate and
colour read as training reads them, clips spread over the whole video and averaged, one-line
errors for unreadable videos, and a bundle that runs with ``import torch`` failing."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from echolite import EcholiteError
from echolite.cli import main
from echolite.data.echonet import EchoClips, read_filelist, video_path
from echolite.data.video import clip_indices, window_indices, write_video
from echolite.deploy import bundle, runner
from echolite.deploy.runner import decode_video, video_clips

PREP = {"n_frames": 4, "size": 32, "sampling": "window", "window_s": 0.6, "clips": 3}


def colour_video(path: Path, n: int, h: int, w: int, fps: float, fourcc: str) -> np.ndarray:
    """A colour video whose three channels differ (written with OpenCV); returns the BGR frames."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    frames[..., 0] //= 2  # unequal channels: grey conversion matters
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h), True)
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return frames


def by_hand(path: Path, size: int) -> np.ndarray:
    """Every frame decoded with OpenCV directly, BT.601 grey, INTER_AREA to size (the training recipe)."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (size, size), interpolation=cv2.INTER_AREA))
    cap.release()
    return np.stack(out)


@pytest.mark.parametrize("suffix, fourcc, h, w, fps", [(".mp4", "mp4v", 224, 224, 30.0),
                                                      (".avi", "MJPG", 98, 130, 25.0)])  # MJPG: even sizes
def test_any_container_size_and_colour_reads_as_training_does(tmp_path, suffix, fourcc, h, w, fps):
    path = tmp_path / f"v{suffix}"
    colour_video(path, 40, h, w, fps, fourcc)
    frames = decode_video(path, 32)
    assert frames.shape == (40, 32, 32) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, by_hand(path, 32))
    batch, info = runner.clips_of(path, PREP, 3)
    assert batch.shape == (3, 4, 1, 32, 32) and batch.dtype == np.float32
    assert info == {"frames": 40, "fps": fps, "width": w, "height": h}


def test_one_clip_of_a_phantom_video_is_the_clip_training_evaluates(phantom_root):
    """predict (decode every frame, header frame rate) and the training data path (FileList's counts and
    frame rate, frames read by seeking, or from the cache) give the same clip, bit for bit."""
    table = read_filelist(phantom_root)
    ds = EchoClips(phantom_root, table, n_frames=8, size=112)
    prep = {"n_frames": 8, "size": 112, "sampling": "window", "window_s": 1.2, "clips": 1}
    for i in (0, 5):
        batch, info = runner.clips_of(video_path(phantom_root, table.FileName[i]), prep, 1)
        assert info["frames"] == table.NumberOfFrames[i]
        np.testing.assert_array_equal(batch[0], ds[i][0].numpy().astype(np.float32))


def test_clips_spread_over_the_whole_video_and_one_clip_is_the_evaluation_clip():
    one = window_indices(100, 4, 50.0, 0.6)  # stride 7.5, centred: the clip a run's row is scored on
    np.testing.assert_array_equal(video_clips(100, 4, 50.0, "window", 0.6, 1)[0], one)
    clips = video_clips(100, 4, 50.0, "window", 0.6, 3)
    span = one[-1] - one[0]
    assert [c[0] for c in clips] == [0, round((99 - span) / 2), 99 - span]  # first frame ... last frame
    assert all(np.array_equal(np.diff(c), np.diff(one)) for c in clips)  # each keeps the stride
    spread = video_clips(71, 8, 50.0, "spread", 1.2, 2)
    np.testing.assert_array_equal(spread[0], [0, 10, 20, 30, 40, 50, 60, 70])
    np.testing.assert_array_equal(spread[1], [5, 15, 25, 35, 45, 55, 65, 70])  # half a step on, clipped
    assert len(video_clips(5, 8, 50.0, "window", 1.2, 4)) == 1  # shorter than a window: one clip, once
    np.testing.assert_array_equal(clip_indices(71, 8, 50.0, "spread", 1.2), spread[0])


def test_the_video_ef_is_the_mean_of_its_clips_with_their_spread(tmp_path):
    frames = np.stack([np.full((32, 32), 2 * i, np.uint8) for i in range(100)])
    write_video(tmp_path / "ramp.avi", frames, fps=50)

    def run(x):  # a "model" reading the mean pixel of the clip
        assert x.shape == (1, 4, 1, 32, 32) and x.dtype == np.float32
        return np.array([x.mean()])

    row = runner.predict_video(tmp_path / "ramp.avi", run, PREP, 3)
    decoded = decode_video(tmp_path / "ramp.avi", 32).astype(np.float64)
    one = window_indices(100, 4, 50.0, 0.6)
    offsets, span = one - one[0], one[-1] - one[0]
    expected = [decoded[s + offsets].mean() for s in (0, round((99 - span) / 2), 99 - span)]
    assert row["clips"] == 3 and row["EF_pred"] == pytest.approx(np.mean(expected), abs=1e-4)
    assert row["EF_sd"] == pytest.approx(np.std(expected), abs=1e-4)
    assert row["EF_min"] == pytest.approx(min(expected), abs=1e-4) and row["EF_sd"] > 10  # a ramp moves
    path = runner.write_csv([row], tmp_path / "out.csv")
    table = pd.read_csv(path)
    assert list(table.columns[:3]) == ["FileName", "EF_pred", "EF_sd"] and "clips" in table
    assert table.loc[0, "FileName"] == "ramp.avi" and table.loc[0, "clips"] == 3


def test_an_unreadable_video_is_one_line_naming_it_before_any_prediction(tmp_path, capsys):
    good = tmp_path / "videos"
    good.mkdir()
    write_video(good / "a.avi", np.zeros((10, 32, 32), np.uint8), fps=50)
    (good / "b.avi").write_bytes(b"not a video at all")
    with pytest.raises(EcholiteError, match="b.avi: cannot be opened as a video"):
        runner.find_videos([good])
    with pytest.raises(EcholiteError, match="no video files"):
        runner.find_videos([tmp_path / "videos" / "a.avi", tmp_path])  # a folder without videos
    fake = make_bundle(tmp_path / "bundle")
    capsys.readouterr()
    assert main(["predict", str(good), "--model", str(fake)]) == 2
    printed = capsys.readouterr()
    err = printed.err.strip()
    assert err.count("\n") == 0 and "b.avi: cannot be opened" in err
    assert "a.avi" not in printed.out  # nothing predicted before the check


def make_bundle(folder: Path) -> Path:
    """A bundle folder by hand: preprocess.json and a tiny ONNX 'model' (mean pixel / 4)."""
    import torch

    class Mean(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(1, 2, 3, 4)) / 4

    folder.mkdir(parents=True)
    torch.onnx.export(Mean(), (torch.rand(2, 4, 1, 32, 32),), str(folder / "model.onnx"), dynamo=True,
                      dynamic_shapes=({0: torch.export.Dim("batch")},), input_names=["clips"])
    (folder / runner.PREPROCESS_FILE).write_text(json.dumps(
        {**PREP, "model": {"file": "model.onnx", "runtime": "onnxruntime"}}))
    return folder


def test_a_bundle_runs_without_torch_and_gives_the_csv_of_echolite_predict(tmp_path):
    """The bundle's runner files (copied from the package) with ``import torch`` failing: the same
    rows as ``echolite predict`` with the same bundle in this process."""
    folder = make_bundle(tmp_path / "bundle")
    for rel in bundle.CARRIED:
        (folder / "echolite" / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / "echolite" / rel).write_bytes((bundle.PACKAGE / rel).read_bytes())
    (folder / "predict.py").write_text(bundle.LAUNCHER.format(runtime="onnxruntime"))
    videos = tmp_path / "videos"
    videos.mkdir()
    colour_video(videos / "c.mp4", 30, 224, 224, 30.0, "mp4v")
    write_video(videos / "g.avi", np.stack([np.full((50, 60), i, np.uint8) for i in range(60)]), fps=50)
    env = bundle.torch_blocker(tmp_path / "blocker")
    blocked = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "torch is blocked" in blocked.stderr  # the blocker works
    done = subprocess.run([sys.executable, str(folder / "predict.py"), str(videos), "--csv", str(tmp_path / "b.csv")],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "c.mp4: EF" in done.stdout and "g.avi: EF" in done.stdout
    assert main(["predict", str(videos), "--model", str(folder), "--csv", str(tmp_path / "e.csv")]) == 0
    a, b = pd.read_csv(tmp_path / "b.csv"), pd.read_csv(tmp_path / "e.csv")
    pd.testing.assert_frame_equal(a, b)
    assert a["clips"].tolist() == [3, 3] and a["FileName"].tolist() == ["c.mp4", "g.avi"]
    grey = decode_video(videos / "g.avi", 32).astype(np.float64)  # the grey ramp's clips by hand
    idx = video_clips(60, 4, 50.0, "window", 0.6, 3)
    assert a.loc[1, "EF_pred"] == pytest.approx(np.mean([grey[i].mean() / 4 for i in idx]), abs=1e-3)
