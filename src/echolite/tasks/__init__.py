"""Tasks as plug-ins: the registry of task names -> Task classes.

A task subclasses :class:`echolite.tasks.base.Task`; :func:`register_task` adds it (and its config
sections, so configs of that task load). The built-in tasks are registered below; a name is
registered once (a second, different class under the same name is refused).
"""

from __future__ import annotations

from echolite import EcholiteError
from echolite.config import register_sections, unregister_sections
from echolite.tasks.base import Task
from echolite.tasks.classify import ClassifyTask
from echolite.tasks.ef import EFTask

TASKS: dict[str, type[Task]] = {}


def register_task(name: str, cls: type[Task]) -> None:
    if name in TASKS and TASKS[name] is not cls:
        raise EcholiteError(f"task {name!r} is registered already ({TASKS[name].__name__})")
    TASKS[name] = cls
    register_sections(name, cls.DataConfig, cls.ModelConfig, cls.EvalConfig)


def unregister_task(name: str) -> None:
    """Remove a task registered by a test or a plug-in."""
    TASKS.pop(name, None)
    unregister_sections(name)


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise EcholiteError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    return TASKS[name]


register_task("ef", EFTask)
register_task("cifar10", ClassifyTask)
