"""results.json -> report.md and figures: a pure function of results.json (no model, no data).

The core here knows no task: metric names, directions, the accuracy budget and the item unit come
from ``results["task"]`` (written by the task), and task-specific figures from the task class's
``figures`` (e.g. a Bland–Altman plot for a measurement, a confusion matrix for classification).

results.json (schema 2)::

    {"schema": 2,
     "run": {"name", "created", "command", "config", "environment", "data", "resolved"},
     "task": {"name", "title", "item", "primary", "metrics": [{"key", "label", "unit", "fmt",
              "higher_is_better"}], "budget": {"max_worsening", "relative", "text"}, "model"},
     "measure": {"device", "threads", "latency_batch", "throughput_batch", "reference_p50_first_ms",
                 "reference_p50_last_ms", "protocol", "eval": {"split", "n", "ids", "targets", ...}},
     "rows": [{"name", "family", "method", "precision", "backend", "status", "error", "store",
               "metrics": {"values": {key: {"value", "ci_low", "ci_high", ...}},
                           "paired_delta": {key: {"value", "ci_low", "ci_high", "relative", ...}}},
               "prediction": [...], "size_bytes": {kind: int}, "latency_ms": {"p50", "p90", ...},
               "details": {...}}]}

The first row is the reference (FP32 eager); every ratio is against it and was measured in the
same process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from echolite import EcholiteError
from echolite.runtime import atomic_write_text

SCHEMA = 2
MB = 1e6
FAMILIES = ("reference", "fp32 runtimes", "quantization", "pruning", "stacks")


def load_results(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise EcholiteError(f"{path}: not found (run `echolite run` first)")
    results = json.loads(path.read_text())
    if results.get("schema") != SCHEMA:
        raise EcholiteError(f"{path}: results schema {results.get('schema')}, this echolite reads "
                            f"{SCHEMA}; rerun `echolite run` to re-measure")
    return results


# --- helpers ---------------------------------------------------------------------------------------
def _fmt(x, spec=".2f", missing="—"):
    return missing if x is None else format(x, spec)


def size_bytes(row: dict) -> int | None:
    """A row's deployable size: the file its runtime loads (its first artifact)."""
    sizes = row.get("size_bytes") or {}
    return next(iter(sizes.values())) if sizes else None


def complexity(row: dict, results: dict) -> dict:
    """MACs and parameters of a row: from its last step that changed them, else the reference's."""
    for step in reversed((row.get("details") or {}).get("steps", [])):
        if "macs" in step:
            return {"macs": step["macs"], "params": step["params"]}
    ref = reference(results)["details"].get("complexity") or {}
    return {"macs": ref.get("macs"), "params": ref.get("params")}


def prune_level(row: dict) -> tuple[str, float] | None:
    """("unstructured", reached sparsity) or ("structured", channel ratio) of a pruned row."""
    for step in (row.get("details") or {}).get("steps", []):
        if step.get("method") == "unstructured-prune":
            return "unstructured", step["reached_sparsity"]
        if step.get("method") == "structured-prune":
            return "structured", step["ratio"]
    return None


def ok_rows(results: dict) -> list[dict]:
    """The rows measured on the reference's device (rows of other devices are reported apart)."""
    return [r for r in results["rows"] if r["status"] == "ok" and r.get("family") != "device"]


def device_table(results: dict) -> list[str]:
    """Rows timed on another device (a GPU), with ratios against that device's fp32 row only."""
    rows = [r for r in results["rows"] if r.get("family") == "device"]
    if not rows:
        return []
    p = primary(results)
    item, batch = results["task"]["item"], results["measure"]["throughput_batch"]
    lines = [f"## On {rows[0]['device']}", "",
             "Timed on this device alone: its ratios are against its own fp32 row, never against CPU "
             "rows.", "", f"| variant | precision | runtime | {p['label']} | p50 / p90 ms | "
             f"× vs fp32 on this device | {item}s/s @{batch} |", "|---|---|---|---|---|---|---|"]
    base = next((r for r in rows if r["status"] == "ok" and r["precision"] == "fp32"
                 and "compile" not in r["backend"]), None)
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | — | — | — | **{r['status']}**: {r['error']} | — | — |")
            continue
        lat = r["latency_ms"]
        ratio = f"{lat['p50'] / base['latency_ms']['p50']:.2f}×" if base else "—"
        lines.append(f"| {r['name']} | {r['precision']} | {r['backend']} | "
                     f"{r['metrics']['values'][p['key']]['value']:{p['fmt']}} | {_ms(lat['p50'])} / "
                     f"{_ms(lat['p90'])} | {ratio} | {lat['throughput_items_per_s']:.1f} |")
    return lines + [""]


def reference(results: dict) -> dict:
    return results["rows"][0]


def primary(results: dict) -> dict:
    task = results["task"]
    return next(m for m in task["metrics"] if m["key"] == task["primary"])


def worsening_bound(row: dict, results: dict, chosen_on: bool = False) -> float | None:
    """The 95 % bound of the paired Δ(primary) on the *worse* side, in the budget's units.

    Lower-is-better: upper bound of Δ (relative if the budget is relative). Higher-is-better:
    minus the lower bound. ``None`` for the reference row. A value <= budget qualifies.
    With ``chosen_on`` the row's selection split (VAL) is used, where there is one.
    """
    scored = row.get("selection") if chosen_on and row.get("selection") else row["metrics"]
    d = (scored.get("paired_delta") or {}).get(results["task"]["primary"])
    if d is None:
        return None
    rel = results["task"]["budget"]["relative"]
    if primary(results)["higher_is_better"]:
        low = d["rel_ci_low"] if rel else d["ci_low"]
        return -low
    return d["rel_ci_high"] if rel else d["ci_high"]


def recommend(results: dict) -> tuple[dict | None, str]:
    """The fastest variant whose paired Δ(primary) bound is within the task's budget, judged on
    the selection split (VAL) when the rows carry one — a choice never made on TEST.

    Returns (row or None, one sentence saying why).
    """
    budget = results["task"]["budget"]
    rows = ok_rows(results)[1:]
    selected = [r for r in rows if r.get("selection")]
    split = selected[0]["selection"]["split"] if selected else results["measure"]["eval"]["split"]
    if split == "TEST":
        return None, "the rows carry no VAL scores, and a variant is never chosen on TEST"
    if selected:
        rows = selected  # a row without VAL scores cannot be chosen
    candidates = []
    for r in rows:
        bound = worsening_bound(r, results, chosen_on=True)
        if bound is not None and bound == bound and bound <= budget["max_worsening"]:
            candidates.append(r)
    if not candidates:
        return None, f"no variant's paired 95 % bound on {split} is within the budget ({budget['text']})"
    best = min(candidates, key=lambda r: r["latency_ms"]["p50"])
    return best, (f"the fastest variant whose paired 95 % bound on {split} is within the budget "
                  f"({budget['text']})")


# --- markdown --------------------------------------------------------------------------------------
def _ms(x: float) -> str:
    """Milliseconds with 3 significant digits at most (small models run in fractions of a ms)."""
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 1 else f"{x:.3f}"


def _metric_cell(value: dict, spec: str) -> str:
    return f"{value['value']:{spec}} [{value['ci_low']:{spec}}, {value['ci_high']:{spec}}]"


def _delta_cell(d: dict, spec: str, relative: bool) -> str:
    if relative:
        return (f"{100 * d['relative']:+.1f} % [{100 * d['rel_ci_low']:+.1f}, "
                f"{100 * d['rel_ci_high']:+.1f}]")
    return f"{d['value']:+{spec}} [{d['ci_low']:+{spec}}, {d['ci_high']:+{spec}}]"


def training_note(row: dict) -> str | None:
    """Say so when a row's fine-tuning (QAT, pruning's fine-tune) kept none of its epochs: the row
    is then its starting point (the PTQ ranges, the pruned model before fine-tuning)."""
    for step in row.get("details", {}).get("steps", []):
        if step.get("kept_epoch") == 0 and step.get("history"):
            return (f"{step.get('method', 'fine-tuning')} kept epoch 0 of {len(step['history']) - 1} "
                    "(no epoch beat its start on VAL): the row is its starting point (for QAT the "
                    "min-max PTQ ranges, for a fine-tune the model before it)")
    return None


def summary_lines(results: dict) -> list[str]:
    task, meas = results["task"], results["measure"]
    ref = reference(results)
    p = primary(results)
    v = ref["metrics"]["values"]
    others = [m for m in task["metrics"] if m["key"] != p["key"]][:1]
    ref_size, ref_p50 = size_bytes(ref), ref["latency_ms"]["p50"]
    lines = [f"- **Baseline** ({task['model']}, FP32, {ref['backend']}): {p['label']} "
             f"{_metric_cell(v[p['key']], p['fmt'])}"
             + "".join(f", {m['label']} {v[m['key']]['value']:{m['fmt']}}" for m in others)
             + f"; {ref_size / MB:.1f} MB; {_ms(ref_p50)} ms per {task['item']} (p50, batch 1)."]
    best, why = recommend(results)
    if best is None:
        lines.append(f"- **Recommended: none** — {why}; ship the baseline.")
    else:
        d = best["metrics"]["paired_delta"][p["key"]]
        lines.append(f"- **Recommended: `{best['name']}`** ({best['precision']}, {best['backend']}) — {why}: "
                     f"{ref_size / size_bytes(best):.1f}× smaller, "
                     f"{ref_p50 / best['latency_ms']['p50']:.1f}× "
                     f"faster on {meas['device']}; on {meas['eval']['split']}: paired Δ{p['label']} "
                     f"{_delta_cell(d, p['fmt'], task['budget']['relative'])}."
                     + ("" if meas["eval"]["split"] == "VAL" else
                        " VAL also chose the kept fine-tuning epochs and any fallback layers, so the VAL "
                        f"bound is optimistic; the {meas['eval']['split']} Δ is the check."))
    for r in ok_rows(results)[1:]:
        note = training_note(r)
        if note:
            lines.append(f"- `{r['name']}`: {note}.")
        step = next((s for s in r["details"].get("steps", []) if s.get("sensitivity")), None)
        if step and not step["sensitivity"].get("within_bound", True):
            search = step["sensitivity"]
            lines.append(f"- `{r['name']}`: the fallback search did **not** reach its bound "
                         f"({search['final_score']:.4g} vs {search['bound']:.4g} on VAL) with "
                         f"{len(step.get('kept_fp32', []))} layer(s) kept in FP32.")
    failed = [r["name"] for r in results["rows"] if r["status"] == "failed"]
    n_ok = len(ok_rows(results)) - 1
    lines.append(f"- {n_ok} variant(s) measured" + (f", {len(failed)} failed ({', '.join(failed)})"
                                                     if failed else ", none failed")
                 + f"; {results['measure']['eval']['n']} {meas['eval']['split']} {task['item']}s.")
    return lines


def table_markdown(results: dict) -> str:
    task, meas = results["task"], results["measure"]
    p = primary(results)
    rel = task["budget"]["relative"]
    others = [m for m in task["metrics"] if m["key"] != p["key"]]
    ref = reference(results)
    ref_size, ref_p50 = size_bytes(ref), ref["latency_ms"]["p50"]
    ref_macs = complexity(ref, results)["macs"]
    show_macs = any(complexity(r, results)["macs"] != ref_macs for r in ok_rows(results))
    head = (["variant", "method", "precision", "backend", "size MB (×)", "zipped MB",
             f"{p['label']} [95% CI]", f"paired Δ{p['label']} [95% CI]"] + [m["label"] for m in others]
            + (["GMACs (×)", "params M"] if show_macs else [])
            + ["p50 / p90 ms (×)", f"{task['item']}s/s @{meas['throughput_batch']}"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    extra_families = {r.get("family") for r in results["rows"]} - set(FAMILIES) - {"device"}
    for family in FAMILIES + tuple(sorted(extra_families)):
        rows = [r for r in results["rows"] if r.get("family") == family]
        if not rows:
            continue
        lines.append(f"| **{family}** |" + " |" * (len(head) - 1))
        for r in rows:
            if r["status"] != "ok":
                lines.append(f"| {r['name']} | **failed** ({r.get('phase')}): {r['error']} |"
                             + " — |" * (len(head) - 2))
                continue
            v, d = r["metrics"]["values"], (r["metrics"].get("paired_delta") or {}).get(p["key"])
            lat = r["latency_ms"]
            size = size_bytes(r)
            cx = complexity(r, results)
            macs = [f"{cx['macs'] / 1e9:.2f} ({cx['macs'] / ref_macs:.2f}×)", f"{cx['params'] / 1e6:.2f}"] \
                if show_macs else []
            lines.append("| " + " | ".join([
                r["name"], r["method"] + (" (epoch 0 kept)" if training_note(r) else ""),
                r["precision"], r["backend"],
                f"{size / MB:.2f} ({size / ref_size:.2f}×)",
                "—" if r.get("size_compressed_bytes") is None else _fmt(r["size_compressed_bytes"] / MB),
                _metric_cell(v[p["key"]], p["fmt"]),
                "—" if d is None else _delta_cell(d, p["fmt"], rel),
                *[format(v[m["key"]]["value"], m["fmt"]) for m in others], *macs,
                f"{_ms(lat['p50'])} / {_ms(lat['p90'])} ({lat['p50'] / ref_p50:.2f}×)",
                f"{lat['throughput_items_per_s']:.1f}",
            ]) + " |")
    return "\n".join(lines)


def header_lines(results: dict) -> list[str]:
    run, meas, task = results["run"], results["measure"], results["task"]
    env, data = run.get("environment", {}), run.get("data", {})
    return [
        f"- task: {task['title']}; model: {task['model']}; data: {data.get('root')} ({data.get('kind')}), "
        f"{data.get('splits')}",
        f"- device: {meas['device']}; latency at batch {meas['latency_batch']}, throughput at batch "
        f"{meas['throughput_batch']}; {meas['protocol']}; FP32 eager p50 first "
        f"{meas['reference_p50_first_ms']:.1f} ms, "
        f"last {meas['reference_p50_last_ms']:.1f} ms (drift {100 * meas['reference_drift']:+.1f} %)",
        f"- metrics on {meas['eval']['n']} {meas['eval']['split']} {task['item']}s; "
        "95 % CIs by bootstrap over "
        f"{task['item']}s ({meas['eval']['n_bootstrap']} resamples); Δ is paired (same resamples as FP32)",
        f"- created {run.get('created')} by `{run.get('command', '')}`; git {env.get('git_commit')}; "
        f"torch {env.get('packages', {}).get('torch')}; "
        f"training precision: {run.get('resolved', {}).get('amp')}",
    ]


# --- figures ---------------------------------------------------------------------------------------
class _Figures:
    """Figures drawn on matplotlib's object API (no pyplot, no global backend): report files
    render anywhere, and a notebook that generates a report keeps its own inline backend."""

    @staticmethod
    def subplots(*args, figsize=None, **kwargs):
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        return fig, fig.subplots(*args, **kwargs)

    @staticmethod
    def close(fig) -> None:
        fig.clear()


def plt() -> _Figures:
    return _Figures()


def plain_axis(axis) -> None:
    """Plain decimal tick labels on a log axis (no 2×10¹)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_minor_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)))
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda x, _: ""))


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both x and y (both lower is better)."""
    front = []
    for i, (x, y) in enumerate(points):
        beaten = any(x2 <= x and y2 <= y and (x2 < x or y2 < y)
                     for j, (x2, y2) in enumerate(points) if j != i)
        if not beaten:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot_pareto(results: dict, path: Path) -> str | None:
    """Paired Δ(primary) with its CI against latency and against size; front drawn; numbered."""
    rows = ok_rows(results)
    if len(rows) < 2:
        return None
    p = primary(results)
    task = results["task"]
    rel = task["budget"]["relative"]
    sign = -1.0 if p["higher_is_better"] else 1.0  # plot "worsening" upwards for both directions

    def dy(r):
        d = (r["metrics"].get("paired_delta") or {}).get(p["key"])
        if d is None:
            return 0.0, 0.0, 0.0
        k = 100.0 if rel else 1.0
        lo, hi = (d["rel_ci_low"], d["rel_ci_high"]) if rel else (d["ci_low"], d["ci_high"])
        v = d["relative"] if rel else d["value"]
        vals = sorted([sign * k * lo, sign * k * hi])
        return sign * k * v, vals[0], vals[1]

    pyplot = plt()
    fig, axes = pyplot.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    budget = task["budget"]["max_worsening"] * (100.0 if rel else 1.0)
    ylabel = (f"worsening of {p['label']} vs FP32 (%, paired 95 % CI)" if rel else
              f"worsening of {p['label']} vs FP32 ({p['unit'] or 'units'}, paired 95 % CI)")
    for ax, key, label in ((axes[0], "latency", "p50 latency, batch 1 (ms, log scale)"),
                           (axes[1], "size", "size on disk (MB, log scale)")):
        pts = []
        for i, r in enumerate(rows):
            x = r["latency_ms"]["p50"] if key == "latency" else size_bytes(r) / MB
            y, lo, hi = dy(r)
            pts.append((x, y))
            color = "black" if i == 0 else f"C{i % 10}"
            ax.errorbar(x, y, yerr=[[y - lo], [hi - y]], fmt="o", color=color, capsize=3, ms=5)
            ax.annotate(str(i), (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8,
                        color=color, fontweight="bold")
        front = pareto_front(pts)
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "-", color="grey", lw=1,
                alpha=0.6, zorder=0, label="Pareto front (points)")
        ax.axhline(0, color="black", lw=0.8)
        ax.axhline(budget, color="red", lw=0.8, ls="--", label=f"budget ({task['budget']['text']})")
        ax.set_xscale("log")
        plain_axis(ax.xaxis)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=7, loc="upper right")
    legend = "\n".join(f"{i}  {r['name']}" for i, r in enumerate(rows))
    fig.text(0.995, 0.5, legend, fontsize=7, va="center", ha="right", family="monospace")
    fig.tight_layout(rect=(0, 0, 0.83, 1))
    fig.savefig(path, dpi=110)
    pyplot.close(fig)
    return (f"**{path.name}** — each point a variant (numbers: legend at right; 0 = FP32). Up = worse "
            f"{p['label']} than FP32 (paired 95 % CI on the same {task['item']}s); left = faster / smaller. "
            f"Points below the dashed line are within the budget; the grey line joins the Pareto front.")


def plot_pruning(results: dict, path: Path) -> str | None:
    """The primary metric against sparsity (unstructured) and channel ratio (structured), with the
    FP32 value and its CI as a band; FP32 pruned rows on the reference's runtime only."""
    ref = reference(results)
    points: dict[str, list] = {"unstructured": [], "structured": []}
    for r in ok_rows(results)[1:]:
        level = prune_level(r)
        if level and r["backend"] == ref["backend"] and r["precision"] == "fp32":
            points[level[0]].append((level[1], r))
    kinds = [k for k, v in points.items() if v]
    if not kinds:
        return None
    p = primary(results)
    fp32 = ref["metrics"]["values"][p["key"]]
    pyplot = plt()
    fig, axes = pyplot.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        pts = sorted(points[kind], key=lambda t: t[0])
        ax.axhspan(fp32["ci_low"], fp32["ci_high"], color="grey", alpha=0.25, label="FP32 95 % CI")
        ax.axhline(fp32["value"], color="black", lw=1, label="FP32")
        for x, r in pts:
            v = r["metrics"]["values"][p["key"]]
            err = [[v["value"] - v["ci_low"]], [v["ci_high"] - v["value"]]]
            ax.errorbar(100 * x, v["value"], yerr=err, fmt="o", capsize=3)
            ax.annotate(r["name"], (100 * x, v["value"]), xytext=(4, 4), textcoords="offset points",
                        fontsize=7)
        ax.set_xlabel("weights set to zero (%)" if kind == "unstructured" else "channels removed (%)")
        ax.set_ylabel(f"{p['label']} ({results['measure']['eval']['split']}, 95 % CI)")
        ax.set_title(f"{kind} pruning", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot.close(fig)
    return (f"**{path.name}** — {p['label']} of the pruned FP32 models ({ref['backend']}) against how much "
            "was pruned; the grey band is the FP32 model's 95 % CI. Unstructured pruning leaves dense "
            "tensors with zeros: dense kernels are not faster for it, its gain is the zipped size.")


def plot_sensitivity(results: dict, path: Path) -> str | None:
    hit = next(((r, s["sensitivity"]) for r in ok_rows(results) for s in r["details"].get("steps", [])
                if s.get("sensitivity")), None)
    if hit is None:
        return None
    row, sens = hit
    layers = sens["layers"]
    p = primary(results)
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(8, max(3, 0.24 * len(layers))))
    names = [s["layer"] for s in layers][::-1]
    gains = [s["gain"] for s in layers][::-1]
    ax.barh(names, gains, color=["C3" if g > 0 else "C0" for g in gains])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"{p['label']} recovered on VAL by keeping only this layer in FP32 "
                  f"(all-int8 {sens['all_int8_score']:.3f}, FP32 {sens['fp32_score']:.3f})")
    ax.set_title(f"per-layer quantization sensitivity ({row['name']}, {sens['items']} VAL "
                 f"{results['task']['item']}s)", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot.close(fig)
    kept = next((s.get("kept_fp32") for s in row["details"]["steps"] if "kept_fp32" in s), [])
    return (f"**{path.name}** — layers by the model's own module names; a long bar = quantizing that "
            f"layer costs accuracy. The fallback kept {', '.join(kept) if kept else 'no layer'} in FP32.")


def dropped_notes(results: dict) -> list[str]:
    """Metrics undefined on some bootstrap resamples (e.g. an AUC without positives): say how many."""
    notes = []
    labels = {m["key"]: m["label"] for m in results["task"]["metrics"]}
    for key, v in reference(results)["metrics"]["values"].items():
        if v.get("dropped_nan"):
            notes.append(f"- {labels.get(key, key)}: undefined on {v['dropped_nan']} of {v['resamples']} "
                         "resamples (dropped from its CI)")
    return notes


def write_report(run_dir: str | Path) -> Path:
    """Regenerate ``report.md`` and its figures from ``run_dir/results.json`` alone."""
    from echolite.tasks import task_class

    run_dir = Path(run_dir)
    results = load_results(run_dir)
    task = task_class(results["task"]["name"])
    captions = [plot_pareto(results, run_dir / "pareto.png")]
    captions += task.figures(results, run_dir)
    captions.append(plot_pruning(results, run_dir / "pruning.png"))
    captions.append(plot_sensitivity(results, run_dir / "sensitivity.png"))
    lines = [f"# echolite run `{results['run']['name']}` — {results['task']['title']}", "",
             "## Summary", "", *summary_lines(results), "", *task.report_sections(results),
             "## Variants", "", *header_lines(results), "", table_markdown(results), ""]
    lines += device_table(results)
    notes = dropped_notes(results)
    if notes:
        lines += ["Bootstrap notes:", "", *notes, ""]
    failed = [r for r in results["rows"] if r["status"] == "failed"]
    if failed:
        lines += ["Failed variants are reported, never replaced by another method:", ""]
        lines += [f"- `{r['name']}` ({r.get('phase')}): {r['error']}" for r in failed] + [""]
    lines += ["## Figures", ""]
    for caption in filter(None, captions):
        name = caption.split("**")[1]
        lines += [f"![{name}]({name})", "", caption, ""]
    path = run_dir / "report.md"
    written = {c.split("**")[1] for c in captions if c}
    earlier = set(re.findall(r"!\[[^\]]*\]\(([^)/]+\.png)\)", path.read_text())) if path.is_file() else set()
    for stale in earlier - written:  # figures the earlier report drew and this one does not
        (run_dir / stale).unlink(missing_ok=True)
    atomic_write_text(path, "\n".join(lines))
    return path
