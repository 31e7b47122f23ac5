"""`echolite` command line: a thin map from subcommands to package functions.

    echolite run [--task ef] [--config quick] [--data DIR] [--out DIR]   the whole pipeline
    echolite synth OUT --n N --seed S       write a phantom dataset (EchoNet-Dynamic layout)
    echolite realism --data DIR             its appearance statistics beside real echo's
    echolite digits OUT                     write the built-in digits in the CIFAR-10 layout
    echolite validate --data DIR            check a dataset; non-zero exit on problems
    echolite train --data DIR --out DIR     train the FP32 baseline (resumable)
    echolite evaluate --checkpoint CKPT --data DIR
    echolite report RUN_DIR                 regenerate report.md and figures from results.json
    echolite bench RUN_DIR                  re-time every saved artifact, ratios vs FP32 eager
    echolite recipes                        the built-in recipes and the step types
    echolite predict VIDEO|DIR --model RUN_DIR/VARIANT|BUNDLE [--csv OUT.csv]   EF per video
    echolite export RUN_DIR VARIANT --out BUNDLE [--check]   a torch-free folder to copy anywhere
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import sys
import time
import typing
from pathlib import Path

from echolite import EcholiteError, __version__, api, pipeline
from echolite.bench import bench_run, profile_variant
from echolite.compress.base import step_types
from echolite.compress.recipes import expand, known_names
from echolite.config import apply_overrides, describe, load_config
from echolite.data import realism
from echolite.data.digits import write_digits
from echolite.data.phantom import synthesize
from echolite.data.validate import drop_bad_rows
from echolite.env import (
    atomic_write_json,
    atomic_write_text,
    end_distributed,
    init_distributed,
    resolve_device,
)
from echolite.identity import pretrained_file
from echolite.report import table_markdown, write_report
from echolite.results import load_results
from echolite.tasks import task_class
from echolite.tasks.ef import bench_data, frame_cache_tool
from echolite.typed import describe as describe_fields
from echolite.typed import hints

log = logging.getLogger("echolite")
SHORTCUTS = (("data", "data.root"), ("pooling", "model.pooling"), ("pretrained", "model.pretrained"),
             ("epochs", "train.epochs"), ("device", "train.device"), ("seed", "train.seed"))

def _config(args):
    cfg = load_config(args.config, task=args.task)
    sets = list(args.set or [])
    for flag, key in SHORTCUTS:
        value = getattr(args, flag, None)
        if value is not None:
            sets.append(f"{key}={value}")
    cfg = apply_overrides(cfg, sets)
    pretrained_file(cfg)  # a missing file: a one-line error before any work
    return cfg


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default=None, help="ef (default) | cifar10 | another registered task")
    p.add_argument("--config", default=None,
                   help="preset name (smoke, quick, full) or YAML file; flags below win")
    p.add_argument("--data", default=None,
                   help="dataset root (ef: EchoNet-Dynamic layout, default: the phantom; "
                        "cifar10: CIFAR-10 python layout, default: the built-in digits)")
    p.add_argument("--pooling", choices=["mean", "meanstd"], default=None, help="EF temporal pooling")
    p.add_argument("--pretrained", default=None,
                   help="initial weights from a local file (never downloaded): an echolite checkpoint "
                        "(e.g. a phantom-trained best.pt) or a torchvision ResNet-18 state dict")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--device", default=None, help="auto | cpu | cuda")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override any config field, e.g. --set train.lr=3e-4 (repeatable); "
                        "`echolite settings` lists them all")


def _log_to(out: Path) -> None:
    """Append the log to ``out/run.log`` (process 0 of a torchrun launch only; the others log
    warnings to the console)."""
    if int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger().setLevel(logging.WARNING)
        return
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


def cmd_synth(args) -> int:
    t0 = time.perf_counter()
    synthesize(args.out, args.n, args.seed, args.size, args.workers, args.version, args.appearance)
    dt = time.perf_counter() - t0
    print(f"wrote {args.n} phantom v{args.version} videos to {args.out} in {dt:.1f} s "
          f"({args.n / dt:.1f} videos/s, {args.workers} worker(s))")
    return 0


def cmd_realism(args) -> int:
    data = Path(args.data)
    name = data.resolve().name
    stats = realism.dataset_stats(realism.folder_videos(data, args.split, args.max_videos))
    if args.reference:
        ref_name = Path(args.reference).resolve().name
        reference = realism.dataset_stats(realism.folder_videos(args.reference, args.split, args.max_videos))
    else:
        ref_name, reference = "real EchoNet (216 clips)", realism.real_targets()
    rows = realism.compare(stats, reference)
    table = realism.format_table(rows, name, ref_name)
    out = Path(args.out) if args.out else Path("runs") / "realism" / (
        name if not args.reference else f"{name}-vs-{ref_name}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "realism.json", {"data": str(data), "stats": stats, "comparison": rows,
                                             "reference": args.reference or "package targets"})
    atomic_write_text(out / "realism.md", table + "\n")
    realism.figure(stats, out / "realism.png", name, reference if args.reference else None, ref_name)
    print(table)
    inside = sum(r["inside"] for r in rows)
    print(f"{inside} of {len(rows)} statistics inside the reference's range; {out / 'realism.png'}")
    return 1 if args.check and inside < len(rows) else 0


def cmd_digits(args) -> int:
    folder = write_digits(args.out)
    print(f"wrote scikit-learn's handwritten digits in the CIFAR-10 layout to {folder}")
    return 0


def cmd_cache(args) -> int:
    cfg = _config(args)
    if not cfg.data.root:
        raise EcholiteError("echolite cache needs --data DIR (a dataset in the EchoNet-Dynamic layout)")
    out = Path(args.out or Path("runs") / "cache")
    lines, ok = frame_cache_tool(cfg, out, pipeline.store_for(out), args.rebuild, args.verify, args.workers)
    print("\n".join(lines))
    return 0 if ok else 1


def cmd_validate(args) -> int:
    t0 = time.perf_counter()
    splits = (args.split.upper(),) if args.split else ("TRAIN", "VAL", "TEST")
    report = task_class(args.task or "ef").validate(Path(args.data), not args.skip_items, splits)
    seconds = time.perf_counter() - t0
    for problem in report.problems:
        print(problem, file=sys.stderr)
    if args.drop_bad and report.problems and not report.fatal:
        kept = drop_bad_rows(report, args.drop_bad)
        print(f"{report.summary()}; {len(kept)} usable rows, dropped rows listed in {args.drop_bad}")
        return 0
    print(f"{report.summary()} ({seconds:.1f} s)", file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def cmd_train(args) -> int:
    cfg = _config(args)
    out = Path(args.out)
    _log_to(out)
    device = init_distributed(resolve_device(cfg.train.device))  # under torchrun: DDP
    task = pipeline.prepare(cfg, out)
    pipeline.claim(out, task, "baseline")
    best = pipeline.train(task, out, device)
    end_distributed()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"best checkpoint: {best} (linked from {out / best.name}); `echolite run` with the same "
              "settings and an --out beside it reuses it")
    return 0


def cmd_evaluate(args) -> int:
    out = Path(args.out) if args.out else pipeline.default_evaluation_out(args.checkpoint, args.data, args.split)
    if args.out is None and Path(args.checkpoint).resolve().parent in out.resolve().parents:
        raise EcholiteError("refusing to write evaluation outputs inside the checkpoint's run")
    metrics = api.evaluate(args.checkpoint, args.data, args.split.upper(), out, resolve_device(args.device))
    print(json.dumps(metrics, indent=2))
    print(f"predictions and metrics in {out}")
    return 0


def cmd_run(args) -> int:
    cfg = _config(args)
    out = Path(args.out or Path("runs") / (cfg.name if cfg.task == "ef" else f"{cfg.task}-{cfg.name}"))
    _log_to(out)
    if pipeline.run(cfg, out, init_distributed(resolve_device(cfg.train.device))) is None:
        return 0  # a torchrun process other than 0: it trained; process 0 measures and reports
    print((out / "report.md").read_text())
    print(f"results: {out / 'results.json'}")
    return 0


def cmd_search(args) -> int:
    cfg = _config(args)
    name = f"search-{cfg.name}" if cfg.task == "ef" else f"search-{cfg.task}-{cfg.name}"
    out = Path(args.out or Path("runs") / name)
    _log_to(out)
    if args.objective:
        cfg.search.objective = args.objective
    if args.max_minutes is not None:
        cfg.search.max_minutes = args.max_minutes
    cfg.search.__post_init__()
    record = pipeline.search(cfg, out, init_distributed(resolve_device(cfg.train.device)), args.budget,
                             not args.no_test_check)
    print((out / "search.md").read_text())
    print(f"search: {out / 'search.json'}; winner: {record['winner']}")
    return 0


def cmd_report(args) -> int:
    if args.table:
        print(table_markdown(load_results(args.run_dir)))
        return 0
    print(write_report(args.run_dir).read_text())
    return 0


def cmd_bench(args) -> int:
    if args.profile:
        rows = profile_variant(Path(args.run_dir), args.profile)
        total = sum(r["ms"] for r in rows)
        print(f"{args.profile}: per-op time, batch 1 (sum {total:.2f} ms per call)")
        print(f"{'op':<28} {'kernel':<34} {'ms':>8} {'share':>6} {'count':>6}")
        for r in rows[:args.top]:
            print(f"{r['op']:<28} {r['kernel']:<34} {r['ms']:8.3f} {100 * r['ms'] / total:5.1f}% {r['count']:6d}")
        return 0
    out = bench_run(Path(args.run_dir), args.min_runs, args.min_seconds, args.rounds)
    print(f"device: {out['device']}; {out['rounds']} interleaved rounds; ratio = median over rounds of "
          "p50(variant) / p50(FP32 eager) in the same round [min, max]")
    print(f"{'variant':<52} {'p50 ms':>8} {'ratio':>7} {'[min, max]':>16} {'speed-up':>9} {'items/s@B':>10}")
    for r in out["rows"]:
        print(f"{r['variant']:<52} {r['p50_ms']:8.2f} {r['ratio_vs_fp32_eager']:7.3f} "
              f"[{r['ratio_min']:.3f}, {r['ratio_max']:.3f}] {r['speedup']:8.2f}x {r['throughput_items_per_s']:10.1f}")
    rounds = ", ".join(f"{v:.1f}" for v in out["reference_p50_ms_rounds"])
    flag = " — DRIFT > 10 %: read the ratios with care" if out["reference_drift_flag"] else ""
    print(f"FP32 eager p50 per round: {rounds} ms (drift {100 * out['reference_drift']:.1f} %){flag}")
    for line in out["not_timed"]:
        print(f"not timed: {line}")
    return 0


def cmd_predict(args) -> int:
    from echolite.deploy import predict, runner

    run, prep, variant = predict.resolve(args.model, args.threads, args.clips)
    if args.split:
        if variant is None:
            raise EcholiteError("--split scores a run's own data: give --model RUN_DIR/VARIANT")
        if args.videos or args.fps:
            raise EcholiteError("--split reads the run's own videos at FileList's frame rates: name no VIDEO "
                                "and no --fps")
        summary, rows = predict.evaluate_split(variant, run, prep, args.split)
        d = summary["paired_delta"]
        print(f"{summary['variant']} on {summary['split']} ({summary['n']} videos): MAE one clip "
              f"{summary['mae_one_clip']:.3f}, averaged over {summary['mean_clips']:.1f} clips "
              f"{summary['mae_whole_video']:.3f}; paired Δ {d['value']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] "
              f"({100 * d['relative']:+.1f} %); mean sd across clips {summary['mean_sd_across_clips']:.2f} EF points")
        if "max_abs_diff_vs_row" in summary:
            print(f"one clip vs the run's row: max |ΔEF| {summary['max_abs_diff_vs_row']:.4f}")
        if args.csv:
            print(f"wrote {runner.write_csv(rows, args.csv, extra=('EF', 'EF_pred_one_clip'))}")
        return 0
    if not args.videos:
        raise EcholiteError("name at least one VIDEO or folder (or --split TEST with --model RUN_DIR/VARIANT)")
    paths = runner.find_videos(args.videos, runner.needs_fps(prep, args.fps))
    rows = runner.predict_paths(paths, run, prep, prep["clips"], args.fps,
                                on_row=lambda r: print(runner.describe(r), flush=True))
    if args.csv:
        print(f"wrote {runner.write_csv(rows, args.csv)}")
    return 0


def cmd_export(args) -> int:
    from echolite.deploy import bundle, predict

    out = api.export(args.run_dir, args.variant, args.out, args.clips)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: {sum(p.stat().st_size for p in files) / 1e6:.2f} MB in {len(files)} files")
    for p in files:
        print(f"  {p.relative_to(out)}  {p.stat().st_size / 1e3:.1f} kB")
    if args.check:
        c = bundle.check_bundle(out, predict.open_variant(args.run_dir, args.variant), args.check_items)
        print(f"check: {out}/predict.py with torch {c['torch']}, {c['videos']} {c['split']} videos, one clip each: "
              f"max |EF - the run's row| {c['max_abs_diff']:.4f}; cold start (process start -> first EF) "
              f"{c['cold_start_s']:.2f} s, all videos {c['total_s']:.2f} s")
        if c["max_abs_diff"] > args.tolerance:
            raise EcholiteError(f"the bundle's EF differs from the run's row by {c['max_abs_diff']:.4f} "
                                f"> {args.tolerance} EF points")
    return 0


def cmd_bench_data(args) -> int:
    cfg = apply_overrides(load_config(None), [f"data.root={args.data}"])
    out = Path(args.out or Path("runs") / "bench-data")
    for line in bench_data(cfg, out, pipeline.store_for(out), args.split.upper(), args.workers,
                           args.batch_size, args.frames, args.size, args.sampling):
        print(line)
    return 0


def cmd_bench_train(args) -> int:
    print(pipeline.bench_training_step(_config(args), args.steps))
    return 0


def cmd_backbones(args) -> int:
    import tempfile

    cfg = _config(args)
    cls = task_class(cfg.task)
    archs = args.archs or list(typing.get_args(hints(type(cfg.model))["arch"]))
    with tempfile.TemporaryDirectory() as tmp:
        rows = api.backbone_costs(cls, cfg, archs, Path(tmp))
    print(f"{cfg.task}: input {cls.example_shape(cfg)}, batch 1, {cfg.measure.threads} threads, untrained weights; "
          f"ratios to {archs[0]} eager p50")
    print(f"{'arch':<22} {'params M':>9} {'GMACs':>8} {'eager ms':>9} {'(×ref)':>7} {'ORT ms':>8} {'(×ref)':>7}")
    for r in rows:
        print(f"{r['arch']:<22} {r['params'] / 1e6:9.2f} {r['macs'] / 1e9:8.3f} {r['eager_p50_ms']:9.2f} "
              f"{r['eager_ratio']:7.3f} {r['ort_p50_ms']:8.2f} {r['ort_ratio']:7.3f}")
    return 0


def cmd_recipes(args) -> int:
    cfg = _config(args)
    if args.names:
        for name in args.names:
            print(f"{name}:")
            for line in expand(name, cfg.compress):
                print(f"  {line}")
        return 0
    print("built-in recipes (compress.methods; `echolite recipes NAME` shows what one expands to):")
    for name in known_names().split(", "):
        print(f"  {name}")
    print("\nsteps for compress.recipes (YAML: [{step: {field: value}}, ...]):")
    for key, cls in sorted(step_types().items()):
        print(f"  {key}  ({cls.consumes} -> {cls.produces}): {(cls.__doc__ or '').strip().splitlines()[0]}")
        for line in describe_fields(cls, indent="      "):
            print(line)
    return 0


def cmd_settings(args) -> int:
    print("every setting (--set SECTION.KEY=VALUE, or in a YAML config); [not part of any key]: changing it "
          "never rebuilds anything")
    print("\n".join(describe()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="echolite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"echolite {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="data -> baseline -> every recipe built and measured -> report")
    _add_config_flags(p)
    p.add_argument("--out", default=None, help="run folder (default: runs/<config name>)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("search", help="the fastest (or smallest) student x pruning x INT8 runtime within an "
                       "accuracy budget: chosen on VAL, checked on TEST")
    _add_config_flags(p)
    p.add_argument("--budget", default=None, help="5%% (relative, EF) or 0.5pp (accuracy); default: the task's")
    p.add_argument("--objective", choices=["latency", "size"], default=None, help="default: search.objective")
    p.add_argument("--max-minutes", type=float, default=None, help="start no candidate after this long")
    p.add_argument("--out", default=None, help="search folder (default runs/search-<config name>)")
    p.add_argument("--no-test-check", action="store_true", help="do not score the winner on TEST")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("synth", help="write an echo phantom dataset in the EchoNet-Dynamic layout")
    p.add_argument("out")
    p.add_argument("--n", type=int, default=100, help="number of videos")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=112, help="frame height = width (pixels)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--version", type=int, default=2, choices=[1, 2], help="phantom renderer (default 2)")
    p.add_argument("--appearance", default="standard", choices=["standard", "shifted"],
                   help="shifted: the same hearts imaged with out-of-range scanner settings (v2)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("realism", help="appearance statistics of a dataset beside real echo's (or another "
                       "dataset's): how far is it from the data you have?")
    p.add_argument("--data", required=True, help="dataset in the EchoNet-Dynamic layout")
    p.add_argument("--reference", default=None,
                   help="another dataset to compare with (default: the real-echo targets in the package)")
    p.add_argument("--split", default=None, help="only this split's videos (TRAIN, VAL, TEST)")
    p.add_argument("--max-videos", type=int, default=216, help="a seeded sample of this many videos")
    p.add_argument("--out", default=None, help="folder for realism.json/.md/.png (default runs/realism/NAME)")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if a statistic is outside the reference's range")
    p.set_defaults(func=cmd_realism)

    p = sub.add_parser("digits", help="write scikit-learn's handwritten digits in the CIFAR-10 layout")
    p.add_argument("out")
    p.set_defaults(func=cmd_digits)

    p = sub.add_parser("cache", help="build (or check) the decoded-frame cache of an EF dataset (in the store "
                       "beside OUT, where `echolite run --out` finds it)")
    _add_config_flags(p)
    p.add_argument("--out", default=None, help="a run folder whose store holds the cache (default runs/cache)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--rebuild", action="store_true", help="rebuild even if up to date")
    p.add_argument("--verify", action="store_true", help="recompute every video's checksum from the cache")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("validate", help="check a dataset before any long work")
    p.add_argument("--data", required=True)
    p.add_argument("--task", default=None, help="ef (default) | cifar10 | another registered task")
    p.add_argument("--drop-bad", metavar="CSV", default=None,
                   help="instead of failing, list the bad rows and why in CSV (exit 0)")
    p.add_argument("--skip-items", action="store_true", help="check the index files only")
    p.add_argument("--split", default=None, help="only this split is needed (e.g. an external TEST set)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("train", help="train the FP32 baseline into the store (the entry `run` reuses); "
                       "OUT/best.pt links to it")
    _add_config_flags(p)
    p.add_argument("--out", required=True, help="checkpoint folder")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="predictions CSV and metrics of a checkpoint on a split")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="TEST", choices=["TRAIN", "VAL", "TEST", "train", "val", "test"])
    p.add_argument("--out", default=None,
                   help="output folder (default: runs/evaluate/<data>-<split>-ckpt<digest>)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="regenerate report.md and figures from RUN_DIR/results.json")
    p.add_argument("run_dir")
    p.add_argument("--table", action="store_true", help="print only the variants table (markdown)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("bench", help="re-time every saved artifact of RUN_DIR in one process, in "
                       "interleaved rounds; prints median ratios vs FP32 eager with their spread")
    p.add_argument("run_dir")
    p.add_argument("--min-runs", type=int, default=None, help="timed calls per variant (at least)")
    p.add_argument("--min-seconds", type=float, default=None, help="seconds per variant (at least), over all rounds")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (each variant once per round)")
    p.add_argument("--profile", metavar="VARIANT", help="instead: per-op times of one ONNX Runtime/OpenVINO variant")
    p.add_argument("--top", type=int, default=15, help="ops shown by --profile")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("predict", help="EF (%%) of echo videos (AVI, MP4, ...; any size, fps, colour) from a "
                       "run's variant or an export bundle; clips averaged over the whole video")
    p.add_argument("videos", nargs="*", help="video files or folders of them")
    p.add_argument("--model", required=True, help="RUN_DIR/VARIANT (e.g. runs/quick/static-int8-ov) or a bundle")
    p.add_argument("--csv", help="one row per video: FileName, EF_pred, EF_sd, EF_min, EF_max, clips, ...")
    p.add_argument("--clips", type=int, default=None, help="clips per video (default 8, or the bundle's)")
    p.add_argument("--fps", type=float, default=None, help="frame rate, for videos whose header has none")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--split", choices=["TRAIN", "VAL", "TEST"], type=str.upper,
                   help="instead of videos: every video of this split of the run's data, the clips' average "
                   "against one clip (paired ΔMAE with a 95 %% CI)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="a torch-free bundle of a variant: model file, preprocess.json, "
                       "MODEL_CARD.md, predict.py")
    p.add_argument("run_dir")
    p.add_argument("variant", help="a row of RUN_DIR that runs on ONNX Runtime or OpenVINO")
    p.add_argument("--out", required=True, help="a new folder (never overwritten)")
    p.add_argument("--clips", type=int, default=None, help="the bundle's default clips per video (8)")
    p.add_argument("--check", action="store_true", help="then run BUNDLE/predict.py with torch unimportable on the "
                   "run's evaluation videos and compare with the run's row; prints the cold start")
    p.add_argument("--check-items", type=int, default=0, help="videos the check runs (0 = all)")
    p.add_argument("--tolerance", type=float, default=0.05, help="the check fails above this |ΔEF|")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench-data", help="clip loader throughput (clips/s) on a dataset split, "
                       "decoding AVI and from the frame cache, for 1..N workers")
    p.add_argument("--data", required=True)
    p.add_argument("--out", default=None, help="a folder whose store (beside it) holds the frame cache, as "
                   "for `echolite cache --out` (default runs/bench-data)")
    p.add_argument("--split", default="TRAIN")
    p.add_argument("--workers", type=int, default=2, help="up to this many worker processes")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--sampling", choices=["window", "spread"], default="window")
    p.set_defaults(func=cmd_bench_data)

    p = sub.add_parser("bench-train", help="time a training step in fp32 and with bf16 autocast "
                       "(how train.amp=auto was chosen)")
    _add_config_flags(p)
    p.add_argument("--steps", type=int, default=5, help="timed steps per precision")
    p.set_defaults(func=cmd_bench_train)

    p = sub.add_parser("recipes", help="list the built-in recipes and the step types with their fields; "
                       "with names, what each expands to")
    p.add_argument("names", nargs="*", help="recipe names to expand (built-in or from --config's recipes)")
    _add_config_flags(p)
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("backbones", help="what every model.arch costs on this CPU (params, MACs, eager and ONNX "
                       "Runtime p50, untrained weights) on the task's input")
    p.add_argument("archs", nargs="*", help="archs to time (default: every one of the task; the first is the "
                   "reference of the ratios)")
    _add_config_flags(p)
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser("settings", help="every config setting with its type, default and meaning")
    p.set_defaults(func=cmd_settings)
    return parser


def entry() -> int:
    """The ``echolite`` command (and ``python -m echolite``): a crash in native code (a runtime)
    leaves its Python traceback on stderr, then :func:`main`."""
    faulthandler.enable()
    return main()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        force=True)  # one invocation, one set of handlers (also when called in-process)
    for noisy in ("onnxscript", "torch.onnx", "onnx_ir"):  # the exporter's pass-by-pass chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except EcholiteError as err:
        print(f"echolite: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("echolite: interrupted; finished work is kept, rerun to resume", file=sys.stderr)
        return 130
