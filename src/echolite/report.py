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


def table_markdown(results: dict) -> str:
    rows = results["rows"]
    ref = next((r for r in rows if r["name"] == REFERENCE_ROW and r["status"] == "ok"), None)
    ref_mae = ref["metrics"]["mae"]["value"] if ref else None
    ref_p50 = (ref.get("latency_ms") or {}).get("p50") if ref else None
    head = ("| Model | Method | Precision | Backend | Size MB | MAE [95% CI] | ΔMAE | RMSE | R² | "
            "AUC(EF<50) | p50 / p90 ms | speed-up | device |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['method']} | {r['precision']} | {r['backend']} | "
                         f"failed: {r.get('error', '')} |" + " |" * 8 + f" {r.get('device', '')} |")
            continue
        m = r["metrics"]
        mae = m["mae"]
        size = (r.get("size_bytes") or {}).get("state_dict")
        lat = r.get("latency_ms") or {}
        d_mae = None if ref_mae is None else mae["value"] - ref_mae
        speed = (ref_p50 / lat["p50"]) if ref_p50 and lat.get("p50") else None
        lines.append(
            f"| {r['model']} | {r['method']} | {r['precision']} | {r['backend']} | "
            f"{_fmt(size / MB if size else None)} | "
            f"{mae['value']:.2f} [{mae['ci_low']:.2f}, {mae['ci_high']:.2f}] | "
            f"{_fmt(d_mae, '+.2f')} | {m['rmse']['value']:.2f} | {m['r2']['value']:.3f} | "
            f"{_fmt(m.get('auc', {}).get('value'), '.3f')} | "
            f"{_fmt(lat.get('p50'), '.1f')} / {_fmt(lat.get('p90'), '.1f')} | "
            f"{_fmt(speed, '.2f')}{'×' if speed else ''} | {r.get('device', '')} |"
        )
    return "\n".join(lines)


def plot_predictions(results: dict, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"] if r["status"] == "ok" and r.get("predictions")]
    if not rows:
        return None
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 4), squeeze=False)
    for ax, r in zip(axes[0], rows):
        ef, pred = r["predictions"]["ef"], r["predictions"]["ef_pred"]
        ax.scatter(ef, pred, s=8, alpha=0.6)
        lo, hi = min(ef + pred), max(ef + pred)
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel("true EF (%)")
        ax.set_ylabel("predicted EF (%)")
        ax.set_title(f"{r['name']}  MAE {r['metrics']['mae']['value']:.2f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(run_dir: str | Path) -> Path:
    """Regenerate ``report.md`` and plots of ``run_dir`` from its results.json alone."""
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    run = results["run"]
    env = run.get("environment", {})
    plot = plot_predictions(results, run_dir / "pred_vs_true.png")
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
    if plot:
        lines += [f"![predicted vs true EF]({plot.name})", ""]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
