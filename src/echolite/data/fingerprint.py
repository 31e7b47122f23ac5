"""Content digests of a dataset's files: what the data *is*, wherever it lies.

Reading every byte of 10,030 videos takes a while, so digests are memoized by (absolute path, size,
modification time) in a small file beside the store: a file is read again only when it is new,
changed (its size or time moved) or was moved or copied (a new path). A moved dataset is thus
digested once more and then has the same content digests, hence the same data key, frame cache
and baselines as before the move.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from echolite.env import atomic_write_json
from echolite.store import file_digest

log = logging.getLogger(__name__)
MEMO = "file-digests.json"


def file_digests(paths: list[Path], memo_dir: Path | None) -> list[str]:
    """sha256 of every file of ``paths`` (in order), read only where the memo has no entry for
    its path, size and modification time."""
    memo_path = Path(memo_dir) / MEMO if memo_dir is not None else None
    memo: dict = {}
    if memo_path is not None and memo_path.is_file():
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            log.warning("%s cannot be read (%s): every file is digested again", memo_path, err)
            memo = {}
    out, read = [], 0
    t0 = time.perf_counter()
    for path in paths:
        st = os.stat(path)
        stamp = f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}"
        value = memo.get(stamp)
        if value is None:
            value = memo[stamp] = file_digest(path)
            read += 1
        out.append(value)
    if read:
        log.info("read %d of %d files to digest their content (%.0f s; the others were known)", read,
                 len(paths), time.perf_counter() - t0)
        if memo_path is not None:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(memo_path, memo)
    return out
