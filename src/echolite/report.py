"""results.json -> report.md (table) and plots. A pure function of results.json: no retraining.

results.json schema (version 1)::

    {"schema": 1,
     "run": {"name", "created", "config", "environment", "data"},
     "rows": [{"name", "model", "method", "precision", "backend", "device", "status", "error",
               "metrics": {"mae": {"value", "ci_low", "ci_high"}, "rmse", "r2", "auc", "n",
                           "mae_predict_reference"},
               "size_bytes": {"state_dict": int, ...},
               "latency_ms": {"p50", "p90", ...} | None,
               "predictions": {"ef": [...], "ef_pred": [...]},
               "details": {...}}]}

Later methods (quantization, pruning) add rows; the first row named ``fp32`` is the reference.
"""

from __future__ import annotations

import json
from pathlib import Path

from echolite.runtime import atomic_write_text

SCHEMA = 1
REFERENCE_ROW = "fp32"
MB = 1e6


def load_results(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        from echolite import EcholiteError

        raise EcholiteError(f"{path}: not found (run `echolite run` first)")
    return json.loads(path.read_text())


def _fmt(x, spec=".2f", missing="—"):
    return missing if x is None else format(x, spec)


def _size_mb(row: dict) -> float | None:
    """The deployable size of a row: its state dict if saved, else its smallest artifact."""
    sizes = row.get("size_bytes") or {}
    if "state_dict" in sizes:
        return sizes["state_dict"] / MB
    return min(sizes.values()) / MB if sizes else None


def _reference(rows: list[dict]) -> dict | None:
    return next((r for r in rows if r["name"] == REFERENCE_ROW and r["status"] == "ok"), None)


def table_markdown(results: dict) -> str:
    rows = results["rows"]
    ref = _reference(rows)
    ref_mae = ref["metrics"]["mae"]["value"] if ref else None
    ref_p50 = (ref.get("latency_ms") or {}).get("p50") if ref else None
    head = ("| Variant | Model | Method | Precision | Backend | Size MB | MAE [95% CI] | ΔMAE | RMSE | R² | "
            "AUC(EF<50) | p50 / p90 ms | speed-up | videos/s @batch | parity ΔEF | device |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | {r['model']} | — | — | — | — | **failed**: {r.get('error', '')} |"
                         + " — |" * 8 + f" {r.get('device', '')} |")
            continue
        m = r["metrics"]
        mae = m["mae"]
        lat = r.get("latency_ms") or {}
        d_mae = None if ref_mae is None else mae["value"] - ref_mae
        d_rel = f" ({100 * d_mae / ref_mae:+.1f}%)" if d_mae is not None and r is not ref else ""
        speed = (ref_p50 / lat["p50"]) if ref_p50 and lat.get("p50") else None
        thr = lat.get("throughput_videos_per_s")
        parity = (r.get("details") or {}).get("parity_max_abs_diff_ef")
        batch_note = f" @{lat['throughput_batch']}" if thr else ""
        lines.append(
            f"| {r['name']} | {r['model']} | {r['method']} | {r['precision']} | {r['backend']} | "
            f"{_fmt(_size_mb(r))} | "
            f"{mae['value']:.2f} [{mae['ci_low']:.2f}, {mae['ci_high']:.2f}] | "
            f"{_fmt(d_mae, '+.2f')}{d_rel} | {m['rmse']['value']:.2f} | {m['r2']['value']:.3f} | "
            f"{_fmt(m.get('auc', {}).get('value'), '.3f')} | "
            f"{_fmt(lat.get('p50'), '.1f')} / {_fmt(lat.get('p90'), '.1f')} | "
            f"{_fmt(speed, '.2f')}{'×' if speed else ''} | "
            f"{_fmt(thr, '.1f')}{batch_note} | "
            f"{_fmt(parity, '.3f')} | {r.get('device', '')} |"
        )
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pareto(results: dict, path: Path) -> Path | None:
    """MAE vs latency and MAE vs size, one point per successful variant."""
    rows = [r for r in results["rows"] if r["status"] == "ok" and r.get("latency_ms")]
    if not rows:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "latency", "p50 latency, batch 1 (ms/video)"),
                           (axes[1], "size", "size (MB)")):
        for r in rows:
            x = r["latency_ms"]["p50"] if key == "latency" else _size_mb(r)
            mae = r["metrics"]["mae"]
            err = [[mae["value"] - mae["ci_low"]], [mae["ci_high"] - mae["value"]]]
            ax.errorbar(x, mae["value"], yerr=err, fmt="o", capsize=3, alpha=0.8)
            ax.annotate(f"{r['name']}\n{r['backend']}", (x, mae["value"]), fontsize=6,
                        xytext=(4, 4), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("TEST MAE (EF points)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sensitivity(results: dict, path: Path) -> Path | None:
    rows = [r for r in results["rows"] if r["status"] == "ok" and (r.get("details") or {}).get("sensitivity")]
    if not rows:
        return None
    sens = rows[0]["details"]["sensitivity"]
    layers = sens["layers"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, max(3, 0.25 * len(layers))))
    ax.barh([s["layer"] for s in layers][::-1], [s["delta_mae"] for s in layers][::-1])
    ax.set_xlabel(f"VAL MAE recovered by keeping the layer fp32 (all-int8 MAE {sens['all_int8_mae']:.2f}, "
                  f"fp32 {sens['fp32_mae']:.2f})")
    ax.set_title(f"per-layer quantization sensitivity ({rows[0]['name']}, {sens['videos']} VAL videos)",
                 fontsize=9)
    ax.tick_params(axis="y", labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_predictions(results: dict, path: Path) -> Path | None:
    plt = _plt()
    rows = [r for r in results["rows"] if r["status"] == "ok" and r.get("predictions")]
    if not rows:
        return None
    cols = min(4, len(rows))
    n_rows = (len(rows) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.6 * cols, 3.6 * n_rows), squeeze=False)
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    for ax, r in zip(axes.flat, rows):
        ef, pred = r["predictions"]["ef"], r["predictions"]["ef_pred"]
        ax.scatter(ef, pred, s=6, alpha=0.6)
        lo, hi = min(ef + pred), max(ef + pred)
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel("true EF (%)", fontsize=8)
        ax.set_ylabel("predicted EF (%)", fontsize=8)
        ax.set_title(f"{r['name']} [{r['backend']}]\nMAE {r['metrics']['mae']['value']:.2f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(run_dir: str | Path) -> Path:
    """Regenerate ``report.md`` and plots of ``run_dir`` from its results.json alone."""
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    run = results["run"]
    env = run.get("environment", {})
    plots = [p for p in (plot_predictions(results, run_dir / "pred_vs_true.png"),
                         plot_pareto(results, run_dir / "pareto.png"),
                         plot_sensitivity(results, run_dir / "sensitivity.png")) if p]
    data = run.get("data", {})
    ref = next((r for r in results["rows"] if r["name"] == REFERENCE_ROW), None)
    lines = [
        f"# echolite run `{run['name']}`",
        "",
        f"- created: {run.get('created')}; command: `{run.get('command', '')}`",
        f"- data: {data.get('root')} ({data.get('kind')}), videos per split: {data.get('splits')}",
        f"- machine: {env.get('cpu')} ({env.get('cpu_count')} cores, torch threads "
        f"{env.get('torch_threads')}), CUDA: {env.get('cuda')}",
        f"- packages: {env.get('packages')}; git {env.get('git_commit')}",
        "",
        f"Metrics on the {ref['metrics'].get('split', 'TEST') if ref else 'TEST'} split; "
        "95 % CIs by bootstrap over videos.",
        "",
        table_markdown(results),
        "",
    ]
    if ref and ref["status"] == "ok":
        m = ref["metrics"]
        lines += [f"Predicting the TRAIN-mean EF for every video gives MAE "
                  f"{m.get('mae_predict_reference', float('nan')):.2f}.", ""]
    if ref and ref["status"] == "ok" and ref.get("latency_ms"):
        d = ref.get("details", {})
        last = (d.get("latency_last_ms") or {}).get("p50")
        lines += [f"FP32 eager p50 measured first: {ref['latency_ms']['p50']:.1f} ms, last: "
                  f"{_fmt(last, '.1f')} ms (drift {100 * d.get('latency_drift_first_to_last', 0):+.1f} %). "
                  f"Speed-ups are against the first. For context, the student project timed INT8 on "
                  f"CPU at {d.get('seeds_int8_cpu_ms_for_context', 871):.0f} ms.", ""]
    failed = [r for r in results["rows"] if r["status"] != "ok"]
    if failed:
        lines += ["Failed methods (reported, never replaced by another method):", ""]
        lines += [f"- `{r['name']}`: {r['error']}" for r in failed] + [""]
    lines += [f"![{p.stem}]({p.name})" for p in plots] + [""]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
