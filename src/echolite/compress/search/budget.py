"""The accuracy-budgeted search's space and rule, apart from how candidates are built and measured.

The space is students × structured-pruning ratios × runtimes (plus recipes the user lists), each a
recipe name of :mod:`echolite.compress.recipes`, so every candidate is built through the store
(shared prefixes — a student distilled once serves all its prunings and runtimes — built once, a
killed search resumes from what was built). The rule that picks the winner is the report's own
(:func:`echolite.results.choose`).
"""

from __future__ import annotations

from echolite import EcholiteError

TEACHER = "teacher"
_TEACHER_TAILS = {"int8": "static-int8", "int8-ort": "static-int8-ort", "int8-ov": "static-int8-ov",
                  "int8-nncf": "static-int8-nncf", "ort": "fp32-onnxruntime", "ov": "fp32-openvino"}


def candidate_names(students: list[str], prune: list[int], runtimes: list[str], recipes: list[str]) -> list[str]:
    """Recipe names of the space in the order of ``students`` (each one's unpruned runtimes, then
    its prunings; a student is distilled once and shared by all of them), then ``recipes``,
    without duplicates."""
    names = []
    for student in students:
        for pct in prune:
            for tail in runtimes:
                if student == TEACHER:
                    name = _TEACHER_TAILS[tail] if pct == 0 else f"structured{pct}-ft-{tail}"
                else:
                    name = f"distill-{student}" + (f"-structured{pct}-ft" if pct else "") + f"-{tail}"
                names.append(name)
    names += list(recipes)
    seen, out = set(), []
    for n in names:
        if n not in seen:
            seen.add(n)
            out.append(n)
    if not out:
        raise EcholiteError("search: the space is empty (search.students, search.prune, search.runtimes)")
    return out


def parse_budget(text: str, relative: bool) -> float:
    """``--budget``: ``5%`` (a relative budget: 0.05), ``0.5pp`` (percentage points of an accuracy)
    or a plain number in the task's budget units; a form that does not fit the task is an error."""
    t = str(text).strip().lower()
    try:
        if t.endswith("pp"):
            if relative:
                raise EcholiteError(f"--budget {text}: this task's budget is relative (e.g. 5%), not in pp")
            return float(t[:-2])
        if t.endswith("%"):
            if not relative:
                raise EcholiteError(f"--budget {text}: this task's budget is in percentage points (e.g. 0.5pp)")
            return float(t[:-1]) / 100
        value = float(t)
    except ValueError:
        raise EcholiteError(f"--budget {text}: expected e.g. 5% (relative) or 0.5pp (accuracy points)") from None
    if relative and value >= 1:
        raise EcholiteError(f"--budget {text}: a relative budget is a fraction (0.05 = 5 %); did you mean {t}%?")
    return value
