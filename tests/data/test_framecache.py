"""The decoded-frame cache: per video, keyed by the video's bytes, in the store (never in the data)."""

import os
import stat

import pytest
import torch

from echolite import EcholiteError, pipeline
from echolite.config import apply_overrides, load_config
from echolite.data import framecache
from echolite.data.echonet import EchoClips, video_path
from echolite.data.fingerprint import file_digests
from echolite.data.video import read_frames, write_video


def _task(root, out, cache=True):
    cfg = apply_overrides(load_config("smoke"), [f"data.root={root}", f"data.frame_cache={str(cache).lower()}"])
    return pipeline.prepare(cfg, out)


def _read_only(folder):
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def test_cached_frames_are_the_decoded_frames_and_nothing_is_written_into_the_data(phantom_copy, tmp_path):
    names = sorted(p.stem for p in (phantom_copy / "Videos").iterdir())
    colour = phantom_copy / "Videos" / f"{names[4]}.avi"
    frames = read_frames(colour)  # the same video with unequal colour channels: one conversion
    frames[..., 0] //= 2          # (not a channel pick) must give the same grey on both paths
    write_video(colour, frames, fps=50.0)
    before = sorted(p.relative_to(phantom_copy) for p in phantom_copy.rglob("*"))
    _read_only(phantom_copy)  # a read-only mount
    try:
        task = _task(phantom_copy, tmp_path / "run")
        assert task.cache is not None and framecache.verify(task.cache.folder, task.data.items) == []
        avi = EchoClips(task.data.root, task.data.table, 8, 112, shift_px=4)
        cached = EchoClips(task.data.root, task.data.table, 8, 112, shift_px=4, cache=task.cache)
        for item in (0, (3, 12345), 4, len(names) - 1):  # evaluation and training sampling, colour
            clip, ef = cached[item]
            assert clip.shape == (8, 1, 112, 112) and clip.dtype == torch.uint8
            assert torch.equal(clip, avi[item][0]) and ef == avi[item][1]
        assert sorted(p.relative_to(phantom_copy) for p in phantom_copy.rglob("*")) == before
    finally:
        for path in [phantom_copy, *phantom_copy.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_a_moved_dataset_reuses_its_cache_and_a_changed_video_is_decoded_again(phantom_copy, tmp_path, caplog):
    first = _task(phantom_copy, tmp_path / "run")
    folder = first.cache.folder
    entries = sorted(folder.rglob("*.u8"))
    moved = phantom_copy.rename(tmp_path / "moved")
    caplog.clear()
    again = _task(moved, tmp_path / "run")
    assert "decoding" not in caplog.text and again.data.key == first.data.key
    assert sorted(folder.rglob("*.u8")) == entries  # no new entry
    # one video's bytes change: that video alone is decoded again, and the log says so
    name = again.data.table["FileName"].iloc[2]
    video = moved / "Videos" / f"{name}.avi"
    frames = read_frames(video, grey=True)
    frames[:, :10, :10] = 255
    write_video(video, frames, fps=50.0)
    caplog.clear()
    changed = _task(moved, tmp_path / "run")
    assert f"1 of {len(again.data.items)} videos are new or changed" in caplog.text
    assert "decoding 1 video(s)" in caplog.text
    assert len(sorted(folder.rglob("*.u8"))) == len(entries) + 1
    assert changed.cache.clip(name, [0])[0, 5, 5] == 255


def test_an_unused_cache_is_said_and_corruption_is_found(phantom_copy, tmp_path, caplog):
    task = _task(phantom_copy, tmp_path / "run")
    complete = _task(phantom_copy, tmp_path / "run", cache=False)
    assert complete.cache is not None  # a complete cache is always used
    victim = task.data.table["FileName"].iloc[1]
    frames_path, header = framecache.entry(task.cache.folder, task.data.items[victim])
    header.unlink()  # the entry of one video is gone
    caplog.clear()
    partial = _task(phantom_copy, tmp_path / "run", cache=False)
    assert partial.cache is None and "decoding AVIs instead" in caplog.text  # never silently slower
    rebuilt = _task(phantom_copy, tmp_path / "run")
    with open(frames_path, "r+b") as f:
        f.seek(5000)
        f.write(b"\xff" * 64)
    assert framecache.verify(rebuilt.cache.folder, rebuilt.data.items) == [victim]
    assert os.path.getsize(frames_path) > 0


def test_a_video_shorter_than_its_row_is_refused_and_never_becomes_a_complete_entry(phantom_copy, tmp_path):
    """The frame count is checked before the header is written: a rerun refuses again instead of
    finding a 'complete' entry whose last frame the loader would repeat. A clip never reads past the end."""
    name = sorted(p.stem for p in (phantom_copy / "Videos").iterdir())[0]
    contents = {name: file_digests([video_path(phantom_copy, name)], None)[0]}
    decoded = len(read_frames(video_path(phantom_copy, name), grey=True))
    folder = tmp_path / "frames"
    for _ in range(2):
        with pytest.raises(EcholiteError, match=f"decoded {decoded} frames, FileList.csv declares {decoded + 5}"):
            framecache.build(folder, phantom_copy, contents, [name], {name: decoded + 5}, video_path, workers=1)
        assert framecache.missing(folder, contents) == [name]
    framecache.build(folder, phantom_copy, contents, [name], {name: decoded}, video_path, workers=1)
    cache = framecache.FrameCache(folder, contents)
    assert cache.clip(name, [0, decoded - 1]).shape[0] == 2
    with pytest.raises(IndexError, match=f"frame {decoded} asked of a cached video of {decoded}"):
        cache.clip(name, [decoded])
    import pandas as pd  # a complete entry, and a FileList row that now declares more frames

    table = pd.DataFrame({"FileName": [name], "NumberOfFrames": [decoded + 1]})
    with pytest.raises(EcholiteError, match=f"{decoded} frames, FileList.csv declares {decoded + 1}"):
        framecache.open_cache(folder, phantom_copy, table, contents, video_path, build_if_missing=True)


def test_echolite_cache_drops_bad_rows_into_its_own_folder_never_into_the_data(phantom_copy, tmp_path, capsys):
    from echolite.cli import main

    victim = sorted((phantom_copy / "Videos").iterdir())[2]
    victim.unlink()  # one video missing: its row is dropped with data.drop_bad_rows
    before = sorted(p.name for p in phantom_copy.rglob("*"))
    out = tmp_path / "cache-run"
    assert main(["cache", "--data", str(phantom_copy), "--out", str(out), "--set", "data.drop_bad_rows=true"]) == 0
    assert "videos cached" in capsys.readouterr().out
    assert sorted(p.name for p in phantom_copy.rglob("*")) == before
    assert victim.stem in (out / "dropped_rows.csv").read_text()
