"""Procedural apical-4-chamber echo phantoms with exact EF ground truth, in the EchoNet layout.

Two renderers, chosen by version (datasets of different versions live in different folders and
have different data keys):

  * v2 (default, :mod:`.v2`): anatomy and image formation (scatterers moved by a heart with
    regional wall motion, imaged by a simulated phased array); looks like real A4C echo by the
    statistics of ``echolite realism``;
  * v1 (:mod:`.v1`): painted ellipses and speckle, kept so that earlier runs reproduce.

Both give EF/ESV/EDV and VolumeTracings.csv exactly from the geometry they render: the EF of the
20-chord tracings (method of disks) equals FileList.csv's.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from echolite import EcholiteError
from echolite.data.phantom import v1, v2
from echolite.data.video import probe_video, write_video
from echolite.env import atomic_write_text

VERSIONS = {1: v1, 2: v2}
DEFAULT_VERSION = 2
SPLIT_FRACTIONS = {"TRAIN": 0.75, "VAL": 0.125, "TEST": 0.125}  # as in EchoNet-Dynamic


def renderer(version: int):
    """The module of phantom ``version`` (make_spec, render, tracing_rows)."""
    if version not in VERSIONS:
        raise EcholiteError(f"phantom version must be one of {sorted(VERSIONS)}, but got {version!r}")
    return VERSIONS[version]


def assign_splits(n: int, seed: int) -> list[str]:
    """TRAIN/VAL/TEST labels in EchoNet proportions, each split non-empty (needs n >= 3)."""
    if n < 3:
        raise EcholiteError(f"a phantom dataset needs at least 3 videos (one per split), got {n}")
    n_val = max(1, round(n * SPLIT_FRACTIONS["VAL"]))
    n_test = max(1, round(n * SPLIT_FRACTIONS["TEST"]))
    labels = ["VAL"] * n_val + ["TEST"] * n_test + ["TRAIN"] * (n - n_val - n_test)
    order = np.random.default_rng([seed, 0xC0FFEE]).permutation(n)
    return [labels[i] for i in np.argsort(order)]


def specs(n: int, seed: int = 0, size: int = 112, version: int = DEFAULT_VERSION,
          appearance: str = "standard") -> list:
    """The video specs of a phantom dataset (what :func:`synthesize` writes), without rendering."""
    module = renderer(version)
    splits = assign_splits(n, seed)
    if appearance != "standard":
        if version < 2:
            raise EcholiteError(f"phantom v{version} has one appearance; the {appearance!r} one needs v2")
        return [module.make_spec(i, seed, splits[i], size, appearance) for i in range(n)]
    return [module.make_spec(i, seed, splits[i], size) for i in range(n)]


def _write_one(args) -> None:
    version, spec, path, size = args
    if path.exists():
        try:
            if probe_video(path).n_frames == spec.n_frames:
                return  # already written by an earlier (interrupted) run
        except EcholiteError:
            pass
    write_video(path, renderer(version).render(spec, size), spec.fps)


def synthesize(out: str | Path, n: int, seed: int = 0, size: int = 112, workers: int = 1,
               version: int = DEFAULT_VERSION, appearance: str = "standard") -> Path:
    """Write a complete EchoNet-Dynamic-layout phantom dataset to ``out``.

    Writes ``FileList.csv``, ``VolumeTracings.csv``, ``phantom.json`` and
    ``Videos/<FileName>.avi``. Deterministic in ``seed`` (and version); resumable (videos already
    written are kept); the CSVs are written last, atomically. ``appearance="shifted"`` (v2) writes
    the same hearts imaged with out-of-range scanner settings (same file names and labels).
    """
    module = renderer(version)
    out = Path(out)
    held = out / "phantom.json"
    if held.is_file():
        made = json.loads(held.read_text())
        wanted = {"version": version, "n": n, "seed": seed, "size": size, "appearance": appearance}
        found = {k: made.get(k, {"version": 1, "appearance": "standard"}.get(k)) for k in wanted}
        if found != wanted:
            raise EcholiteError(f"{out} holds another phantom ({held.name}: {found}); choose another folder")
    (out / "Videos").mkdir(parents=True, exist_ok=True)
    all_specs = specs(n, seed, size, version, appearance)
    jobs = [(version, s, out / "Videos" / f"{s.file_name}.avi", size) for s in all_specs]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_one, jobs, chunksize=4))
    else:
        for job in jobs:
            _write_one(job)

    filelist = pd.DataFrame({
        "FileName": [s.file_name for s in all_specs],
        "EF": [s.ef for s in all_specs],
        "ESV": [s.esv for s in all_specs],
        "EDV": [s.edv for s in all_specs],
        "FrameHeight": size,
        "FrameWidth": size,
        "FPS": [s.fps for s in all_specs],
        "NumberOfFrames": [s.n_frames for s in all_specs],
        "Split": [s.split for s in all_specs],
    })
    rows = []
    for s in all_specs:
        # EchoNet order: the end-systolic (smaller) trace first, then the end-diastolic one
        for frame in (s.es_frame, s.ed_frame):
            for x1, y1, x2, y2 in module.tracing_rows(s, frame):
                rows.append((f"{s.file_name}.avi", x1, y1, x2, y2, frame))
    tracings = pd.DataFrame(rows, columns=["FileName", "X1", "Y1", "X2", "Y2", "Frame"])
    _atomic_csv(tracings, out / "VolumeTracings.csv")
    provenance = {"generator": "echolite phantom", "version": version, "n": n, "seed": seed, "size": size,
                  "appearance": appearance,
                  "note": "procedural apical-4-chamber echo phantom; exact EF by the method of disks"}
    atomic_write_text(held, json.dumps(provenance, indent=1))
    _atomic_csv(filelist, out / "FileList.csv")
    return out


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    df.to_csv(tmp, index=False, float_format="%.6f")
    os.replace(tmp, path)
