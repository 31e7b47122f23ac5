"""Decoded-frame cache: every frame of every video as uint8 grey, in one memory-mapped file.

Decoding AVI costs ~40 videos/s per core; a GPU wants far more clips per second than that. The
cache is decoded once, in parallel, and the loader then reads the 8 frames of a clip by indexing
the memory map — no decoding. Its folder holds::

    frames.u8    all frames, (total_frames, height, width) uint8, video after video
    index.json   written last (its presence = complete): per video its offset, frame count, the
                 source file's size and mtime and a sha1 of its decoded frames; the dataset key

A cache is used only if its dataset key matches and no source video changed (size or mtime,
checked on open); a full check of the frames against their sha1 is ``verify(folder)``
(``echolite cache --verify``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from echolite import EcholiteError

log = logging.getLogger(__name__)
VERSION = 1
FRAMES, INDEX = "frames.u8", "index.json"


def _grey_frames(path: Path) -> np.ndarray:
    """All frames of a video as uint8 (T, H, W) grey (the decoder path's own conversion)."""
    from echolite.data.video import read_frames

    return read_frames(path, grey=True)


def _source_stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _fill(args) -> list[tuple[str, str]]:
    """Worker: decode videos into their slices of the memory map; returns (name, sha1) pairs."""
    frames_path, shape, jobs = args
    memmap = np.memmap(frames_path, np.uint8, "r+", shape=shape)
    out = []
    for name, path, offset, n in jobs:
        frames = _grey_frames(Path(path))[:n]
        if len(frames) < n or frames.shape[1:] != shape[1:]:
            raise EcholiteError(f"{path}: decoded {frames.shape}, expected {n} frames of {shape[1:]}")
        memmap[offset:offset + n] = frames
        out.append((name, hashlib.sha1(frames.tobytes()).hexdigest()))
    memmap.flush()
    return out


class FrameCache:
    """Read access to a built cache: ``clip(name, indices) -> uint8 (T, H, W)``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.index = json.loads((self.folder / INDEX).read_text())
        shape = (self.index["total_frames"], self.index["height"], self.index["width"])
        self.frames = np.memmap(self.folder / FRAMES, np.uint8, "r", shape=shape)
        self.videos = self.index["videos"]

    def clip(self, name: str, indices: np.ndarray) -> np.ndarray:
        offset, n = self.videos[name]["offset"], self.videos[name]["frames"]
        return np.asarray(self.frames[offset + np.minimum(indices, n - 1)])

    def __getstate__(self):  # DataLoader workers reopen the map instead of pickling it
        return {"folder": self.folder}

    def __setstate__(self, state):
        self.__init__(state["folder"])


def cache_folder(root: Path, data_key: str, cache_dir: str | None) -> Path:
    """Where the cache of this dataset lives (keyed by the dataset's digest)."""
    base = Path(cache_dir) if cache_dir else Path(root) / ".echolite-frames"
    return base / f"frames-v{VERSION}-{data_key[:16]}"


def check(folder: Path, root: Path, names: list[str], data_key: str) -> str | None:
    """Why the cache in ``folder`` cannot be used for these videos, or None if it can."""
    from echolite.data.echonet import video_path

    index_path = folder / INDEX
    if not index_path.is_file():
        return "not built"
    index = json.loads(index_path.read_text())
    if index.get("version") != VERSION or index.get("data_key") != data_key:
        return "made from another dataset or cache version"
    expected = index["total_frames"] * index["height"] * index["width"]
    if (folder / FRAMES).stat().st_size != expected:
        return f"{FRAMES} has the wrong size"
    missing = [n for n in names if n not in index["videos"]]
    if missing:
        return f"{len(missing)} videos not in the cache"
    changed = [n for n in names if index["videos"][n]["source"] != _source_stamp(video_path(root, n))]
    if changed:
        return f"{len(changed)} source video(s) changed since it was built (e.g. {changed[0]})"
    return None


def verify(folder: Path) -> list[str]:
    """Recompute every video's sha1 from the cached frames; returns the names that differ."""
    cache = FrameCache(folder)
    bad = []
    for name, v in cache.videos.items():
        frames = cache.frames[v["offset"]:v["offset"] + v["frames"]]
        if hashlib.sha1(np.asarray(frames).tobytes()).hexdigest() != v["sha1"]:
            bad.append(name)
    return bad


def build(folder: Path, root: Path, table, data_key: str, workers: int = 2) -> FrameCache:
    """Decode every video of ``table`` (FileList rows) into a new cache at ``folder``.

    The location and the size are logged before anything is written; a disk without room is
    an error before decoding starts. The index is written last, atomically.
    """
    from tqdm.auto import tqdm

    from echolite.data.echonet import video_path
    from echolite.data.video import probe_video

    names = table["FileName"].tolist()
    counts = table["NumberOfFrames"].astype(int).tolist()
    first = probe_video(video_path(root, names[0]))
    height, width = first.height, first.width
    total = int(sum(counts))
    size = total * height * width
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder.parent).free
    log.info("frame cache: %d videos, %d frames of %dx%d grey = %.2f GB at %s (%.1f GB free)",
             len(names), total, height, width, size / 1e9, folder, free / 1e9)
    if size > free * 0.95:
        raise EcholiteError(f"frame cache needs {size / 1e9:.1f} GB at {folder.parent}, "
                            f"{free / 1e9:.1f} GB free: set data.cache_dir to a larger disk")
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        np.memmap(tmp / FRAMES, np.uint8, "w+", shape=(total, height, width)).flush()
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
        jobs = [(n, str(video_path(root, n)), o, c) for n, o, c in zip(names, offsets, counts)]
        chunks = [jobs[i:i + 32] for i in range(0, len(jobs), 32)]
        shape = (total, height, width)
        sha = {}
        with ProcessPoolExecutor(max(1, workers)) as pool, \
                tqdm(total=len(jobs), desc="frame cache", unit="video", disable=None) as bar:
            for done in pool.map(_fill, [(str(tmp / FRAMES), shape, c) for c in chunks]):
                sha.update(done)
                bar.update(len(done))
        videos = {n: {"offset": o, "frames": c, "sha1": sha[n], "source": _source_stamp(video_path(root, n))}
                  for n, o, c in zip(names, offsets, counts)}
        index = {"version": VERSION, "data_key": data_key, "root": str(Path(root).resolve()),
                 "total_frames": total, "height": height, "width": width, "videos": videos,
                 "seconds": round(time.perf_counter() - t0, 1)}
        (tmp / INDEX).write_text(json.dumps(index))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("frame cache built in %.0f s (%.0f videos/s)", time.perf_counter() - t0,
             len(names) / (time.perf_counter() - t0))
    return FrameCache(folder)


def open_cache(root: Path, table, data_key: str, cache_dir: str | None, build_if_missing: bool,
               workers: int = 2) -> FrameCache | None:
    """The usable cache of this dataset: opened, (re)built if allowed, else None (log says why)."""
    folder = cache_folder(root, data_key, cache_dir)
    why = check(folder, root, table["FileName"].tolist(), data_key)
    if why is None:
        log.info("reading frames from the cache at %s", folder)
        return FrameCache(folder)
    if build_if_missing:
        log.info("frame cache at %s: %s; building it", folder, why)
        return build(folder, root, table, data_key, workers)
    if why != "not built":
        log.warning("frame cache at %s not used: %s (rebuild with `echolite cache`)", folder, why)
    return None
