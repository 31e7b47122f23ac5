"""``echolite export RUN_DIR VARIANT --out BUNDLE``: a folder to copy to any machine with Python,
numpy, OpenCV and the variant's runtime (ONNX Runtime or OpenVINO), and no PyTorch::

    BUNDLE/
      predict.py            python predict.py VIDEO|DIR ... [--csv OUT.csv]  (same CSV as `echolite predict`)
      model.onnx | model.xml + model.bin     the variant's own file(s), byte for byte
      preprocess.json       frames, size, sampling, grey conversion, input layout, normalisation, model
      MODEL_CARD.md         data, TEST metrics with CIs, size, latency and device, Δ vs FP32, use, limits
      requirements.txt      the versions the run measured with
      echolite/             the torch-free reader and runner, copied unchanged from this package

``check_bundle`` runs the bundle's ``predict.py`` in a fresh process in which ``import torch`` fails,
on the run's own evaluation videos, and compares its EF with the run's row (``--check``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import echolite
from echolite import EcholiteError
from echolite.compress.backends.executorch import EXECUTORCH
from echolite.compress.backends.onnxruntime import ORT
from echolite.compress.backends.openvino import OPENVINO
from echolite.data.echonet import video_path
from echolite.deploy.predict import DEFAULT_CLIPS, Variant, open_variant, preprocess_spec
from echolite.deploy.runner import PREPROCESS_FILE
from echolite.measure.size import model_files
from echolite.results import size_bytes

PACKAGE = Path(echolite.__file__).parent
# the package files a bundle carries unchanged (numpy + OpenCV + a runtime only: tests check)
CARRIED = ("__init__.py", "data/__init__.py", "data/video.py", "deploy/__init__.py", "deploy/runner.py")
RUNTIME_PACKAGE = {ORT: "onnxruntime", OPENVINO: "openvino"}
CARD = "MODEL_CARD.md"
LAUNCHER = '''#!/usr/bin/env python3
"""EF (%) of echo videos with this bundle's model; no PyTorch needed.

    python predict.py VIDEO|DIR ... [--csv OUT.csv] [--clips N] [--fps F] [--threads T]

Needs: pip install -r requirements.txt (numpy, opencv-python-headless, {runtime}).
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # this bundle's own copy of echolite's torch-free reader and runner

from echolite.deploy.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(bundle=HERE))
'''


def _model_files(variant: Variant) -> tuple[str, list[Path]]:
    """The runtime package and the file(s) of a variant a bundle can run."""
    stage = variant.stage
    if stage.runtime not in RUNTIME_PACKAGE:
        needs = "ExecuTorch's runtime (copy its .pte: README, the ARM path)" if stage.runtime == EXECUTORCH \
            else "PyTorch"
        raise EcholiteError(f"{variant.name} runs on {stage.runtime}, which needs {needs}; a bundle carries a "
                            f"variant that runs on ONNX Runtime or OpenVINO (this run has: "
                            f"{', '.join(exportable(variant.results)) or 'none'})")
    try:
        return RUNTIME_PACKAGE[stage.runtime], model_files(next(iter(stage.artifacts.values())))
    except FileNotFoundError as err:
        raise EcholiteError(f"{variant.name}: {err} (rerun the run)") from None


def exportable(results: dict) -> list[str]:
    return [r["name"] for r in results["rows"] if r["status"] == "ok" and r.get("backend") in RUNTIME_PACKAGE]


def normalisation(variant: Variant) -> dict:
    """The input statistics the model applies inside (from the run's checkpoint), for the record."""
    ckpt = variant.run_dir / "best.pt"
    stats = torch.load(ckpt, map_location="cpu", weights_only=True).get("stats", {}) if ckpt.is_file() else {}
    return {"inside_model": True, "pixel_mean": stats.get("pixel_mean"), "pixel_std": stats.get("pixel_std"),
            "note": "(x - pixel_mean) / pixel_std is the model's first operation: feed raw 0..255 values"}


def export(run_dir: str | Path, name: str, out: str | Path, clips: int = DEFAULT_CLIPS) -> Path:
    """Write the bundle of ``run_dir``'s variant ``name`` into ``out`` (a new folder), atomically."""
    variant = open_variant(run_dir, name)
    runtime, files = _model_files(variant)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EcholiteError(f"--out {out}: exists and is not empty; export never overwrites (choose a new folder)")
    if not files[0].is_file():
        raise EcholiteError(f"{variant.name}: its model file {files[0]} is missing from the store (rerun the run)")
    prep = preprocess_spec(variant.cfg, clips)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # same filesystem: os.replace below
    try:
        for src in files:  # names kept: an .onnx names its external data, an .xml its .bin
            shutil.copy2(src, tmp / src.name)
        prep["model"] = {"file": files[0].name, "runtime": runtime, "variant": variant.name,
                         "precision": variant.row["precision"], "backend": variant.row["backend"],
                         "method": variant.row["method"]}
        prep["normalisation"] = normalisation(variant)
        (tmp / PREPROCESS_FILE).write_text(json.dumps(prep, indent=1) + "\n")
        for rel in CARRIED:
            dst = tmp / "echolite" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PACKAGE / rel, dst)
        (tmp / "predict.py").write_text(LAUNCHER.format(runtime=runtime))
        versions = variant.results["run"]["environment"]["packages"]
        (tmp / "requirements.txt").write_text("".join(
            f"{p}=={versions[p]}\n" if versions.get(p) else f"{p}\n"
            for p in ("numpy", "opencv-python-headless", runtime)))
        (tmp / CARD).write_text(model_card(variant, prep, tmp))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _fmt(v: dict, fmt: str) -> str:
    return f"{v['value']:{fmt}} [{v['ci_low']:{fmt}}, {v['ci_high']:{fmt}}]"


def model_card(variant: Variant, prep: dict, folder: Path) -> str:
    """MODEL_CARD.md of a bundle, from the run's results (nothing typed by hand)."""
    res, row = variant.results, variant.row
    data, env, meas = res["run"]["data"], res["run"]["environment"], res["measure"]
    ref = next(r for r in res["rows"] if r["name"] == "fp32")
    metrics = res["task"]["metrics"]
    m = row["metrics"]
    lines = [f"# Model card: EF regression, `{variant.name}`", "",
             "**Intended use: research and engineering evaluation. Not a medical device; not for diagnosis or "
             "treatment decisions.**", "",
             "## What it is",
             f"- Task: {res['task'].get('title', 'ejection fraction (%) from apical-4-chamber echo videos')}.",
             f"- Variant `{variant.name}`: {row['method']}; precision {row['precision']}; runs on {row['backend']} "
             f"(file `{prep['model']['file']}`).",
             f"- Input: {prep['n_frames']} grey frames, {prep['size']}x{prep['size']}, {prep['clip_frames']}; the EF "
             f"of a video is the mean over {prep['clips']} clips spread over it (`--clips`).",
             f"- Made by echolite {env['packages'].get('echolite')} at commit {env.get('git_commit')}, run "
             f"`{res['run'].get('command')}` ({res['run'].get('created')}).", "",
             "## What it was trained on",
             f"- {data['kind']} at `{data['root']}`: {data['splits']} videos (TRAIN/VAL/TEST)."]
    if "phantom" in data["kind"]:
        lines.append("- **A procedural phantom, not patients.** Its EF is exact by construction; its look is tuned "
                     "to aggregate statistics of real echo. A phantom-trained model's accuracy on real hearts is "
                     "not what the table below says: measure it on your data first.")
    lines += ["", f"## Accuracy ({m['split']}, {m['n']} videos, one clip per video as measured; 95 % bootstrap CIs)",
              "| metric | this variant | FP32 reference | paired Δ (variant − FP32) |", "|---|---|---|---|"]
    for spec in metrics:
        k, fmt = spec["key"], spec.get("fmt", ".2f")
        v, r = m["values"].get(k), ref["metrics"]["values"].get(k)
        d = (m.get("paired_delta") or {}).get(k)
        if v is None:
            continue
        delta = (f"{d['value']:+{fmt}} [{d['ci_low']:+{fmt}}, {d['ci_high']:+{fmt}}]"
                 + (f" ({100 * d['relative']:+.1f} %)" if d.get("relative") is not None else "")) if d else "—"
        lines.append(f"| {spec.get('label', k)} | {_fmt(v, fmt)} | {_fmt(r, fmt)} | {delta} |")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    lat, ref_lat = row["latency_ms"], ref["latency_ms"]
    lines += ["", "## Size and speed",
              f"- Model file: {size_bytes(row) / 1e6:.2f} MB (FP32 weights {size_bytes(ref) / 1e6:.2f} MB). "
              f"Bundle: {total / 1e6:.2f} MB in {len(files) + 1} files.",
              f"- Latency, one clip, batch 1, measured in the run on {meas['device']}: p50 {lat['p50']:.2f} ms "
              f"(p90 {lat['p90']:.2f}) = {lat['p50'] / ref_lat['p50']:.3f}x FP32 PyTorch eager in the same process "
              f"({ref_lat['p50']:.1f} ms). Another CPU gives other numbers: time it there (`echolite bench`).", "",
              "## Limits",
              "- Apical-4-chamber views only, as in training; other views, Doppler or colour-flow overlays are out of "
              "its domain and are not detected.",
              "- Frames are read as grey; colour video is converted (BT.601 luma). Frame rate comes from the video "
              "header (`--fps` when there is none).",
              "- No uncertainty beyond the spread across clips (`EF_sd`); a large spread marks a video to review.",
              f"- {row['precision']} arithmetic on {row['backend']}: predictions differ from the FP32 model's by the "
              "paired Δ above.", "",
              "## Files", *[f"- `{p.relative_to(folder)}` ({p.stat().st_size / 1e3:.1f} kB)" for p in files],
              f"- `{CARD}` (this file)", ""]
    return "\n".join(lines)


def torch_blocker(folder: Path) -> dict:
    """An environment in which ``import torch`` raises (a ``torch`` package in ``folder`` put first
    on PYTHONPATH): what a machine without PyTorch looks like to a bundle."""
    (folder / "torch").mkdir(parents=True, exist_ok=True)
    (folder / "torch" / "__init__.py").write_text(
        'raise ImportError("torch is blocked here: an echolite bundle must run without PyTorch")\n')
    return {**os.environ, "PYTHONPATH": str(folder)}


def check_bundle(bundle: str | Path, variant: Variant, limit: int = 0) -> dict:
    """Run ``bundle/predict.py`` in a fresh process where ``import torch`` fails, one clip per video,
    on the run's evaluation videos; compare with the run's row. Returns the largest |ΔEF|, the
    videos checked, and the cold start (process start -> first EF printed) in seconds."""
    bundle = Path(bundle)
    meas = variant.results["measure"]["eval"]
    root = Path(variant.results["run"]["data"]["root"])
    ids = meas["ids"][:limit] if limit else meas["ids"]
    expected = dict(zip(meas["ids"], variant.row["prediction"]))
    with tempfile.TemporaryDirectory() as tmp:
        env = torch_blocker(Path(tmp) / "blocker")
        csv_path = Path(tmp) / "out.csv"
        cmd = [sys.executable, str(bundle / "predict.py"), *(str(video_path(root, i)) for i in ids),
               "--clips", "1", "--csv", str(csv_path)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        first = proc.stdout.readline()
        cold = time.perf_counter() - t0
        rest, err = proc.communicate()
        total = time.perf_counter() - t0
        if proc.returncode != 0 or not first:
            raise EcholiteError(f"{bundle}/predict.py failed (exit {proc.returncode}): "
                                f"{(err.strip().splitlines() or ['no output'])[-1]}")
        with open(csv_path) as f:
            got = {r["FileName"]: float(r["EF_pred"]) for r in csv.DictReader(f)}
    diffs = [abs(got[f"{i}.avi"] - expected[i]) for i in ids]
    return {"videos": len(ids), "split": meas["split"], "max_abs_diff": max(diffs),
            "cold_start_s": round(cold, 2), "total_s": round(total, 2), "torch": "blocked (import raises)"}
