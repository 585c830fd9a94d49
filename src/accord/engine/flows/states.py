"""The two state machines of flows, as tables: a flow run's state and each task's state.

Each table maps a state to the states it may move to, with the reason for every edge. The
runner moves a run or a task only through :func:`next_flow_state` / :func:`next_task_state`,
and replaying a journal goes through the same functions, so a journal that claims an
impossible move is caught as corrupt instead of being believed. :func:`mermaid` draws a table.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

from accord import errors


class FlowState(enum.StrEnum):
    """Where a flow run is."""

    RUNNING = "running"  # a process is executing tasks
    WAITING = "waiting"  # a process holds the run; every active task is waiting
    REVERTING = "reverting"  # a task failed or the run was aborted: undoing, newest first
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVERTED = "reverted"  # failed, and everything that had run was reverted
    ABORTED = "aborted"  # an operator sent `abort`; the failure policy ran
    CRASHED = "crashed"  # found unfinished by `resume`: the process that held it died
    INTERRUPTED = "interrupted"  # stopped on request (Ctrl-C); resumable

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_FLOW

    @property
    def resumable(self) -> bool:
        return not self.terminal


class TaskState(enum.StrEnum):
    """Where one task of a run is. ``pending`` is never journaled: it is the absence of events."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"  # inside a durable wait (signal, time, condition)
    RETRYING = "retrying"  # an attempt failed transiently; the next one follows a pause
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C, an abort, or a failure elsewhere
    REVERTING = "reverting"
    REVERTED = "reverted"
    REVERT_FAILED = "revert_failed"

    @property
    def started(self) -> bool:
        """Whether the task may have had effects (so reverting it may be needed)."""
        return self is not TaskState.PENDING

    @property
    def in_doubt(self) -> bool:
        """Started and not finished: after a crash nobody knows how far it got."""
        return self in _IN_DOUBT


_TERMINAL_FLOW = frozenset(
    {FlowState.SUCCEEDED, FlowState.FAILED, FlowState.REVERTED, FlowState.ABORTED}
)
_IN_DOUBT = frozenset(
    {TaskState.RUNNING, TaskState.WAITING, TaskState.RETRYING, TaskState.INTERRUPTED}
)

F, T = FlowState, TaskState
E = TypeVar("E", bound=enum.StrEnum)

FLOW_TRANSITIONS: Mapping[FlowState, Mapping[FlowState, str]] = {
    F.RUNNING: {
        F.WAITING: "every active task is waiting for a signal, a time or a condition",
        F.REVERTING: "a task failed or abort arrived; the policy is revert",
        F.SUCCEEDED: "every task succeeded",
        F.FAILED: "a task failed; the policy is none or a transition",
        F.ABORTED: "abort arrived; the policy is none or a transition",
        F.INTERRUPTED: "stopped on request",
        F.CRASHED: "resume found it running but its process gone",
    },
    F.WAITING: {
        F.RUNNING: "a wait ended",
        F.REVERTING: "abort arrived, or a wait failed; the policy is revert",
        F.FAILED: "a wait failed (timed out); the policy is none or a transition",
        F.ABORTED: "abort arrived; the policy is none or a transition",
        F.INTERRUPTED: "stopped on request while waiting",
        F.CRASHED: "resume found it waiting but its process gone",
    },
    F.REVERTING: {
        F.REVERTED: "every revert ran",
        F.ABORTED: "an aborted run finished reverting",
        F.FAILED: "a revert failed",
        F.INTERRUPTED: "stopped on request between reverts",
        F.CRASHED: "resume found it reverting but its process gone",
    },
    F.CRASHED: {
        F.RUNNING: "resumed: completed tasks are kept, the rest run",
        F.REVERTING: "resumed in the middle of reverting",
    },
    F.INTERRUPTED: {
        F.RUNNING: "resumed: completed tasks are kept, the rest run",
        F.REVERTING: "resumed in the middle of reverting",
    },
    F.SUCCEEDED: {},
    F.FAILED: {},
    F.REVERTED: {},
    F.ABORTED: {},
}

_ENDINGS = {
    T.SUCCEEDED: "execute returned a result",
    T.FAILED: "execute raised (after its retries)",
    T.INTERRUPTED: "stopped: Ctrl-C, abort, or a failure elsewhere",
}
TASK_TRANSITIONS: Mapping[TaskState, Mapping[TaskState, str]] = {
    T.PENDING: {
        T.RUNNING: "started; journaled first when the task is not idempotent or can revert",
        T.WAITING: "an idempotent task began a durable wait",
        T.RETRYING: "an idempotent task's first attempt failed transiently",
        **_ENDINGS,
    },
    T.RUNNING: {
        T.RUNNING: "a signal arrived, or an operator said retry after a crash",
        T.WAITING: "began a durable wait",
        T.RETRYING: "an attempt failed transiently",
        T.REVERTING: "in doubt after a crash, then aborted: undo what it may have done",
        **_ENDINGS,
    },
    T.WAITING: {
        T.RUNNING: "the signal arrived",
        T.WAITING: "the next durable wait",
        T.RETRYING: "an attempt failed transiently after a wait",
        T.REVERTING: "in doubt after a crash, then aborted",
        **_ENDINGS,
    },
    T.RETRYING: {
        T.RUNNING: "a signal arrived in the next attempt",
        T.WAITING: "the next attempt began a durable wait",
        T.RETRYING: "the next attempt failed transiently too",
        T.REVERTING: "in doubt after a crash, then aborted",
        **_ENDINGS,
    },
    T.SUCCEEDED: {T.REVERTING: "a later task failed or the run was aborted"},
    T.FAILED: {T.REVERTING: "the failed task may have done part of its work"},
    T.INTERRUPTED: {
        T.RUNNING: "resumed (re-run, or an operator said retry)",
        T.WAITING: "resumed into a durable wait",
        T.RETRYING: "resumed; an attempt failed transiently",
        T.REVERTING: "the run is being reverted",
        **_ENDINGS,
    },
    T.REVERTING: {
        T.REVERTED: "revert returned",
        T.REVERT_FAILED: "revert raised (after its retries)",
        T.REVERTING: "resumed in the middle of its revert (reverts are idempotent)",
    },
    T.REVERTED: {},
    T.REVERT_FAILED: {},
}


def next_flow_state(current: FlowState, new: FlowState) -> FlowState:
    """``new`` if the table allows ``current → new``; ``StoreError`` (a corrupt record) if not."""
    if new not in FLOW_TRANSITIONS[current]:
        raise errors.StoreError(f"a flow run cannot go from {current} to {new}")
    return new


def next_task_state(current: TaskState, new: TaskState) -> TaskState:
    """``new`` if the table allows ``current → new``; ``StoreError`` (a corrupt journal) if not."""
    if new not in TASK_TRANSITIONS[current]:
        raise errors.StoreError(f"a task cannot go from {current} to {new}")
    return new


def mermaid(table: Mapping[E, Mapping[E, str]]) -> str:
    """A Mermaid ``stateDiagram-v2`` of a transition table, one labelled arrow per edge."""
    lines = ["stateDiagram-v2"]
    for source, targets in table.items():
        lines.extend(f"    {source} --> {target}: {why}" for target, why in targets.items())
    return "\n".join(lines)
