"""Check a dataset in the EchoNet-Dynamic layout before any long work starts.

Every problem is reported once, with the file and CSV line it concerns and how to fix it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from echolite.data.echonet import (
    FILELIST,
    FILELIST_COLUMNS,
    SPLITS,
    TRACING_COLUMNS,
    TRACINGS,
    VIDEOS,
    read_filelist,
    video_path,
)

EF_VALID_RANGE = (0.0, 100.0)


@dataclass(frozen=True)
class Problem:
    where: str  # "FileList.csv line 12" or a path
    what: str
    fix: str
    file_name: str | None = None  # the FileName of the FileList row it disqualifies, if any
    row: int | None = None  # 0-based index of that row in FileList.csv

    def __str__(self) -> str:
        return f"{self.where}: {self.what} -> {self.fix}"


@dataclass
class Report:
    root: Path
    n_rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    unit: str = "videos"

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def fatal(self) -> bool:
        """Problems that no row-dropping can fix (missing file or columns)."""
        return any(p.row is None for p in self.problems)

    @property
    def bad_rows(self) -> set[int]:
        return {p.row for p in self.problems if p.row is not None}

    def summary(self) -> str:
        if self.ok:
            return f"{self.root}: OK, {self.n_rows} {self.unit}"
        return (f"{self.root}: {len(self.problems)} problem(s) in {len(self.bad_rows)} of "
                f"{self.n_rows} rows" + (" (dataset unusable)" if self.fatal else ""))


def _line(i: int) -> str:
    return f"{FILELIST} line {i + 2}"  # header is line 1


def validate(root: str | Path, check_videos: bool = True, splits=SPLITS) -> Report:
    """Validate FileList.csv, VolumeTracings.csv (if present) and the videos under ``root``;
    ``splits``: the splits the job needs (each must have rows; external validation needs TEST only)."""
    root = Path(root)
    report = Report(root)
    add = report.problems.append
    if not (root / FILELIST).is_file():
        add(Problem(str(root / FILELIST), "missing",
                    "point --data at a dataset root holding FileList.csv and Videos/ "
                    "(or run `echolite synth` to make one)"))
        return report
    try:
        df = read_filelist(root)
    except pd.errors.EmptyDataError:
        add(Problem(str(root / FILELIST), "is empty (0 bytes or no header)",
                    f"write a header ({', '.join(FILELIST_COLUMNS)}) and one row per video"))
        return report
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        add(Problem(str(root / FILELIST), f"cannot be parsed as CSV ({str(err).splitlines()[0]})", "fix the file"))
        return report
    report.n_rows = len(df)
    missing = [c for c in FILELIST_COLUMNS if c not in df.columns]
    if missing:
        add(Problem(str(root / FILELIST), f"missing column(s) {', '.join(missing)}",
                    f"the header must hold {', '.join(FILELIST_COLUMNS)}"))
        return report
    if df.empty:
        add(Problem(str(root / FILELIST), "has a header but no rows",
                    "list one row per video (FileName, EF, ..., Split)"))
        return report
    if not (root / VIDEOS).is_dir():
        add(Problem(str(root / VIDEOS), "missing folder", "put the .avi files in Videos/"))
        return report

    names = df["FileName"].astype(str)
    dup = names.duplicated(keep="first")
    ef = pd.to_numeric(df["EF"], errors="coerce")
    n_declared = pd.to_numeric(df["NumberOfFrames"], errors="coerce")
    fps = pd.to_numeric(df["FPS"], errors="coerce")
    videos_dir = (root / VIDEOS).resolve()
    for i, name in enumerate(names):
        where = _line(i)
        if not name or name.lower() == "nan":
            add(Problem(where, "empty FileName", "fill in the video's file name", None, i))
            continue
        if dup.iloc[i]:
            add(Problem(where, f"duplicate FileName {name}", "remove or rename the repeated row", name, i))
            continue
        if os.sep in name or "/" in name or "\\" in name or name in (".", "..") or \
                not video_path(root, name).resolve().is_relative_to(videos_dir):
            add(Problem(where, f"FileName {name!r} points outside Videos/",
                        "use the bare file name of a video inside Videos/", name, i))
            continue
        if not np.isfinite(ef.iloc[i]) or not EF_VALID_RANGE[0] <= ef.iloc[i] <= EF_VALID_RANGE[1]:
            add(Problem(where, f"EF {df['EF'].iloc[i]} of {name} is not a number in 0-100",
                        "correct the EF (percent) or drop the row", name, i))
        if df["Split"].iloc[i] not in SPLITS:
            add(Problem(where, f"Split {df['Split'].iloc[i]!r} of {name} is not one of "
                        f"{'/'.join(SPLITS)}", "set Split to TRAIN, VAL or TEST", name, i))
        if not np.isfinite(fps.iloc[i]) or fps.iloc[i] <= 0:
            add(Problem(where, f"FPS {df['FPS'].iloc[i]} of {name} is not a positive number",
                        "set FPS to the video's frame rate", name, i))
        if not np.isfinite(n_declared.iloc[i]) or n_declared.iloc[i] < 1:
            add(Problem(where, f"NumberOfFrames {df['NumberOfFrames'].iloc[i]} of {name} is not "
                        "a positive integer", "set it to the video's frame count", name, i))
        elif check_videos:
            problem = _check_video(video_path(root, name), int(n_declared.iloc[i]))
            if problem:
                add(Problem(str(video_path(root, name)), problem[0], problem[1], name, i))

    for split in splits:
        if not (df["Split"] == split).any():
            add(Problem(str(root / FILELIST), f"no {split} rows (column Split)",
                        f"assign some videos to {split}: training needs TRAIN and VAL, "
                        "the report TEST"))

    if (root / TRACINGS).is_file():
        try:
            header = pd.read_csv(root / TRACINGS, nrows=0).columns
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
            add(Problem(str(root / TRACINGS), f"header cannot be read ({str(err).splitlines()[0]})",
                        f"fix the header ({', '.join(TRACING_COLUMNS)}) or remove the file"))
            return report
        missing = [c for c in TRACING_COLUMNS if c not in header]
        if missing:
            add(Problem(str(root / TRACINGS), f"missing column(s) {', '.join(missing)}",
                        f"the header must hold {', '.join(TRACING_COLUMNS)} (or remove the file)"))
    return report


def _check_video(path: Path, declared: int) -> tuple[str, str] | None:
    """Cheap completeness check (~3 ms a video): the container is whole, the first and the last
    declared frame decode. Decoding every frame would cost ~100x more."""
    if not path.is_file():
        return "missing", "add the video or drop its FileList row"
    size = path.stat().st_size
    if size == 0:
        return "empty file", "re-copy the video or drop its FileList row"
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        expected = int.from_bytes(head[4:8], "little") + 8  # RIFF size covers the whole file
        if size < expected:
            return (f"cut short: {size} of {expected} bytes present",
                    "re-copy the video or drop its FileList row")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return "unreadable (not a video OpenCV can open)", "re-copy or re-encode the video"
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, _ = cap.read()
        if not ok:
            return "no decodable frame", "re-copy or re-encode the video"
        if count < declared:
            return (f"has {count} frames, FileList declares {declared}",
                    "correct NumberOfFrames or re-copy the video")
        cap.set(cv2.CAP_PROP_POS_FRAMES, declared - 1)
        ok, _ = cap.read()
        if not ok:
            return (f"cut short: frame {declared - 1} (the last declared) cannot be decoded",
                    "re-copy the video or drop its FileList row")
    finally:
        cap.release()
    return None


def drop_bad_rows(report: Report, out_csv: str | Path) -> pd.DataFrame:
    """FileList rows without problems; writes the dropped rows and reasons to ``out_csv``."""
    df = read_filelist(report.root)
    reasons = pd.DataFrame(
        [(p.file_name, p.where, p.what) for p in report.problems if p.row is not None],
        columns=["FileName", "where", "reason"],
    )
    reasons.to_csv(out_csv, index=False)
    return df.drop(index=sorted(report.bad_rows)).reset_index(drop=True)
