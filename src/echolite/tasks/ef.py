"""Ejection fraction from echocardiogram videos in the EchoNet-Dynamic layout (or the phantom).

Items are clips of ``n_frames`` grey frames (uint8, (T, 1, H, W)), read from the decoded-frame
cache when there is one; targets are EF in percent; the model is the ResNet-18 EF regressor of
:mod:`echolite.models.ef`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from echolite import EcholiteError
from echolite.cache import bytes_digest, digest
from echolite.config import EvalConfig
from echolite.data.echonet import SAMPLINGS, EchoClips, pixel_stats, read_filelist, video_path
from echolite.metrics.regression import auc_below, mae, r2, rmse
from echolite.tasks.base import Budget, DataRef, EvalSet, Metric, Task

log = logging.getLogger(__name__)


@dataclass
class EFDataConfig:
    root: str | None = None  # dataset root; None = generate the phantom below
    phantom_n: int = 600  # videos in the generated phantom dataset
    phantom_seed: int = 0
    phantom_version: int = 2  # 2: anatomy + simulated scanner (default); 1: the first, cartoon phantom
    n_frames: int = 8  # frames per clip
    sampling: str = "window"  # window: frames span window_s seconds; spread: the whole video
    window_s: float = 1.2  # ~one beat at 50 bpm: 8 frames at every phase, no aliasing with HR
    size: int = 112  # model input height = width
    shift_px: int = 0  # training augmentation: random translation (pixels)
    augment: float = 1.0  # training augmentation: appearance strength (data/augment.py), 0 = off
    num_workers: int = 1  # DataLoader worker processes
    stats_items: int = 64  # TRAIN videos used to estimate pixel mean/std
    drop_bad_rows: bool = False  # drop rows that fail validation instead of stopping
    frame_cache: bool = False  # build the decoded-frame cache if missing (an existing one is always used)
    cache_dir: str | None = None  # where frame caches live; None = <dataset root>/.echolite-frames

    def __post_init__(self):
        if self.sampling not in SAMPLINGS:
            raise EcholiteError(f"data.sampling must be one of {', '.join(SAMPLINGS)}, but got "
                                f"{self.sampling!r}")
        if self.phantom_version not in (1, 2):
            raise EcholiteError(f"data.phantom_version must be 1 or 2, but got {self.phantom_version!r}")
        if self.augment < 0:
            raise EcholiteError(f"data.augment must be >= 0 (0 = off), but got {self.augment}")
        if self.n_frames < 1 or self.size < 16:
            raise EcholiteError(f"data.n_frames must be >= 1 and data.size >= 16, got "
                                f"{self.n_frames}, {self.size}")


@dataclass
class EFModelConfig:
    pooling: str = "meanstd"  # temporal pooling: mean | meanstd (chosen on VAL: see README)
    channels: str = "grey"  # backbone input: grey (repeated) | motion (frame, deviation, difference)
    pretrained: str | None = None  # local file: an echolite checkpoint (e.g. phantom-trained) or a
    #                                torchvision ResNet-18 state dict; None = random init

    def __post_init__(self):
        from echolite.models.ef import CHANNELS, POOLINGS

        if self.pooling not in POOLINGS:
            raise EcholiteError(f"model.pooling must be one of {', '.join(POOLINGS)}, but got "
                                f"{self.pooling!r}")
        if self.channels not in CHANNELS:
            raise EcholiteError(f"model.channels must be one of {', '.join(CHANNELS)}, but got "
                                f"{self.channels!r}")


@dataclass
class EFEvalConfig(EvalConfig):
    threshold_ef: float = 50.0  # AUC target: EF below this is "reduced"


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
    DataConfig, ModelConfig, EvalConfig = EFDataConfig, EFModelConfig, EFEvalConfig

    def __init__(self, cfg, data: DataRef):
        from echolite.data.framecache import open_cache

        super().__init__(cfg, data)
        self._evalsets: dict = {}
        self.cache = open_cache(data.root, data.table, data.key, cfg.data.cache_dir, cfg.data.frame_cache)
        data.description["frames"] = f"frame cache {self.cache.folder}" if self.cache else "AVI decode"
        train = self.split_rows("TRAIN")["EF"].to_numpy(np.float64)
        self.ef_mean, self.ef_std = float(train.mean()), float(train.std())

    # --- data ---------------------------------------------------------------------------------
    @classmethod
    def prepare(cls, cfg, run_dir: Path) -> DataRef:
        """Resolve (generating the phantom if needed) and validate the dataset.

        Raises:
            EcholiteError: validation failed (each problem is logged first).
        """
        from echolite.data.phantom import synthesize
        from echolite.data.validate import drop_bad_rows

        dc = cfg.data
        if dc.root:
            root, kind = Path(dc.root), "EchoNet-layout dataset"
        else:
            root, kind = phantom_root(cfg, run_dir), f"echolite phantom v{dc.phantom_version}"
            if not (root / "FileList.csv").is_file():
                t0 = time.perf_counter()
                log.info("generating %d phantom v%d videos in %s", dc.phantom_n, dc.phantom_version, root)
                synthesize(root, dc.phantom_n, dc.phantom_seed, dc.size, workers=2,
                           version=dc.phantom_version)
                log.info("phantom written in %.0f s", time.perf_counter() - t0)
        report = cls.validate(root)
        for problem in report.problems:
            log.error("%s", problem)
        if report.ok:
            table = read_filelist(root)
        elif dc.drop_bad_rows and not report.fatal:
            table = drop_bad_rows(report, run_dir / "dropped_rows.csv")
            log.warning("%s; dropped them (list in %s)", report.summary(), run_dir / "dropped_rows.csv")
            empty = [s for s in ("TRAIN", "VAL", "TEST") if not (table["Split"] == s).any()]
            if empty:
                raise EcholiteError(f"{root}: no {'/'.join(empty)} rows left after dropping bad rows")
        else:
            raise EcholiteError(report.summary() + " (see above; data.drop_bad_rows=true skips bad rows)")
        stamps = [_stamp(video_path(root, n)) for n in table["FileName"]]  # a re-encoded video: new key
        key = digest({"root": str(root.resolve()), "clips": "uint8 grey (T, 1, H, W)",
                      "table": bytes_digest([table.to_csv(index=False).encode()]),
                      "videos": digest(stamps)})
        splits = {s: int((table["Split"] == s).sum()) for s in ("TRAIN", "VAL", "TEST")}
        return DataRef(root, table, key, {"root": str(root), "kind": kind, "splits": splits})

    @classmethod
    def validate(cls, root: Path, check_items: bool = True):
        from echolite.data.validate import validate

        return validate(root, check_videos=check_items)

    def split_rows(self, split: str) -> pd.DataFrame:
        rows = self.data.table[self.data.table["Split"] == split]
        if rows.empty:
            raise EcholiteError(f"the dataset has no {split} videos (FileList.csv column Split)")
        return rows

    def _clips(self, rows: pd.DataFrame, train: bool) -> EchoClips:
        d = self.cfg.data
        return EchoClips(self.data.root, rows, d.n_frames, d.size, d.shift_px if train else 0,
                         d.sampling, d.window_s, self.cache, d.augment if train else 0.0)

    # --- model --------------------------------------------------------------------------------
    @classmethod
    def build_model(cls, cfg, stats: dict | None = None) -> torch.nn.Module:
        from echolite.models.ef import EFRegressor

        stats = stats or {"pixel_mean": [0.0] * 3, "pixel_std": [1.0] * 3, "ef_mean": 0.0, "ef_std": 1.0}
        return EFRegressor(cfg.model.pooling, stats["pixel_mean"], stats["pixel_std"],
                           stats["ef_mean"], stats["ef_std"], cfg.model.channels)

    @classmethod
    def model_name(cls, cfg) -> str:
        return f"resnet18-{cfg.model.pooling}" + ("-motion" if cfg.model.channels == "motion" else "")

    @classmethod
    def example_shape(cls, cfg) -> tuple[int, ...]:
        return (cfg.data.n_frames, 1, cfg.data.size, cfg.data.size)

    def init_stats(self) -> dict:
        mean, std = pixel_stats(self._clips(self.split_rows("TRAIN"), train=False),
                                self.cfg.data.stats_items, self.cfg.train.seed)
        return {"pixel_mean": mean, "pixel_std": std, "ef_mean": self.ef_mean, "ef_std": self.ef_std}

    def load_pretrained(self, model: torch.nn.Module, path: str) -> str:
        from echolite.models.ef import load_pretrained_backbone

        return load_pretrained_backbone(model, path)

    # --- training -----------------------------------------------------------------------------
    def train_dataset(self) -> EchoClips:
        return self._clips(self.split_rows("TRAIN"), train=True)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error in units of the TRAIN EF standard deviation."""
        return (((output - target) / self.ef_std) ** 2).mean()

    # --- compression and evaluation -----------------------------------------------------------
    def example_input(self) -> torch.Tensor:
        clip, _ = self._clips(self.split_rows("TEST").iloc[:1], train=False)[0]
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
        return {"mae_predict_train_mean": mae(targets, np.full_like(targets, self.ef_mean))}

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

    @classmethod
    def figures(cls, results: dict, run_dir: Path) -> list[str | None]:
        from echolite.tasks.figures import plot_agreement

        return [plot_agreement(results, run_dir / "agreement.png")]


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def phantom_root(cfg, run_dir: Path) -> Path:
    """Where the generated phantom of this config lives: shared by runs under the same parent."""
    d = cfg.data
    suffix = f"-v{d.phantom_version}" if d.phantom_version > 1 else ""
    return Path(run_dir).parent / f"phantom-n{d.phantom_n}-s{d.phantom_seed}-{d.size}px{suffix}"
