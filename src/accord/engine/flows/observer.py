"""Who is told about a run's progress: the CLI prints it; the default tells nobody."""

from __future__ import annotations

from typing import Protocol

from accord.engine.flows.journal import FlowRun
from accord.engine.flows.states import TaskState


class Observer(Protocol):
    """Told about progress. Calls must be quick and must not raise."""

    def run(self, run: FlowRun) -> None:
        """The run record changed (written): its state, what it waits for."""

    def task(self, run_id: str, task_id: str, state: TaskState, detail: str) -> None:
        """A task moved to ``state``; ``detail`` is a short human line (may be empty)."""


class NullObserver:
    """Nobody is watching (the runner then skips building progress lines)."""

    def run(self, run: FlowRun) -> None:
        """Ignore it."""

    def task(self, run_id: str, task_id: str, state: TaskState, detail: str) -> None:
        """Ignore it."""
