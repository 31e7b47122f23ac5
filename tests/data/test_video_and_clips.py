import numpy as np
import torch

from echolite.data.echonet import EchoClips, read_filelist
from echolite.data.phantom import synthesize, v2
from echolite.data.sampler import EpochSampler
from echolite.data.video import eval_indices, read_frames, train_indices, window_indices, write_video


def test_read_selected_frames_in_any_order(tmp_path):
    frames = np.stack([np.full((32, 32), 8 * i, np.uint8) for i in range(30)])
    write_video(tmp_path / "v.avi", frames, fps=50)
    out = read_frames(tmp_path / "v.avi", [29, 3, 3, 10, 0])
    assert out.shape == (5, 32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), [232, 24, 24, 80, 0], atol=2)
    assert read_frames(tmp_path / "v.avi").shape[0] == 30


def test_eval_indices_span_the_whole_video():
    np.testing.assert_array_equal(eval_indices(71, 8), [0, 10, 20, 30, 40, 50, 60, 70])
    assert len(eval_indices(3, 8)) == 8 and eval_indices(3, 8).max() == 2  # short video repeats


def test_train_indices_are_stratified_and_jittered():
    rng = np.random.default_rng(0)
    draws = np.stack([train_indices(80, 8, rng) for _ in range(200)])
    assert draws.min() >= 0 and draws.max() <= 79
    for k in range(8):  # frame k always comes from segment k
        assert draws[:, k].min() >= 10 * k and draws[:, k].max() < 10 * (k + 1)
    assert len(np.unique(draws[:, 0])) > 5


def test_clips_shape_dtype_and_ef(phantom_root):
    table = read_filelist(phantom_root)
    ds = EchoClips(phantom_root, table, n_frames=8, size=112)
    clip, ef = ds[0]
    assert clip.shape == (8, 1, 112, 112) and clip.dtype == torch.uint8  # grey, as echo is
    assert ef.item() == np.float32(table.EF[0])
    row = table.iloc[0]
    idx = window_indices(int(row.NumberOfFrames), 8, float(row.FPS), 1.2)  # evaluation: centred window
    frames = read_frames(phantom_root / "Videos" / f"{row.FileName}.avi", idx)
    assert torch.equal(clip[:, 0], torch.from_numpy(frames[..., 0]))


def test_other_frame_sizes_are_resized(tmp_path):
    root = synthesize(tmp_path / "d64", 3, seed=0, size=64)
    ds = EchoClips(root, read_filelist(root), n_frames=4, size=112)
    assert ds[0][0].shape == (4, 1, 112, 112)


def test_training_items_depend_only_on_seed(phantom_root):
    ds = EchoClips(phantom_root, read_filelist(phantom_root), shift_px=4)
    sampler = EpochSampler(len(ds), seed=1)
    sampler.set_epoch(3)
    items = list(sampler)
    assert sorted(i for i, _ in items) == list(range(len(ds)))
    assert torch.equal(ds[items[0]][0], ds[items[0]][0])
    sampler.set_epoch(4)
    assert [i for i, _ in sampler] != [i for i, _ in items]
    subset = EpochSampler(len(ds), seed=1, max_items=5)
    assert len(list(subset)) == len(subset) == 5


def test_window_indices_span_about_one_beat():
    idx = window_indices(200, 8, fps=50.0, window_s=1.2)
    np.testing.assert_allclose(np.diff(idx), 7.5, atol=1)  # 50 fps * 1.2 s / 8 frames
    assert abs((idx[0] + idx[-1]) / 2 - 99.5) <= 1  # centred
    short = window_indices(20, 8, fps=50.0, window_s=1.2)
    assert short[0] == 0 and short[-1] == 19  # shrinks to fit
    rng = np.random.default_rng(0)
    starts = {window_indices(200, 8, 50.0, 1.2, rng)[0] for _ in range(50)}
    assert len(starts) > 20


def test_window_sampling_sees_systole_where_whole_video_spread_aliases():
    """8 frames spread over a multi-beat video can all fall at one cardiac phase; 8 frames over
    about one beat always see much of the contraction (v2's fast early filling and atrial kick
    keep the worst case below the whole range)."""
    worst = {"spread": 1.0, "window": 1.0}
    for i in range(200):
        s = v2.make_spec(i, seed=0, split="TEST")
        for kind, idx in (("spread", eval_indices(s.n_frames, 8)),
                          ("window", window_indices(s.n_frames, 8, s.fps, 1.2))):
            c = v2.contraction(s, idx)
            worst[kind] = min(worst[kind], c.max() - c.min())
    assert worst["window"] > 0.6 and worst["spread"] < 0.3
