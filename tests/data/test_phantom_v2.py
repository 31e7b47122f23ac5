"""Phantom v2: exact geometry, independent randomness per video, real-echo appearance."""

import dataclasses

import numpy as np
import pytest

from echolite.cli import main
from echolite.data import realism
from echolite.data.phantom import heart as hm
from echolite.data.phantom import scanner, specs, synthesize, v2
from echolite.data.tracings import disk_volume


def _specs(n=24, seed=5):
    return specs(n, seed=seed, version=2)


def test_the_drawn_ef_is_reached_by_the_method_of_disks():
    """The solver finds the wall motion that gives the EF drawn from the prior (same random stream)."""
    for spec in _specs(16):
        target = hm.sample_ef(v2._rng(spec.seed, spec.split, spec.index, 0))
        assert spec.ef == pytest.approx(target, abs=1e-6)
        assert spec.esv < spec.edv and 30 < spec.edv < 300


def test_tracing_chords_measure_the_volumes_of_the_filelist():
    """disk_volume (the tracing reader, written independently) on the 21 rows of the ED and ES
    frames gives EDV and ESV, once pixels are converted to cm."""
    for spec in _specs(8):
        cm = spec.scan.cm_per_px
        ed = disk_volume(v2.tracing_rows(spec, spec.ed_frame), cm)
        es = disk_volume(v2.tracing_rows(spec, spec.es_frame), cm)
        assert ed == pytest.approx(spec.edv, rel=1e-9) and es == pytest.approx(spec.esv, rel=1e-9)


def test_ed_and_es_frames_are_the_largest_and_smallest_volumes():
    for spec in _specs(8):
        t = np.arange(spec.n_frames)
        vols = [hm.volume_ml(spec.heart, float(c)) for c in v2.contraction(spec, t)]
        assert vols[spec.ed_frame] == pytest.approx(max(vols))
        assert vols[spec.es_frame] == pytest.approx(min(vols))


def test_the_inverse_motion_map_takes_every_boundary_back_to_end_diastole():
    """A point on a layer boundary at state c maps to the same boundary at c = 0, exactly."""
    spec = _specs(3)[0]
    h = spec.heart
    for c in (0.3, 1.0):
        s = np.linspace(0.05, 0.95, 9)
        a_now = s * float(hm.length(h, c))
        sep_now, lat_now = hm.boundaries(h, s * h.length, c)
        sep0, lat0 = hm.boundaries(h, s * h.length, 0.0)
        for k in range(4):
            a0, l0 = hm.to_material(h, a_now, -sep_now[k], np.full(9, c))
            np.testing.assert_allclose(a0, s * h.length, atol=1e-9)
            np.testing.assert_allclose(l0, -sep0[k], atol=1e-6)
        a0, l0 = hm.to_material(h, a_now, lat_now[1], np.full(9, c))
        np.testing.assert_allclose(l0, lat0[1], atol=1e-6)
        # the tabulated map of the renderer agrees with the exact one
        motion = hm.Motion(h, [c], (-2.0, 16.0), step=0.05)
        ta, tl = motion.to_material(a_now[None], lat_now[0][None])
        np.testing.assert_allclose(tl[0], lat0[0], atol=5e-3)


def test_the_inverse_motion_map_undoes_the_decaying_displacement_outside_the_heart():
    """Beyond the outer boundary tissue at material distance x sits at x + shift exp(-(x - outer) /
    DECAY_CM): the inverse recovers x from that forward formula, for outward and inward shifts."""
    then = np.array([[1.0], [1.5], [2.0], [2.6]]) * np.ones((4, 7))
    x = then[-1] + np.linspace(0.0, 3.0, 7)  # material points outside, from the surface on
    for shift in (-0.8, -0.3, 0.4):  # the wall moved inward (systole) or outward
        now = then + shift
        d = x + shift * np.exp(-(x - then[-1]) / hm.DECAY_CM)
        np.testing.assert_allclose(hm._lateral_to_material(d, now, then), x, atol=1e-6)


def test_wall_motion_is_regional_not_a_scaling():
    """Reduced-EF hearts get segmental patterns; segments of one heart move by different amounts."""
    hearts = [s.heart for s in _specs(60, seed=2)]
    spread = [np.ptp(np.asarray(h.inward)) for h in hearts]
    assert np.median(spread) > 0.03
    notes = {s.notes["wall_motion"] for s in _specs(60, seed=2) if s.ef < hm.REDUCED_EF}
    assert len(notes) >= 2


def test_the_ef_prior_is_echonets():
    rng = np.random.default_rng(0)
    ef = np.array([hm.sample_ef(rng) for _ in range(40000)])
    assert abs(ef.mean() - 55.7) < 1.0 and abs(ef.std() - 12.4) < 1.0
    assert abs((ef < 50).mean() - 0.22) < 0.02


def test_seeds_and_splits_give_different_speckle():
    """The same heart under another phantom seed or split gets its own scatterers (v1 drew every
    video's speckle from one bank shared by all seeds and splits); the same (seed, split, index)
    renders the same frames."""
    spec = _specs(3)[0]
    np.testing.assert_array_equal(v2.render(spec)[:4], v2.render(spec)[:4])

    def scatterers(s):  # the complex scatterers' real part, echogenicity divided out
        f = scanner._frame(s.scan)
        raster, _ = scanner.material_raster(s.heart, s.scan, f, v2._rng(s.seed, s.split, s.index, 1))
        return raster[..., 1] / np.maximum(raster[..., 0], 1e-6)

    base = scatterers(spec)
    tissue = np.abs(base) > 1e-3
    for other in (dataclasses.replace(spec, seed=spec.seed + 1),
                  dataclasses.replace(spec, split="TEST" if spec.split != "TEST" else "VAL")):
        r = np.corrcoef(base[tissue], scatterers(other)[tissue])[0, 1]
        assert abs(r) < 0.05, r
        assert not np.array_equal(v2.render(other)[:4], v2.render(spec)[:4])


def test_shifted_appearance_images_the_same_hearts_differently():
    a, b = specs(6, seed=1, version=2), specs(6, seed=1, version=2, appearance="shifted")
    assert [x.ef for x in a] == [x.ef for x in b] and [x.heart for x in a] == [x.heart for x in b]
    assert all(x.scan != y.scan for x, y in zip(a, b))
    for name, ((lo, hi), others) in scanner.IMAGING.items():  # every imaging parameter, both ways
        for seed in range(20):
            standard = scanner._draw(np.random.default_rng(seed), name, False)
            shifted = scanner._draw(np.random.default_rng(seed), name, True)
            assert lo <= standard <= hi, (name, standard)
            assert not lo <= shifted <= hi and any(a <= shifted <= b for a, b in others), (name, shifted)
    assert all(x.scan.depth != y.scan.depth and x.scan.half_angle != y.scan.half_angle for x, y in zip(a, b))


def test_a_tiny_v2_phantom_looks_like_real_echo(tmp_path):
    """Every statistic of the real-echo table falls inside the targets (IQR, or +-20 %), and the
    grey histogram falls past its dark peak."""
    root = synthesize(tmp_path / "p", 64, seed=4, workers=2)
    stats = realism.dataset_stats(realism.folder_videos(root))
    rows = realism.compare(stats, realism.real_targets())
    outside = [(r["label"], r["value"], r["range"] or r["reference"]) for r in rows if not r["inside"]]
    assert not outside


def test_phantom_v1_stays_what_it_was(tmp_path):
    """v1 keeps its look (the statistics measured on it when v2 was designed)."""
    root = synthesize(tmp_path / "v1", 24, seed=0, workers=2, version=1)
    stats = realism.dataset_stats(realism.folder_videos(root))
    assert stats["median_per_video"]["mean_grey_in_fov"] > 85  # v1: bright, bimodal
    assert not realism.monotone_past_peak(stats["grey_histogram_in_fov"])


def test_realism_cli_writes_its_table_figure_and_json(phantom_root, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["realism", "--data", str(phantom_root), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mean grey in the field of view" in text and "statistics inside" in text
    assert {p.name for p in out.iterdir()} == {"realism.json", "realism.md", "realism.png"}
    # against itself every statistic is inside
    assert main(["realism", "--data", str(phantom_root), "--reference", str(phantom_root),
                 "--out", str(tmp_path / "self"), "--check"]) == 0


def test_realism_of_a_missing_dataset_is_one_line(tmp_path, capsys):
    assert main(["realism", "--data", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FileList.csv" in err[0]


def test_augmentation_is_seeded_keeps_black_black_and_changes_appearance():
    from echolite.data.augment import augment

    spec = _specs(3)[0]
    clip = v2.render(spec)[:8]
    a = augment(clip, np.random.default_rng(3), 1.0)
    b = augment(clip, np.random.default_rng(3), 1.0)
    np.testing.assert_array_equal(a, b)
    assert a.shape == clip.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(augment(clip, np.random.default_rng(3), 0.0), clip)
    outs = [augment(clip, np.random.default_rng(s), 1.0) for s in range(8)]
    assert all(o[:, :2, :2].max() == 0 for o in outs)  # the corner outside the sector stays black
    means = [o[o > 0].mean() for o in outs]
    assert np.ptp(means) > 5  # grey levels differ from clip to clip
    assert any(np.abs(o.astype(int) - clip).mean() > 5 for o in outs)


def test_an_echolite_checkpoint_initialises_every_weight_but_the_data_statistics(tmp_path):
    import torch

    from echolite.models.ef import EFRegressor, load_pretrained_backbone

    src = EFRegressor("meanstd", [30.0] * 3, [40.0] * 3, 55.0, 12.0)
    torch.save({"model": src.state_dict(), "config": {}}, tmp_path / "best.pt")
    dst = EFRegressor("meanstd", [50.0] * 3, [45.0] * 3, 60.0, 10.0)
    note = load_pretrained_backbone(dst, tmp_path / "best.pt")
    assert "echolite checkpoint" in note
    for k, v in src.state_dict().items():
        if k in ("pixel_mean", "pixel_std", "ef_mean", "ef_std"):
            assert not torch.equal(dst.state_dict()[k], v)
        else:
            assert torch.equal(dst.state_dict()[k], v), k
    other = EFRegressor("mean")
    torch.save({"model": other.state_dict(), "config": {}}, tmp_path / "mean.pt")
    with pytest.raises(Exception, match="another architecture"):
        load_pretrained_backbone(dst, tmp_path / "mean.pt")
    grey = EFRegressor("meanstd", channels="grey")  # same shapes, other meaning of the 3 channels
    torch.save({"model": grey.state_dict(), "config": {"model": {"channels": "grey"}}}, tmp_path / "grey.pt")
    with pytest.raises(Exception, match="reads grey channels, this one motion"):
        load_pretrained_backbone(EFRegressor("meanstd", channels="motion"), tmp_path / "grey.pt")
    load_pretrained_backbone(EFRegressor("meanstd", channels="grey"), tmp_path / "grey.pt")


def test_the_tracings_follow_the_heart_where_the_video_shows_it():
    """With a large respiratory drift, the traced cavity (ED and ES) covers the dark blood of the
    rendered frame: darker than where the heart would be without the drift."""
    from matplotlib.path import Path as Polygon

    yy, xx = np.mgrid[:112, :112]
    centres = np.c_[xx.ravel() + 0.5, yy.ravel() + 0.5]

    def mean_inside(frame, rows):
        outline = np.concatenate([rows[1:, :2], rows[1:, 2:][::-1]])
        return frame[Polygon(outline).contains_points(centres).reshape(112, 112)].mean()

    checked = 0
    for spec in _specs(6, seed=0):
        spec = dataclasses.replace(spec, scan=dataclasses.replace(spec.scan, breathing_cm=(0.6, 0.6)))
        video = v2.render(spec)
        for t in (spec.ed_frame, spec.es_frame):
            drift = v2.shift_cm(spec, [t])[0]
            if np.abs(drift).max() < 0.2:
                continue
            moved = v2.tracing_rows(spec, t)
            still = v2.tracing_rows(dataclasses.replace(
                spec, scan=dataclasses.replace(spec.scan, breathing_cm=(0.0, 0.0), swing_cm=(0.0, 0.0))), t)
            assert not np.allclose(moved, still)
            assert mean_inside(video[t], moved) < mean_inside(video[t], still)
            checked += 1
    assert checked >= 4  # frames whose drift was large enough to tell


def test_the_realism_table_has_four_cells_in_every_row():
    """Labels hold pipes (|frame-to-frame difference|): escaped, or the markdown row splits."""
    import re

    stats = realism.real_targets()
    table = realism.format_table(realism.compare(stats, stats), "a", "b")
    for line in table.splitlines():
        assert len(re.findall(r"(?<!\\)\|", line)) == 5, line
