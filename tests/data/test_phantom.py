import cv2
import numpy as np
import pandas as pd
import pytest

from echolite.data import phantom
from echolite.data.echonet import read_filelist, video_path
from echolite.data.phantom import v1, v2
from echolite.data.tracings import disk_volume, ef_from_tracings
from echolite.data.video import probe_video, read_frames


def test_filelist_has_echonet_columns_and_consistent_volumes(phantom_root):
    df = read_filelist(phantom_root)
    assert list(df.columns) == ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth",
                                "FPS", "NumberOfFrames", "Split"]
    np.testing.assert_allclose(df.EF, 100 * (1 - df.ESV / df.EDV), atol=0.01)
    assert set(df.Split) == {"TRAIN", "VAL", "TEST"}
    assert (df.EDV > df.ESV).all() and df.EDV.between(40, 250).all()  # mL, adult-like


def test_ef_from_tracings_matches_filelist(phantom_root):
    df = read_filelist(phantom_root).set_index("FileName")
    tracings = pd.read_csv(phantom_root / "VolumeTracings.csv")
    assert tracings.FileName.str.endswith(".avi").all()
    assert (tracings.groupby(["FileName", "Frame"]).size() == 21).all()  # axis + 20 chords
    ef = ef_from_tracings(tracings)
    assert len(ef) == len(df)
    np.testing.assert_allclose(ef.values, df.loc[[n[:-4] for n in ef.index], "EF"], atol=0.02)


def test_end_systolic_trace_comes_first(phantom_root):
    tracings = pd.read_csv(phantom_root / "VolumeTracings.csv")
    for _, rows in tracings.groupby("FileName", sort=False):
        frames = list(dict.fromkeys(rows.Frame))
        vols = [disk_volume(rows[rows.Frame == f][["X1", "Y1", "X2", "Y2"]].to_numpy()) for f in frames]
        assert len(frames) == 2 and vols[0] < vols[1]


def test_tracings_outline_the_rendered_cavity(phantom_root):
    """The traced polygon is dark blood inside; the band just outside it is mostly bright wall."""
    tracings = pd.read_csv(phantom_root / "VolumeTracings.csv")
    for name, rows in list(tracings.groupby("FileName", sort=False))[:4]:
        for frame, fr in rows.groupby("Frame"):
            xy = fr[["X1", "Y1", "X2", "Y2"]].to_numpy()[1:]
            poly = np.concatenate([xy[:, :2], xy[::-1, 2:]])
            img = read_frames(video_path(phantom_root, name), [frame])[0, :, :, 0]
            img = cv2.GaussianBlur(img, (0, 0), 1.0)
            inside = np.zeros_like(img)
            cv2.fillPoly(inside, [np.round(poly * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
            inner = cv2.erode(inside, np.ones((3, 3), np.uint8), iterations=2).astype(bool)
            ring = (cv2.dilate(inside, np.ones((3, 3), np.uint8), iterations=3) - inside).astype(bool)
            assert np.median(img[inner]) < 60, (name, frame)  # blood (~40 after compression)
            assert np.median(img[ring]) > 2.5 * np.median(img[inner]), (name, frame)


def test_deterministic_by_seed(tmp_path):
    a = phantom.synthesize(tmp_path / "a", 3, seed=7)
    b = phantom.synthesize(tmp_path / "b", 3, seed=7)
    c = phantom.synthesize(tmp_path / "c", 3, seed=8)
    fa, fb, fc = (read_filelist(x) for x in (a, b, c))
    pd.testing.assert_frame_equal(fa, fb)
    assert not fa.EF.equals(fc.EF)
    name = fa.FileName[0]
    np.testing.assert_array_equal(read_frames(video_path(a, name)), read_frames(video_path(b, name)))


def test_video_matches_filelist_header(phantom_root):
    df = read_filelist(phantom_root)
    for row in df.itertuples():
        info = probe_video(video_path(phantom_root, row.FileName))
        assert (info.n_frames, info.height, info.width) == (row.NumberOfFrames, 112, 112)
        assert info.fps == pytest.approx(row.FPS, abs=0.01)


@pytest.mark.parametrize("version", [v1, v2])
def test_ed_is_larger_than_es_in_pixels(version):
    spec = version.make_spec(0, seed=1, split="TRAIN")
    video = version.render(spec)
    dark = (cv2.GaussianBlur(video[spec.ed_frame], (0, 0), 1.5) < 30).sum(), \
        (cv2.GaussianBlur(video[spec.es_frame], (0, 0), 1.5) < 30).sum()
    assert dark[0] > dark[1]


@pytest.mark.parametrize("cycle_state", [v1.cycle_state, phantom.heart.cycle_state])
def test_cycle_state_hits_ed_and_es_exactly(cycle_state):
    c = cycle_state(np.array([10, 25, 10 + 47.3]), ed_frame=10, period=47.3, systole=15)
    np.testing.assert_allclose(c, [0.0, 1.0, 0.0], atol=1e-9)


def test_v1_ef_distribution_is_echonet_like():
    rng = np.random.default_rng(0)
    ef = np.array([v1.sample_ef(rng) for _ in range(20000)])
    assert 54 < ef.mean() < 58 and 10 < ef.std() < 14
    assert 0.15 < (ef < 50).mean() < 0.25
    assert ef.min() >= 10 and ef.max() <= 85


def test_splits_are_non_empty_and_echonet_proportioned():
    s = phantom.assign_splits(1000, seed=0)
    assert (s.count("TRAIN"), s.count("VAL"), s.count("TEST")) == (750, 125, 125)
    assert set(phantom.assign_splits(3, 0)) == {"TRAIN", "VAL", "TEST"}
