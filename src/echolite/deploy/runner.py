"""EF of video files: videos -> clips -> a model -> one row per video. No torch.

The one implementation ``echolite predict`` and an export bundle's ``predict.py`` share: it imports
numpy, OpenCV (through :mod:`echolite.data.video`, the reader training uses) and, for a bundle's
model file, onnxruntime or openvino. A bundle carries this file, ``data/video.py`` and the package's
``__init__`` files unchanged (see :mod:`echolite.deploy.bundle`).

How a video becomes an EF (``preprocess.json`` holds every number of it):
  * every frame decoded, converted to grey (BT.601 luma) and resized to ``size`` x ``size`` (area
    interpolation), as training read its clips;
  * ``clips`` clips of ``n_frames`` frames spread over the whole video (:func:`video_clips`); one
    clip is exactly the clip the run's TEST row was scored on;
  * each clip (float32, (1, T, 1, size, size), raw 0..255: the model normalises inside) -> EF;
    the video's EF is the mean over its clips, reported with their standard deviation and range.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from echolite import EcholiteError
from echolite.data.video import SAMPLINGS, clip_indices, probe_video, read_frames, resize_frames, to_grey

PREPROCESS_FILE = "preprocess.json"
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".m4v", ".wmv", ".mpg", ".mpeg")
CSV_COLUMNS = ("FileName", "EF_pred", "EF_sd", "EF_min", "EF_max", "clips", "frames", "fps", "width", "height")
RUNTIMES = ("onnxruntime", "openvino")


def video_clips(n_video_frames: int, n_frames: int, fps: float, sampling: str, window_s: float,
                clips: int) -> list[np.ndarray]:
    """``clips`` evaluation clips spread over the whole video (test-time averaging, as EchoNet-Dynamic
    does over a video's beats); one clip is exactly the evaluation clip of :func:`clip_indices`.

    ``window``: windows of the evaluation stride, their starts evenly spaced from the first frame to
    the last start that fits. ``spread``: the evaluation spread, shifted by k/clips of its step.
    Identical clips (a video shorter than a window) are kept once.
    """
    if clips < 1:
        raise EcholiteError(f"clips must be >= 1, got {clips}")
    one = clip_indices(n_video_frames, n_frames, fps, sampling, window_s)
    if clips == 1:
        return [one]
    last = n_video_frames - 1
    if sampling == "window":
        span = int(one[-1] - one[0])
        starts = np.round(np.linspace(0, max(0, last - span), clips)).astype(np.int64)
        out = [np.clip(one - one[0] + s, 0, last) for s in starts]
    else:
        step = last / max(1, n_frames - 1)
        out = [np.clip(np.round(np.linspace(0, last, n_frames) + k * step / clips), 0, last).astype(np.int64)
               for k in range(clips)]
    unique = {tuple(c.tolist()): c for c in out}
    return list(unique.values())


def decode_video(path: str | Path, size: int) -> np.ndarray:
    """Every frame of a video (any container OpenCV reads: AVI, MP4, ...; any size, colour or grey)
    as (T, size, size) uint8 grey: the conversion training applies (:func:`to_grey`, then
    :func:`resize_frames`), frame by frame, so a long or large video costs little memory.

    Raises:
        EcholiteError: the file cannot be opened or has no decodable frame.
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise EcholiteError(f"{path}: cannot be opened as a video (missing, corrupt or not a video)")
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(resize_frames(to_grey(frame)[None], size)[0])
    finally:
        cap.release()
    if not frames:
        raise EcholiteError(f"{path}: no decodable frame (corrupt, empty or not a video)")
    return np.stack(frames)


def check_preprocess(prep: dict, where: str) -> dict:
    """``prep`` with the keys every prediction needs, each checked (one-line errors naming ``where``)."""
    need = {"n_frames": int, "size": int, "sampling": str, "window_s": (int, float), "clips": int}
    for name, kind in need.items():
        if not isinstance(prep.get(name), kind) or isinstance(prep.get(name), bool):
            raise EcholiteError(f"{where}: {name} must be {getattr(kind, '__name__', 'a number')}, got "
                                f"{prep.get(name)!r}")
    if prep["sampling"] not in SAMPLINGS:
        raise EcholiteError(f"{where}: sampling must be one of {SAMPLINGS}, got {prep['sampling']!r}")
    if prep["n_frames"] < 1 or prep["size"] < 1 or prep["clips"] < 1 or prep["window_s"] <= 0:
        raise EcholiteError(f"{where}: n_frames, size, clips and window_s must be positive")
    return prep


def find_videos(inputs: list[str | Path], need_fps: bool = False) -> list[Path]:
    """Video files named, or inside folders named (their video files, sorted; not recursive).

    Every file is opened and its first frame decoded before any prediction (and, with ``need_fps``,
    its header's frame rate checked), so one unreadable file is a one-line error before the long
    work starts.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            inside = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if not inside:
                raise EcholiteError(f"{item}: no video files ({', '.join(VIDEO_SUFFIXES)}) in this folder")
            found += inside
        elif item.is_file():
            found.append(item)
        else:
            raise EcholiteError(f"{item}: no such file or folder")
    for path in found:
        read_frames(path, np.array([0]))  # raises: cannot be opened, or no first frame
        if need_fps:
            _frame_rate(path, None)
    return found


def _frame_rate(path: Path, fps: float | None) -> float:
    rate = fps or probe_video(path).fps
    if not (rate and math.isfinite(rate) and rate > 0):
        raise EcholiteError(f"{path}: the header gives no frame rate; pass --fps")
    return float(rate)


def needs_fps(prep: dict, fps: float | None) -> bool:
    """Whether videos must carry a frame rate: ``window`` sampling spans seconds, unless --fps is given."""
    return prep["sampling"] == "window" and not fps


def clips_of(path: Path, prep: dict, clips: int, fps: float | None = None,
             frames: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """The clips of one video, float32 (K, T, 1, size, size), and what was read (frames, fps, size).

    ``fps`` replaces the header's frame rate (``window`` sampling needs one); ``frames``: the video
    already decoded by :func:`decode_video` at ``prep['size']`` (it is then not decoded again)."""
    info = probe_video(path)
    rate = _frame_rate(path, fps) if prep["sampling"] == "window" else (fps or info.fps)
    frames = decode_video(path, prep["size"]) if frames is None else frames  # (N, S, S) uint8 grey
    picks = video_clips(len(frames), prep["n_frames"], rate, prep["sampling"], prep["window_s"], clips)
    batch = np.stack([frames[idx] for idx in picks])[:, :, None].astype(np.float32)  # (K, T, 1, S, S)
    return batch, {"frames": len(frames), "fps": round(float(rate), 3), "width": info.width, "height": info.height}


def predict_video(path: Path, run: Callable[[np.ndarray], np.ndarray], prep: dict, clips: int,
                  fps: float | None = None, frames: np.ndarray | None = None) -> dict:
    """One CSV row: the EF averaged over the video's clips, their spread, and what was read."""
    batch, info = clips_of(path, prep, clips, fps, frames)
    efs = np.array([float(np.asarray(run(clip[None])).reshape(-1)[0]) for clip in batch])  # batch 1, as timed
    return {"FileName": path.name, "EF_pred": float(efs.mean()), "EF_sd": float(efs.std()),
            "EF_min": float(efs.min()), "EF_max": float(efs.max()), "clips": len(efs), **info,
            "EF_clips": efs.tolist()}


def predict_paths(paths: list[Path], run, prep: dict, clips: int, fps: float | None = None,
                  on_row: Callable[[dict], None] | None = None) -> list[dict]:
    rows = []
    for path in paths:
        rows.append(predict_video(path, run, prep, clips, fps))
        if on_row:
            on_row(rows[-1])
    return rows


def write_csv(rows: list[dict], path: str | Path, extra: tuple[str, ...] = ()) -> Path:
    """One row per video (:data:`CSV_COLUMNS`, then ``extra``), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    columns = CSV_COLUMNS + tuple(extra)
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
    os.replace(tmp, path)
    return path


def describe(row: dict) -> str:
    return (f"{row['FileName']}: EF {row['EF_pred']:.1f} % (sd {row['EF_sd']:.1f} over {row['clips']} clips, "
            f"range {row['EF_min']:.1f}-{row['EF_max']:.1f}; {row['frames']} frames at {row['fps']:g} fps, "
            f"{row['width']}x{row['height']})")


# --- a bundle's model file -------------------------------------------------------------------------
def open_model(path: Path, runtime: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """``run(x) -> y`` on float32 numpy arrays for a model file (.onnx, or OpenVINO IR .xml)."""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x})[0]
    if runtime == "openvino":
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        compiled: dict = {}

        def run(x):
            if x.shape not in compiled:
                m = model.clone()
                m.reshape({m.inputs[0]: list(x.shape)})
                compiled[x.shape] = core.compile_model(m, "CPU", config).create_infer_request()
            return np.array(compiled[x.shape].infer({0: x})[0])

        return run
    raise EcholiteError(f"{path}: unknown runtime {runtime!r} (known: {', '.join(RUNTIMES)})")


def open_bundle(folder: str | Path, threads: int = 2) -> tuple[Callable, dict]:
    """A bundle's model as ``run(x) -> y`` and its checked ``preprocess.json``."""
    folder = Path(folder)
    spec = folder / PREPROCESS_FILE
    if not spec.is_file():
        raise EcholiteError(f"{folder}: not an export bundle (no {PREPROCESS_FILE}; make one with `echolite export`)")
    prep = check_preprocess(json.loads(spec.read_text()), str(spec))
    model = prep.get("model") or {}
    file = folder / str(model.get("file", ""))
    if not model.get("file") or not file.is_file():
        raise EcholiteError(f"{spec}: model.file {model.get('file')!r} is not a file of the bundle")
    return open_model(file, model.get("runtime", ""), threads), prep


def main(argv: list[str] | None = None, bundle: str | Path | None = None) -> int:
    """A bundle's ``predict.py``: ``python predict.py VIDEO|DIR ... [--csv OUT.csv]``."""
    p = argparse.ArgumentParser(prog="predict.py", description="EF (%) of echo videos with this bundle's model")
    p.add_argument("videos", nargs="+", help="video files (AVI, MP4, ...) or folders of them")
    p.add_argument("--csv", help="write one row per video here (FileName, EF_pred, EF_sd, ..., clips)")
    p.add_argument("--clips", type=int, help="clips per video (default: preprocess.json's)")
    p.add_argument("--fps", type=float, help="frame rate, for videos whose header has none")
    p.add_argument("--threads", type=int, default=2, help="inference threads")
    p.add_argument("--bundle", default=str(bundle or "."), help="the bundle folder (default: this script's)")
    args = p.parse_args(argv)
    try:
        run, prep = open_bundle(args.bundle, args.threads)
        paths = find_videos(args.videos, needs_fps(prep, args.fps))
        rows = predict_paths(paths, run, prep, args.clips or prep["clips"], args.fps,
                             on_row=lambda r: print(describe(r), flush=True))
        if args.csv:
            print(f"wrote {write_csv(rows, args.csv)}")
    except EcholiteError as err:
        print(f"predict.py: error: {err}", file=sys.stderr)
        return 2
    return 0
