"""Ejection fraction from echocardiogram videos in the EchoNet-Dynamic layout (or the phantom).

Items are clips of ``n_frames`` grey frames (uint8, (T, 1, H, W)), read from the decoded-frame
cache when there is one; targets are EF in percent; the model is the ResNet-18 EF regressor of
:mod:`echolite.models.ef`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from echolite import EcholiteError
from echolite.data import framecache
from echolite.data.echonet import SPLITS, EchoClips, pixel_stats, read_filelist, video_path
from echolite.data.fingerprint import file_digests
from echolite.data.phantom import synthesize
from echolite.data.sampler import EpochSampler
from echolite.data.validate import drop_bad_rows, validate
from echolite.identity import dataset_key, phantom_inputs
from echolite.measure.throughput import loader_throughput
from echolite.metrics.regression import auc_below, mae, r2, rmse
from echolite.models.ef import EFRegressor, load_pretrained_backbone
from echolite.settings import EFDataConfig, EFEvalConfig, EFModelConfig
from echolite.store import bytes_digest
from echolite.tasks.base import Budget, DataRef, EvalSet, Metric, Task

log = logging.getLogger(__name__)


class EFTask(Task):
    NAME = "ef"
    TITLE = "ejection fraction (%) from apical-4-chamber echo videos"
    INPUT_NAME = "clips"
    ITEM = "video"
    METRICS = (Metric("mae", "MAE", "EF points"), Metric("rmse", "RMSE", "EF points"),
               Metric("r2", "R²", fmt=".3f", higher_is_better=True),
               Metric("auc", "AUC(EF<50)", fmt=".3f", higher_is_better=True))
    PRIMARY = "mae"
    BUDGET = Budget(0.05, relative=True)  # MAE may grow by 5 % of the FP32 MAE
    EVAL_BATCH = 1  # one video at a time, as at the bedside
    OUTPUT_LAYERS = ("head",)
    FIGURES = ("agreement",)
    DataConfig, ModelConfig, EvalConfig = EFDataConfig, EFModelConfig, EFEvalConfig

    def __init__(self, cfg, data: DataRef, store=None):
        super().__init__(cfg, data)
        self._evalsets: dict = {}
        self._train_stats: tuple[float, float] | None = None
        self.cache = None
        if store is not None:
            self.cache = framecache.open_cache(store.root / framecache.FOLDER, data.root, data.table,
                                               data.items, video_path, cfg.data.frame_cache)
        data.description["frames"] = "frame cache (store)" if self.cache else "AVI decode"

    # --- data ---------------------------------------------------------------------------------
    @classmethod
    def prepare(cls, cfg, run_dir: Path, store, splits=SPLITS) -> DataRef:
        """Resolve (generating the phantom into the store if needed) and validate the dataset;
        ``splits`` are the ones the job needs (evaluation needs only its own).

        Raises:
            EcholiteError: validation failed (each problem is logged first).
        """
        dc = cfg.data
        if dc.root:
            root, kind = Path(dc.root), "EchoNet-layout dataset"
        else:
            root, kind = cls._phantom(cfg, store), f"echolite phantom v{dc.phantom_version}"
        report = cls.validate(root, splits=splits)
        for problem in report.problems:
            log.error("%s", problem)
        if report.ok:
            table = read_filelist(root)
        elif dc.drop_bad_rows and not report.fatal:
            dropped = Path(run_dir) / "dropped_rows.csv"
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            table = drop_bad_rows(report, dropped)
            log.warning("%s; dropped them (list in %s)", report.summary(), dropped)
            empty = [s for s in splits if not (table["Split"] == s).any()]
            if empty:
                raise EcholiteError(f"{root}: no {'/'.join(empty)} rows left after dropping bad rows")
        else:
            raise EcholiteError(report.summary() + " (see above; data.drop_bad_rows=true skips bad rows)")
        names = table["FileName"].tolist()
        contents = file_digests([video_path(root, n) for n in names], store.root if store else None)
        items = dict(zip(names, contents))
        key = dataset_key("EchoNet-Dynamic, uint8 grey clips (T, 1, H, W)", {
            "table": bytes_digest([table.to_csv(index=False).encode()]), "videos": items})
        counts = {s: int((table["Split"] == s).sum()) for s in SPLITS}
        return DataRef(root, table, key, {"root": str(root), "kind": kind, "splits": counts}, items)

    @classmethod
    def _phantom(cls, cfg, store) -> Path:
        """The built-in phantom of this config: an entry of the store (keyed by what draws it)."""
        dc = cfg.data
        entry = store.entry("phantom", "phantom", phantom_inputs(dc.phantom_version, dc.phantom_n,
                                                                 dc.phantom_seed, dc.size))
        if not entry.complete:
            t0 = time.perf_counter()
            log.info("generating %d phantom v%d videos in %s (%s)", dc.phantom_n, dc.phantom_version,
                     entry.path, entry.describe_miss())
            entry.open_in_place()  # resumable: videos already written are kept
            synthesize(entry.path, dc.phantom_n, dc.phantom_seed, dc.size, workers=2, version=dc.phantom_version)
            entry.mark_complete()
            log.info("phantom written in %.0f s", time.perf_counter() - t0)
        return entry.path

    @classmethod
    def validate(cls, root: Path, check_items: bool = True, splits=SPLITS):
        return validate(root, check_videos=check_items, splits=splits)

    def split_rows(self, split: str) -> pd.DataFrame:
        rows = self.data.table[self.data.table["Split"] == split]
        if rows.empty:
            raise EcholiteError(f"{self.data.root}: the dataset has no {split} videos (FileList.csv column Split)")
        return rows

    def _clips(self, rows: pd.DataFrame, train: bool) -> EchoClips:
        d = self.cfg.data
        return EchoClips(self.data.root, rows, d.n_frames, d.size, d.shift_px if train else 0,
                         d.sampling, d.window_s, self.cache, d.augment if train else 0.0)

    @property
    def ef_stats(self) -> tuple[float, float]:
        """Mean and standard deviation of TRAIN's EF (only training needs them)."""
        if self._train_stats is None:
            train = self.split_rows("TRAIN")["EF"].to_numpy(np.float64)
            self._train_stats = float(train.mean()), float(train.std())
        return self._train_stats

    # --- model --------------------------------------------------------------------------------
    @classmethod
    def build_model(cls, cfg, stats: dict | None = None) -> torch.nn.Module:
        stats = stats or {"pixel_mean": [0.0] * 3, "pixel_std": [1.0] * 3, "ef_mean": 0.0, "ef_std": 1.0}
        return EFRegressor(cfg.model.pooling, stats["pixel_mean"], stats["pixel_std"],
                           stats["ef_mean"], stats["ef_std"], cfg.model.channels, cfg.model.arch,
                           cfg.model.frame_size)

    @classmethod
    def model_name(cls, cfg) -> str:
        m = cfg.model
        return (f"{m.arch}" + ("" if m.arch == "r2plus1d_18" else f"-{m.pooling}")
                + ("-motion" if m.channels == "motion" else "") + (f"-{m.frame_size}px" if m.frame_size else ""))

    @classmethod
    def example_shape(cls, cfg) -> tuple[int, ...]:
        return (cfg.data.n_frames, 1, cfg.data.size, cfg.data.size)

    def init_stats(self) -> dict:
        mean, std = pixel_stats(self._clips(self.split_rows("TRAIN"), train=False),
                                self.cfg.data.stats_items, self.cfg.train.seed)
        ef_mean, ef_std = self.ef_stats
        return {"pixel_mean": mean, "pixel_std": std, "ef_mean": ef_mean, "ef_std": ef_std}

    def load_pretrained(self, model: torch.nn.Module, path: str) -> str:
        return load_pretrained_backbone(model, path)

    # --- training -----------------------------------------------------------------------------
    def train_dataset(self) -> EchoClips:
        return self._clips(self.split_rows("TRAIN"), train=True)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error in units of the TRAIN EF standard deviation."""
        return (((output - target) / self.ef_stats[1]) ** 2).mean()

    def distill_loss(self, output: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """Mean squared distance to the teacher's EF, in the same units as :meth:`loss`."""
        return self.loss(output, teacher.reshape(output.shape))

    # --- compression and evaluation -----------------------------------------------------------
    def example_input(self) -> torch.Tensor:
        rows = self.data.table[self.data.table["Split"] == self.cfg.eval.split]
        clip, _ = self._clips((rows if len(rows) else self.data.table).iloc[:1], train=False)[0]
        return clip.unsqueeze(0).float()  # (1, T, 1, H, W)

    def calibration_inputs(self, n: int, split: str) -> list[torch.Tensor]:
        inputs = self.eval_set(split, limit=n, seed=1).inputs
        return [x.unsqueeze(0).float() for x in inputs]

    def eval_set(self, split: str, limit: int | None = None, seed: int = 0) -> EvalSet:
        key = (split, limit, seed)
        if key not in self._evalsets:
            rows = self.split_rows(split)
            if limit:
                rows = rows.sample(n=min(limit, len(rows)), random_state=seed)
            loader = DataLoader(self._clips(rows, train=False), batch_size=8, shuffle=False,
                                num_workers=self.num_workers)
            clips, efs = [], []
            for c, e in loader:
                clips.append(c)
                efs.append(e)
            self._evalsets[key] = EvalSet(torch.cat(clips), torch.cat(efs).numpy().astype(np.float64),
                                          rows["FileName"].tolist(), split)
        return self._evalsets[key]

    def decode(self, outputs: torch.Tensor) -> np.ndarray:
        return outputs.reshape(-1).double().numpy()

    def metric_fns(self) -> dict:
        return {"mae": mae, "rmse": rmse, "r2": r2, "auc": auc_below(self.cfg.eval.threshold_ef)}

    def extra_metrics(self, targets: np.ndarray, pred: np.ndarray) -> dict:
        extra = {"bias": float(np.mean(pred - targets))}
        if (self.data.table["Split"] == "TRAIN").any():
            extra["mae_predict_train_mean"] = mae(targets, np.full_like(targets, self.ef_stats[0]))
        return extra

    def compare(self, pred: np.ndarray, ref_pred: np.ndarray) -> dict:
        return {"max_abs_diff": float(np.max(np.abs(pred - ref_pred))), "unit": "EF points"}

    def prediction_table(self, evalset: EvalSet, pred: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"FileName": evalset.ids, "EF": evalset.targets, "EF_pred": pred,
                             "Split": evalset.split})

    def spec(self) -> dict:
        spec = super().spec()
        for m in spec["metrics"]:
            if m["key"] == "auc":
                m["label"] = f"AUC(EF<{self.cfg.eval.threshold_ef:g})"
        return spec


# --- data tools (echolite cache, echolite bench-data) ------------------------------------------------
def frame_cache_tool(cfg, out: Path, store, rebuild: bool, verify: bool, workers: int) -> tuple[list[str], bool]:
    """Build (or check) the frame cache of ``cfg.data.root`` in ``store``; returns the lines to
    print and whether every check passed (``echolite cache``). ``out`` takes the list of dropped
    rows, if any (never the data folder)."""
    data = EFTask.prepare(cfg, out, store)
    folder = store.root / framecache.FOLDER
    todo = list(data.items) if rebuild else framecache.missing(folder, data.items)
    lines = [f"frame cache at {folder}: {len(data.items) - len(todo)} of {len(data.items)} videos cached"]
    if todo:
        counts = dict(zip(data.table["FileName"], data.table["NumberOfFrames"].astype(int)))
        framecache.build(folder, data.root, data.items, todo, counts, video_path, workers)
        lines.append(f"decoded {len(todo)} video(s)")
    ok = True
    if verify:
        bad = framecache.verify(folder, data.items)
        ok = not bad
        lines.append(f"verified every video's frames against its sha1: {len(bad)} differ"
                     + (f" ({bad[:3]})" if bad else ""))
    return lines, ok


def bench_data(cfg, out: Path, store, split: str, workers: int, batch_size: int, n_frames: int, size: int,
               sampling: str) -> list[str]:
    """Clip loader throughput on a dataset split, decoding AVI and from the frame cache, for
    1..``workers`` loader processes (``echolite bench-data``; ``out`` takes the dropped rows' list)."""
    data = EFTask.prepare(cfg, out, store, splits=(split,))
    table = data.table[data.table["Split"] == split]
    names = table["FileName"].tolist()
    contents = {n: data.items[n] for n in names}
    folder = store.root / framecache.FOLDER
    sources = [("AVI decode", None)]
    lines = []
    if not framecache.missing(folder, contents):
        sources.append(("frame cache", framecache.FrameCache(folder, contents)))
    else:
        lines.append(f"frame cache at {folder}: incomplete (build it with `echolite cache --data {cfg.data.root}`)")
    for label, cache in sources:
        ds = EchoClips(data.root, table, n_frames, size, 0, sampling, 1.2, cache)
        for w in range(1, workers + 1):
            for mode in ("train", "eval"):
                sampler = EpochSampler(len(ds), 0) if mode == "train" else None
                loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=w)
                r = loader_throughput(loader)
                lines.append(f"{label:11s} {mode:5s} sampling ({sampling}): {r['items_per_s']:7.1f} clips/s "
                             f"({n_frames} frames, {r['items']} clips, batch {batch_size}, {w} worker(s))")
    return lines
