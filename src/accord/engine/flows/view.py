"""Flow runs as readers see them: every task's state rebuilt from the journal, runs selected.

Shared by ``accord flow status`` / ``list`` and the control plane's ``/flows`` routes, so both
show the same thing. Everything here reads; nothing writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from accord.engine.flows.journal import FlowJournal, FlowRun, Replay
from accord.engine.flows.model import TRANSITION_TASK, FlowSpec
from accord.engine.flows.states import FlowState, TaskState


class TaskView(BaseModel):
    """One task of a run and its state as the journal tells it (``pending``: never started)."""

    id: str
    task: str = Field(description="The task type.")
    state: TaskState
    attempt: int = Field(description="The attempt that ended it, or is running (0: none yet).")
    error: dict[str, Any] | None = None
    result: Any = None


def task_views(flow: FlowSpec, replay: Replay) -> list[TaskView]:
    """Every task of the flow, in definition order, then the failure hook if it ran."""
    declared = {t.id: t.task for t in flow.tasks}
    ids = [*declared, *(t for t in replay.tasks if t not in declared)]
    views = []
    for task_id in ids:
        past = replay.tasks.get(task_id)
        kind = declared.get(task_id, TRANSITION_TASK)  # only the on_failure hook is undeclared
        if past is None:
            views.append(TaskView(id=task_id, task=kind, state=TaskState.PENDING, attempt=0))
            continue
        views.append(
            TaskView(
                id=task_id,
                task=kind,
                state=past.state,
                attempt=past.attempt,
                error=past.error,
                result=past.result,
            )
        )
    return views


async def tasks_of(journal: FlowJournal, run: FlowRun) -> list[TaskView]:
    """The run's tasks from its stored definition and its journal."""
    return task_views(await journal.definition(run), await journal.replay(run))


def select(
    runs: Iterable[FlowRun],
    *,
    node: str | None = None,
    state: FlowState | None = None,
    before: str | None = None,
    limit: int | None = None,
) -> list[FlowRun]:
    """Runs newest first, of ``node`` and in ``state`` if given, started before run ``before``
    (run ids sort by start time, so the last run id of one page is the next page's cursor)."""
    chosen = [
        r
        for r in runs
        if (node is None or r.node == node)
        and (state is None or r.state is state)
        and (before is None or r.run_id < before)
    ]
    chosen.sort(key=lambda r: r.run_id, reverse=True)
    return chosen if limit is None else chosen[:limit]
