"""Tasks as plug-ins: the registry of task names -> Task classes (imported on first use).

A new task subclasses :class:`echolite.tasks.base.Task` and is registered here (or, from
outside the package, with :func:`register_task`).
"""

from __future__ import annotations

import importlib

from echolite import EcholiteError

TASKS: dict[str, str | type] = {
    "ef": "echolite.tasks.ef:EFTask",
    "cifar10": "echolite.tasks.classify:ClassifyTask",
}


def register_task(name: str, cls: type) -> None:
    TASKS[name] = cls


def task_class(name: str) -> type:
    if name not in TASKS:
        raise EcholiteError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    entry = TASKS[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = TASKS[name] = getattr(importlib.import_module(module), attr)
    return entry
