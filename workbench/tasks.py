"""The Safety-Gymnasium navigation task ids the workbench supports, and the check of a task id.

On the lowest floor (no imports from the package) so that configs can check their task
without importing the environments.
"""

from __future__ import annotations

import difflib

NAV_TASKS: tuple[str, ...] = tuple(
    f"Safety{robot}{task}{level}-v0"
    for robot in ("Point", "Car", "Racecar")
    for task in ("Goal", "Button", "Push", "Circle")
    for level in range(3)
)
_LIST_HINT = "List them all with: python -c 'import workbench.envs as e; print(e.NAV_TASKS)'"


class TaskError(ValueError):
    """An unknown task id."""


def check_task(task: str) -> None:
    """Raise TaskError (with close matches) unless `task` is one of NAV_TASKS."""
    if task in NAV_TASKS:
        return
    close = difflib.get_close_matches(task, NAV_TASKS, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise TaskError(f"Unknown task {task!r}.{hint} {_LIST_HINT}")
