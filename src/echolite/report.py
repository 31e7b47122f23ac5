"""results.json -> report.md and its figures: a pure function of results.json (no model, no data).

The core here knows no task: metric names, directions, the accuracy budget and the item unit come
from ``results["task"]`` (written by the task), task figures from the names the task listed there
(drawn by :mod:`echolite.figures`).
"""

from __future__ import annotations

import re
from pathlib import Path

from echolite.env import atomic_write_text
from echolite.figures import plot_pareto, plot_pruning, plot_sensitivity, task_figures
from echolite.results import (
    FAMILIES,
    MB,
    complexity,
    load_results,
    ok_rows,
    primary,
    recommend,
    reference,
    size_bytes,
    worsening_bound,
)
from echolite.tasks import task_class


def _fmt(x, spec=".2f", missing="—"):
    return missing if x is None else format(x, spec)


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


def _bound_text(bound: float, budget: dict) -> str:
    return f"{100 * bound:+.1f} %" if budget["relative"] else f"{bound:+.3g}"


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
        test_bound = worsening_bound(best, results)
        if meas["eval"]["split"] != "VAL" and test_bound is not None and test_bound > task["budget"]["max_worsening"]:
            lines.append(f"- **Not confirmed on {meas['eval']['split']}**: `{best['name']}`'s paired 95 % bound "
                         f"there is {_bound_text(test_bound, task['budget'])}, outside the budget "
                         f"({task['budget']['text']}). VAL chose it and its fine-tuning epochs alike: treat it "
                         "as a candidate to re-check on more data, not a recommendation.")
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
            macs = [f"{cx['macs'] / 1e9:.3f} ({_ratio(cx['macs'] / ref_macs)})", f"{cx['params'] / 1e6:.2f}"] \
                if show_macs else []
            lines.append("| " + " | ".join([
                r["name"], r["method"] + (" (epoch 0 kept)" if training_note(r) else ""),
                r["precision"], r["backend"],
                f"{size / MB:.2f} ({_ratio(size / ref_size)})",
                "—" if r.get("size_compressed_bytes") is None else _fmt(r["size_compressed_bytes"] / MB),
                _metric_cell(v[p["key"]], p["fmt"]),
                "—" if d is None else _delta_cell(d, p["fmt"], rel),
                *[format(v[m["key"]]["value"], m["fmt"]) for m in others], *macs,
                f"{_ms(lat['p50'])} / {_ms(lat['p90'])} ({_ratio(lat['p50'] / ref_p50)})",
                f"{lat['throughput_items_per_s']:.1f}",
            ]) + " |")
    return "\n".join(lines)


def teacher_lines(results: dict) -> list[str]:
    """Distilled students beside the same students trained alone (rows' ``details.vs_alone``)."""
    p = primary(results)
    pairs = [r for r in ok_rows(results) if r["details"].get("vs_alone")]
    if not pairs:
        return []
    lines = ["Does the teacher help? Each distilled student minus the same student trained alone (same "
             f"steps and epochs, alpha 0), paired on the same {pairs[0]['details']['vs_alone']['split']} "
             "resamples:", ""]
    for r in pairs:
        d = r["details"]["vs_alone"]["paired_delta"][p["key"]]
        lines.append(f"- `{r['name']}` vs `{r['details']['vs_alone']['alone']}`: Δ{p['label']} "
                     f"{_delta_cell(d, p['fmt'], False)} ({100 * d['relative']:+.1f} %)")
    return lines + [""]


def _ratio(x: float) -> str:
    return f"{x:.3f}×" if x < 0.1 else f"{x:.2f}×"


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
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    task = task_class(results["task"]["name"])
    captions = [plot_pareto(results, run_dir / "pareto.png")]
    captions += task_figures(results, run_dir, results["task"].get("figures", task.FIGURES))
    captions.append(plot_pruning(results, run_dir / "pruning.png"))
    captions.append(plot_sensitivity(results, run_dir / "sensitivity.png"))
    lines = [f"# echolite run `{results['run']['name']}` — {results['task']['title']}", "",
             "## Summary", "", *summary_lines(results), "", *task.report_sections(results),
             "## Variants", "", *header_lines(results), "", table_markdown(results), ""]
    lines += device_table(results)
    lines += teacher_lines(results)
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
