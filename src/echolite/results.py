"""results.json: its schema, the one writer and reader, and the helpers every reader of rows uses.

results.json (schema 2)::

    {"schema": 2,
     "run": {"name", "created", "command", "config", "environment", "data", "resolved", "store"},
     "task": {"name", "title", "item", "primary", "metrics": [{"key", "label", "unit", "fmt",
              "higher_is_better"}], "budget": {"max_worsening", "relative", "text"}, "model",
              "figures"},
     "measure": {"device", "threads", "latency_batch", "throughput_batch", "reference_p50_first_ms",
                 "reference_p50_last_ms", "protocol", "eval": {"split", "n", "ids", "targets", ...}},
     "rows": [{"name", "family", "method", "precision", "backend", "status", "error", "store",
               "metrics": {"values": {key: {"value", "ci_low", "ci_high", ...}},
                           "paired_delta": {key: {"value", "ci_low", "ci_high", "relative", ...}}},
               "selection": {"split": "VAL", "paired_delta": {...}},
               "prediction": [...], "size_bytes": {kind: int}, "latency_ms": {"p50", "p90", ...},
               "details": {...}}]}

The first row is the reference (FP32 eager); every ratio is against it and was measured in the
same process. The report, the API and the searches read rows through the helpers here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from echolite import EcholiteError
from echolite.env import atomic_write_json

SCHEMA = 2
FILE = "results.json"
MB = 1e6
FAMILIES = ("reference", "fp32 runtimes", "quantization", "pruning", "stacks", "students")


def load_results(run_dir: str | Path) -> dict:
    path = Path(run_dir) / FILE
    if not path.is_file():
        raise EcholiteError(f"{path}: not found (run `echolite run` first)")
    results = json.loads(path.read_text())
    if results.get("schema") != SCHEMA:
        raise EcholiteError(f"{path}: results schema {results.get('schema')}, this echolite reads "
                            f"{SCHEMA}; rerun `echolite run` to re-measure")
    return results


def write_results(run_dir: str | Path, results: dict) -> Path:
    """Write results.json atomically (it must be plain JSON: the report is a function of it)."""
    results = {"schema": SCHEMA, **results}
    path = Path(run_dir) / FILE
    atomic_write_json(path, results)
    return path


def failed_row(name: str, family: str, err: BaseException, phase: str, error: str | None = None) -> dict:
    """A row for a recipe that failed. Built from strings only: it cannot raise itself."""
    if error is None:
        try:
            text = (str(err).strip().splitlines() or [""])[0][:400]
            error = text if getattr(err, "names_its_step", False) else f"{type(err).__name__}: {text}"
        except Exception:  # noqa: BLE001 - an exception whose str() raises still gives a row
            error = type(err).__name__
    return {"name": name, "family": family, "status": "failed", "phase": phase, "error": error,
            "method": None, "precision": None, "backend": None, "metrics": None, "paired": None,
            "prediction": None, "size_bytes": None, "latency_ms": None, "details": {}}


# --- rows ------------------------------------------------------------------------------------------
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


def choose(records: list[dict], budget: float, objective: str) -> dict | None:
    """The budget rule (the report's recommendation and ``echolite search``): of the records with
    a finite ``bound`` <= ``budget``, the least ``p50_ms`` (objective latency) or ``size_bytes``
    (objective size); ties go to the better bound."""
    key = "p50_ms" if objective == "latency" else "size_bytes"
    ok = [r for r in records if r.get("bound") is not None and math.isfinite(r["bound"]) and r["bound"] <= budget]
    return min(ok, key=lambda r: (r[key], r["bound"])) if ok else None


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
    records = [{"row": r, "p50_ms": r["latency_ms"]["p50"], "size_bytes": size_bytes(r),
                "bound": worsening_bound(r, results, chosen_on=True)} for r in rows]
    chosen = choose(records, budget["max_worsening"], "latency")  # the search's rule, on the rows
    if chosen is None:
        return None, f"no variant's paired 95 % bound on {split} is within the budget ({budget['text']})"
    best = chosen["row"]
    return best, (f"the fastest variant whose paired 95 % bound on {split} is within the budget "
                  f"({budget['text']})")


