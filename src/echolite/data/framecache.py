"""Decoded-frame cache: every frame of a video as uint8 grey, memory-mapped, keyed by the video's bytes.

Decoding AVI costs ~40 videos/s per core; a GPU wants far more clips per second than that. Each
video is decoded once, in parallel, into its own entry of the store's ``frames/`` folder, named by
the digest of the video file's content::

    frames/ab/abcdef...-<decoding>.u8     all frames of one video, (frames, height, width) uint8
    frames/ab/abcdef...-<decoding>.json   written last, and only when the video has the frames
                                          FileList.csv declares (its presence = complete): frames,
                                          height, width, sha1 of the decoded frames

(``<decoding>``: the key of :func:`echolite.identity.frames_inputs`, the decoding's version and
OpenCV's, so another decoder decodes again.)

So a moved or copied dataset finds its frames again, a video whose bytes change gets a new entry
(only that one is decoded again, and the log says so), and nothing is ever written into the
user's data folder (read-only mounts work). ``verify`` recomputes every entry's sha1
(``echolite cache --verify``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from echolite import EcholiteError
from echolite.data.video import probe_video, read_frames
from echolite.identity import frames_inputs, key

log = logging.getLogger(__name__)
VERSION = 2  # bump when the decoding changes: entries are named by it (with OpenCV's version)
FOLDER = "frames"


@functools.cache
def _decoding() -> str:
    return key(frames_inputs(VERSION))[:8]


def entry(folder: Path, content: str) -> tuple[Path, Path]:
    """The (frames, header) files of the video whose bytes digest to ``content``."""
    base = Path(folder) / content[:2] / f"{content}-{_decoding()}"
    return base.with_suffix(".u8"), base.with_suffix(".json")


def _decode(args) -> tuple[str, dict]:
    """Worker: decode one video into its entry (frames first, the header last, and only when the
    video has at least ``expected`` frames: a short video is never a complete entry)."""
    name, path, content, folder, expected = args
    frames_path, header_path = entry(Path(folder), content)
    frames = read_frames(path, grey=True)  # (T, H, W): the loader's own conversion
    if frames.shape[0] < expected:
        return name, {"frames": int(frames.shape[0])}
    frames_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = frames_path.with_name(f".{frames_path.name}.tmp{os.getpid()}")
    frames.tofile(tmp)
    os.replace(tmp, frames_path)
    header = {"frames": int(frames.shape[0]), "height": int(frames.shape[1]), "width": int(frames.shape[2]),
              "sha1": hashlib.sha1(frames.tobytes()).hexdigest(), "source": str(path)}
    tmp = header_path.with_name(f".{header_path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(header))
    os.replace(tmp, header_path)
    return name, header


class FrameCache:
    """Read access to the decoded frames of a dataset's videos: ``clip(name, indices)``."""

    def __init__(self, folder: Path, contents: dict[str, str]):
        self.folder, self.contents = Path(folder), dict(contents)
        self.headers = {n: json.loads(entry(self.folder, c)[1].read_text()) for n, c in self.contents.items()}
        self._maps: dict[str, np.memmap] = {}

    def frames(self, name: str) -> np.memmap:
        if name not in self._maps:
            h = self.headers[name]
            self._maps[name] = np.memmap(entry(self.folder, self.contents[name])[0], np.uint8, "r",
                                         shape=(h["frames"], h["height"], h["width"]))
        return self._maps[name]

    def clip(self, name: str, indices: np.ndarray) -> np.ndarray:
        """uint8 (len(indices), H, W) (the loader clips indices to FileList.csv's frame count, which
        a complete entry holds: an index past the end is a bug, not a frame to repeat)."""
        frames = self.frames(name)
        if len(indices) and int(np.max(indices)) >= len(frames):
            raise IndexError(f"{name}: frame {int(np.max(indices))} asked of a cached video of {len(frames)}")
        return np.asarray(frames[indices])

    def __getstate__(self):  # DataLoader workers reopen the maps instead of pickling them
        return {"folder": self.folder, "contents": self.contents}

    def __setstate__(self, state):
        self.__init__(state["folder"], state["contents"])


def missing(folder: Path, contents: dict[str, str]) -> list[str]:
    """Names whose entry is not (completely) built."""
    return [n for n, c in contents.items() if not entry(folder, c)[1].is_file()]


def build(folder: Path, root: Path, contents: dict[str, str], names: list[str], counts: dict[str, int],
          video_path, workers: int = 2) -> None:
    """Decode the videos ``names`` into their entries. Where and how much is logged before any
    decoding; a disk without room is an error before it starts."""
    if not names:
        return
    first = probe_video(video_path(root, names[0]))
    size = sum(counts[n] for n in names) * first.height * first.width
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    log.info("frame cache: decoding %d video(s) (%.2f GB of uint8 grey frames) into %s (%.1f GB free)",
             len(names), size / 1e9, folder, free / 1e9)
    if size > free * 0.95:
        raise EcholiteError(f"the frame cache needs {size / 1e9:.1f} GB at {folder}, {free / 1e9:.1f} GB "
                            "free: free space, move the store, or set data.frame_cache=false")
    t0 = time.perf_counter()
    jobs = [(n, str(video_path(root, n)), contents[n], str(folder), counts[n]) for n in names]
    with ProcessPoolExecutor(max(1, workers)) as pool, \
            tqdm(total=len(jobs), desc="frame cache", unit="video", disable=None) as bar:
        for name, header in pool.map(_decode, jobs, chunksize=8):
            if header["frames"] < counts[name]:
                pool.shutdown(wait=False, cancel_futures=True)  # do not decode the queued videos first
                raise EcholiteError(f"{video_path(root, name)}: decoded {header['frames']} frames, "
                                    f"FileList.csv declares {counts[name]}")
            bar.update(1)
    seconds = time.perf_counter() - t0
    log.info("frame cache: %d video(s) decoded in %.0f s (%.0f videos/s)", len(names), seconds,
             len(names) / max(seconds, 1e-9))


def verify(folder: Path, contents: dict[str, str]) -> list[str]:
    """Recompute every video's sha1 from its cached frames; returns the names that differ."""
    cache = FrameCache(folder, contents)
    return [n for n in contents
            if hashlib.sha1(np.asarray(cache.frames(n)).tobytes()).hexdigest() != cache.headers[n]["sha1"]]


def open_cache(folder: Path, root: Path, table, contents: dict[str, str], video_path,
               build_if_missing: bool, workers: int = 2) -> FrameCache | None:
    """The frame cache of these videos: opened (decoding the missing ones if allowed), else None.

    When a partial cache exists but may not be completed, the loader decodes AVIs, and a warning
    says so (it is many times slower).
    """
    todo = missing(folder, contents)
    counts = dict(zip(table["FileName"], table["NumberOfFrames"].astype(int)))
    if todo and build_if_missing:
        if len(todo) < len(contents):
            log.info("frame cache: %d of %d videos are new or changed since their frames were cached",
                     len(todo), len(contents))
        build(folder, root, contents, todo, counts, video_path, workers)
        todo = []
    if not todo:
        log.info("reading frames from the frame cache at %s (%d videos)", folder, len(contents))
        cache = FrameCache(folder, contents)
        short = [n for n in contents if cache.headers[n]["frames"] < counts[n]]
        if short:
            raise EcholiteError(f"{video_path(root, short[0])}: {cache.headers[short[0]]['frames']} frames, "
                                f"FileList.csv declares {counts[short[0]]} ({len(short)} such video(s)): "
                                "correct NumberOfFrames or drop the row")
        return cache
    if len(todo) < len(contents):
        log.warning("a frame cache holds %d of these %d videos but data.frame_cache is off: decoding "
                    "AVIs instead (many times slower); `echolite cache --data ...` completes it",
                    len(contents) - len(todo), len(contents))
    return None
