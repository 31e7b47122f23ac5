"""``echolite search``: the fastest (or smallest) model within an accuracy budget, chosen on VAL.

Candidates (:func:`echolite.compress.search.budget.candidate_names`: students × structured
pruning × runtimes, plus listed recipes) are built through the store — so a killed search resumes
without rebuilding anything finished — then opened from their files and measured in this process
on the selection split (VAL, never TEST): latency at batch 1, file size, the primary metric with a
paired 95 % CI against FP32 on the same resamples. (Students and fine-tunings keep their best VAL
epoch, so VAL is used twice — for that and for the budget — and a candidate's VAL bound is a little
optimistic; the TEST check says how much.) The winner is the cheapest candidate whose
bound on the worse side is within the budget; only then is TEST read, once, for the winner and
FP32 (the TEST check). ``search.json`` is rewritten after every candidate (atomically).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import time
from pathlib import Path

from tqdm.auto import tqdm

from echolite.benchmark import measure, time_variant
from echolite.compress.recipes import build, reference_stage
from echolite.compress.runners import load_module, open_runner
from echolite.config import search_recipes
from echolite.env import atomic_write_json, atomic_write_text, cpu_name
from echolite.figures import pareto_front, plt
from echolite.metrics.bootstrap import resample_indices
from echolite.results import choose, size_bytes, worsening_bound
from echolite.task_context import compression_context

log = logging.getLogger(__name__)
SEARCH_FILE, FIGURE = "search.json", "search_front.png"
PEERS = (
    "NNCF quantize_with_accuracy_control: one model, one INT8 recipe; searches which layers to return to "
    "float until the metric drop is within its max_drop (our analogue: static-int8-ort-fallback). "
    "Intel Neural Compressor autotune: one model; searches quantization configurations (per-op "
    "precision, calibration) until the accuracy criterion holds. Neither changes the architecture, "
    "distils, or prunes; this search does all three across runtimes and keeps the bound's CI, not a "
    "point estimate. Neither peer was run here (NNCF comes with issue 19's native OpenVINO path).")


def run_search(task, model, store, out: Path, device, amp, budget: float, test_check: bool = True) -> dict:
    """Build, measure and choose; returns the record written to ``out/search.json``."""
    cfg, sc, mc = task.cfg, task.cfg.search, task.cfg.measure
    t_start = time.perf_counter()
    recipes = search_recipes(cfg)  # checked when the config loaded too
    ctx = compression_context(task, store, device, amp)
    val = task.eval_set("VAL", limit=sc.items or None)
    idx = resample_indices(len(val), cfg.eval.n_bootstrap, cfg.eval.seed)
    example = ctx.example_input
    base, base_key = reference_stage(model.eval().cpu(), store, ctx)
    ref_runner = open_runner(base, ctx.model_factory, mc.threads)
    ref_row, ref_pred = measure("fp32", base, ref_runner, task, val, idx, mc, example, None)
    spec = task.spec()
    frame = {"task": spec, "measure": {"eval": {"split": val.split}}, "rows": [ref_row]}  # what the bound reads
    primary = spec["primary"]
    record = {"budget": {"max_worsening": budget, "relative": spec["budget"]["relative"],
                         "text": spec["budget"]["text"]},
              "objective": sc.objective, "split": val.split, "n": len(val), "space": dataclasses.asdict(sc),
              "primary": primary,
              "device": f"cpu: {cpu_name()}, {mc.threads} threads",
              "reference": {"p50_ms": ref_row["latency_ms"]["p50"], "size_bytes": size_bytes(ref_row),
                            primary: ref_row["metrics"]["values"][primary]["value"]},
              "candidates": [], "status": "running"}
    bar = tqdm(recipes, desc="search", dynamic_ncols=True, disable=None)
    for recipe in bar:
        minutes = (time.perf_counter() - t_start) / 60
        if minutes > sc.max_minutes:
            record["candidates"].append({"name": recipe.name, "status": "not tried",
                                         "error": f"search.max_minutes={sc.max_minutes:g} reached"})
            continue
        bar.set_postfix_str(recipe.name)
        log.info("search: trying %s (%s) after %.1f min", recipe.name, recipe.describe(), minutes)
        record["candidates"].append(_candidate(recipe, base, base_key, ctx, store, task, val, idx, mc, example,
                                               ref_pred, frame))
        atomic_write_json(out / SEARCH_FILE, record)
    last = time_variant(ref_runner, example, mc)["p50"]
    first = ref_row["latency_ms"]["p50"]
    record["reference"].update(p50_last_ms=last, drift=last / first - 1.0)
    scored = [c for c in record["candidates"] if c["status"] == "ok"]
    for c in scored:
        c["ratio_p50"] = c["p50_ms"] / first
        c["ratio_size"] = c["size_bytes"] / record["reference"]["size_bytes"]
    winner = choose(scored, budget, sc.objective)
    cost = "p50_ms" if sc.objective == "latency" else "size_bytes"
    bounded = [c for c in scored if c["bound"] is not None]  # a NaN score has no bound: never on the front
    front = [scored.index(bounded[i]) for i in pareto_front([(c[cost], c["bound"]) for c in bounded])]
    record.update(status="done", winner=winner["name"] if winner else None,
                  pareto=[scored[i]["name"] for i in front],
                  counts={"candidates": len(recipes), "scored": len(scored),
                          "failed": sum(c["status"] == "failed" for c in record["candidates"]),
                          "not_tried": sum(c["status"] == "not tried" for c in record["candidates"]),
                          "steps_built": sum(c.get("steps_built", 0) for c in record["candidates"]),
                          "steps_reused": sum(c.get("steps_reused", 0) for c in record["candidates"])},
                  peers=PEERS)
    atomic_write_json(out / SEARCH_FILE, record)  # the choice is written before TEST is read
    if winner is not None and test_check:
        record["test_check"] = _test_check(task, winner, recipes, base, base_key, ctx, store, mc, example, ref_runner)
    record["wall_minutes"] = round((time.perf_counter() - t_start) / 60, 2)
    _figure(scored, winner, front, record, out / FIGURE)
    atomic_write_json(out / SEARCH_FILE, record)
    atomic_write_text(out / "search.md", summary(record))
    return record


def _candidate(recipe, base, base_key, ctx, store, task, val, idx, mc, example, ref_pred, frame) -> dict:
    t0 = time.perf_counter()
    out = {"name": recipe.name, "recipe": recipe.describe()}
    try:
        stage, info = build(recipe, base, base_key, ctx, store, lambda s: load_module(s, ctx.model_factory))
        runner = open_runner(stage, ctx.model_factory, mc.threads)
        row, _ = measure(recipe.name, stage, runner, task, val, idx, mc, example, ref_pred)
    except Exception as err:  # noqa: BLE001 - a failed candidate is recorded, never replaced
        log.error("search: %s failed: %s", recipe.name, err)
        first = (str(err).splitlines() or [""])[0]
        return {**out, "status": "failed", "error": f"{type(err).__name__}: {first}",
                "seconds": round(time.perf_counter() - t0, 1)}
    finally:
        runner = None
        gc.collect()
    primary = frame["task"]["primary"]
    delta = row["metrics"]["paired_delta"][primary]
    bound = worsening_bound(row, frame)
    return {**out, "status": "ok", "precision": row["precision"], "backend": row["backend"],
            "store": info["store"], "p50_ms": row["latency_ms"]["p50"], "size_bytes": size_bytes(row),
            primary: row["metrics"]["values"][primary]["value"], "delta": delta,
            "bound": bound if bound is not None and math.isfinite(bound) else None,
            "steps_built": sum(s["built"] for s in info["steps"]),
            "steps_reused": sum(not s["built"] for s in info["steps"]),
            "seconds": round(time.perf_counter() - t0, 1)}


def _test_check(task, winner, recipes, base, base_key, ctx, store, mc, example, ref_runner) -> dict:
    """The winner and FP32 on TEST, paired (read once, after the choice)."""
    recipe = next(r for r in recipes if r.name == winner["name"])
    stage, _ = build(recipe, base, base_key, ctx, store, lambda s: load_module(s, ctx.model_factory))
    test = task.eval_set("TEST")
    idx = resample_indices(len(test), task.cfg.eval.n_bootstrap, task.cfg.eval.seed)
    ref_row, ref_pred = measure("fp32", base, ref_runner, task, test, idx, mc, example, None)
    row, _ = measure(recipe.name, stage, open_runner(stage, ctx.model_factory, mc.threads), task, test, idx, mc,
                     example, ref_pred)
    primary = task.PRIMARY
    return {"split": "TEST", "n": len(test), "fp32": ref_row["metrics"]["values"][primary],
            "winner": row["metrics"]["values"][primary], "paired_delta": row["metrics"]["paired_delta"][primary],
            "p50_ratio": row["latency_ms"]["p50"] / ref_row["latency_ms"]["p50"]}


def _figure(scored: list[dict], winner, front: list[int], record: dict, path: Path) -> None:
    if not scored:
        return
    cost = "p50_ms" if record["objective"] == "latency" else "size_bytes"
    scale = 1.0 if cost == "p50_ms" else 1e-6
    rel = record["budget"]["relative"]
    fig, ax = plt().subplots(figsize=(7, 4.5))
    xs = [c[cost] * scale for c in scored]
    ys = [(c["bound"] * (100 if rel else 1)) if c["bound"] is not None else float("nan") for c in scored]
    # (candidates without a bound are not drawn: NaN)
    ax.scatter(xs, ys, c="tab:blue", s=18)
    for i in front:
        ax.annotate(scored[i]["name"], (xs[i], ys[i]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    order = sorted(front, key=lambda i: xs[i])
    ax.plot([xs[i] for i in order], [ys[i] for i in order], color="grey", lw=1)
    ax.axhline(record["budget"]["max_worsening"] * (100 if rel else 1), ls="--", color="tab:red", lw=1)
    if winner is not None:
        w = scored.index(winner)
        ax.scatter([xs[w]], [ys[w]], marker="*", s=160, color="tab:red", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency, ms (batch 1)" if cost == "p50_ms" else "file size, MB")
    ax.set_ylabel(f"paired 95 % bound of Δ{record['primary']} on {record['split']}" + (" (%)" if rel else ""))
    ax.set_title("search: candidates (dots), Pareto front (line), budget (dashed), winner (star)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt().close(fig)


def summary(record: dict) -> str:
    """search.md: the winner, the TEST check, every candidate."""
    rel = record["budget"]["relative"]

    def fmt(v):
        return "—" if v is None else (f"{100 * v:+.1f} %" if rel else f"{v:+.2f}")

    lines = [f"# Search ({record['objective']}, budget: {record['budget']['text']})", "",
             f"- scored on {record['split']} ({record['n']} items), {record['device']}; "
             f"{record['counts']['candidates']} candidates: {record['counts']['scored']} scored, "
             f"{record['counts']['failed']} failed, {record['counts']['not_tried']} not tried; "
             f"steps built {record['counts']['steps_built']}, reused {record['counts']['steps_reused']}; "
             f"wall {record.get('wall_minutes', 0):.1f} min",
             f"- FP32 eager p50 {record['reference']['p50_ms']:.2f} ms first, {record['reference']['p50_last_ms']:.2f} "
             f"ms last (drift {100 * record['reference']['drift']:+.1f} %)",
             f"- winner: **{record['winner'] or 'none within the budget'}**"]
    if abs(record["reference"]["drift"]) > 0.10:
        lines.insert(3, f"- **FP32 eager drifted {100 * record['reference']['drift']:+.0f} % during the search**: the "
                        "machine was busy and the latencies are not comparable; rerun the same command (nothing is "
                        "rebuilt, everything is re-measured)")
    tc = record.get("test_check")
    if tc:
        d = tc["paired_delta"]
        lines.append(f"- TEST check ({tc['n']} items): FP32 {tc['fp32']['value']:.3f}, "
                     f"winner {tc['winner']['value']:.3f}, "
                     f"paired Δ {d['value']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] "
                     f"({100 * d['relative']:+.1f} %), p50 {tc['p50_ratio']:.3f}× FP32")
    lines += ["", "Δ: the candidate minus FP32 on " + record["split"] + "; bound: the 95 % bound on the worse side, "
              "as a worsening (within the budget when <= " + fmt(record["budget"]["max_worsening"]).lstrip("+") + ").",
              "", "| candidate | status | p50 ms (×) | size MB (×) | Δ (bound) on " + record["split"] + " | front |",
              "|---|---|---|---|---|---|"]
    for c in record["candidates"]:
        if c["status"] != "ok":
            lines.append(f"| {c['name']} | {c['status']}: {c.get('error', '')[:80]} | | | | |")
            continue
        d = c["delta"]
        lines.append(f"| {c['name']}{' ★' if c['name'] == record['winner'] else ''} | ok | {c['p50_ms']:.2f} "
                     f"({c['ratio_p50']:.3f}×) | {c['size_bytes'] / 1e6:.2f} ({c['ratio_size']:.3f}×) | "
                     f"{fmt(d['relative'] if rel else d['value'])} ({fmt(c['bound'])}) | "
                     f"{'yes' if c['name'] in record['pareto'] else ''} |")
    lines += ["", "How this compares with the field's accuracy-aware tools: " + record["peers"], ""]
    return "\n".join(lines)
