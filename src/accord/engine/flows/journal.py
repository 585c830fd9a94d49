"""Flow run records in the KV store, task transitions in the ``flow-journal`` event log.

Keys:
    ``flows.<run>``
        The run record (:class:`FlowRun`): state, params, times, what it waits for, how it
        ended. Written at start, when the run's state changes, and at the end; never per task.
    ``flows.<run>.signals.<name>.<id>``
        Signals sent to the run, one key per send (:mod:`accord.engine.flows.signals`).
    ``flowdefs.<run>``
        The flow definition the run executes, written once, so a resumed run executes exactly
        what was started even if the file changed since (the 1 MiB value limit caps a flow at
        roughly 10,000 tasks).

The journal is one append per event, one commit on SQLite, durable when the call returns.
Events are JSON objects with ``run`` and either ``task`` + ``state`` (a task transition, with
``attempt``, ``result``, ``error``, or wait details ``wait``/``until``/``signal``/``deadline``)
or ``event`` (the run's own: ``started``, ``crashed``, ``resumed``, ``failing``). A run record
remembers the sequence number of its first event, so reading it back starts there.

:func:`FlowJournal.replay` rebuilds a run's state from its events through the task state table
(:mod:`accord.engine.flows.states`), so an impossible journal is reported, not believed.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from accord import errors
from accord.engine.flows.model import FlowSpec
from accord.engine.flows.signals import run_key
from accord.engine.flows.states import FlowState, TaskState, next_task_state
from accord.model.status import Condition, ErrorRecord, utcnow
from accord.store import base

STREAM = "flow-journal"
_ENDED = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.INTERRUPTED})


class FlowRun(BaseModel):
    """One run of a flow, as stored at ``flows.<run>`` and shown by ``accord flow status``."""

    run_id: str
    flow: str
    source: str | None = None  # the file it was loaded from
    params: dict[str, Any] = Field(default_factory=dict)
    node: str | None = None  # given to tasks as services["node"]
    base_dir: str | None = None  # relative paths in task parameters resolve against this
    context: dict[str, Any] = Field(default_factory=dict)  # the caller's, kept for resume
    state: FlowState = FlowState.RUNNING
    pid: int = 0  # the process executing it now (or last)
    host: str = Field(default_factory=socket.gethostname)  # where pid is (set on resume)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    journal_from: int = 0  # sequence number of the run's first journal event
    tasks: int = 0
    resumed: int = 0  # how many times it was resumed
    waiting_for: dict[str, str] = Field(default_factory=dict)  # task id → what it waits for
    conditions: tuple[Condition, ...] = ()  # OperatorDecision while a task in doubt waits
    error: ErrorRecord | None = None  # the failure that ended it
    failed_task: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)  # tasks per state, when it ended


@dataclass(slots=True)
class TaskReplay:
    """One task's state as the journal tells it."""

    state: TaskState = TaskState.PENDING
    attempt: int = 0
    result: Any = None
    error: dict[str, Any] | None = None
    ended: int = 0  # sequence number of the event that ended its execution (revert order)


@dataclass(slots=True)
class Replay:
    """A run rebuilt from its journal."""

    tasks: dict[str, TaskReplay] = field(default_factory=dict)
    memos: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)  # durable waits
    consumed: set[tuple[str, int]] = field(default_factory=set)  # (signal, revision) received
    failing: dict[str, Any] | None = None  # the run's `failing` event, if the policy started
    crashes: int = 0
    resumes: int = 0


def definition_key(run_id: str) -> str:
    return f"flowdefs.{base.key_part(run_id)}"


class FlowJournal:
    """Reads and writes flow runs on one store."""

    def __init__(self, store: base.Store) -> None:
        self.store = store

    async def task(self, run_id: str, task_id: str, state: TaskState, **details: Any) -> int:
        """Append one task transition; returns its sequence number. ``None`` details are left
        out. Raises ``TypeError`` if a detail is not JSON-able."""
        record = {"run": run_id, "task": task_id, "state": state.value}
        record.update((k, v) for k, v in details.items() if v is not None)
        data = json.dumps(record, separators=(",", ":"), allow_nan=False)
        return await self.store.append(STREAM, data.encode())

    async def event(self, run_id: str, event: str, **details: Any) -> int:
        """Append one event of the run itself; returns its sequence number."""
        record = {"run": run_id, "event": event}
        record.update((k, v) for k, v in details.items() if v is not None)
        return await self.store.append(STREAM, json.dumps(record, separators=(",", ":")).encode())

    async def save(self, run: FlowRun) -> None:
        await self.store.put(
            run_key(run.run_id), run.model_dump_json(exclude_defaults=True).encode()
        )

    async def get(self, run_id: str) -> FlowRun:
        entry = await self.store.get(run_key(run_id))
        if entry is None:
            raise errors.NotFoundError(f"no flow run {run_id!r}")
        return FlowRun.model_validate_json(entry.value)

    async def runs(self) -> list[FlowRun]:
        """Every run, oldest first (run ids sort by start time)."""
        found = []
        for entry in await self.store.list("flows."):
            if "." not in entry.key[len("flows.") :]:  # not a signal under a run
                found.append(FlowRun.model_validate_json(entry.value))
        return sorted(found, key=lambda r: r.run_id)

    async def save_definition(self, run_id: str, flow: FlowSpec) -> None:
        """Store the definition compactly (task defaults left out), keeping the run-level
        policies explicit so that a resumed run never picks up a changed default."""
        data = flow.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        data.update(flow.model_dump(mode="json", include={"on_failure", "linear", "concurrency"}))
        encoded = json.dumps(data, separators=(",", ":")).encode()
        await self.store.put(definition_key(run_id), encoded)

    async def definition(self, run: FlowRun) -> FlowSpec:
        entry = await self.store.get(definition_key(run.run_id))
        if entry is None:
            raise errors.NotFoundError(f"flow run {run.run_id!r} has no stored definition")
        flow = FlowSpec.model_validate_json(entry.value)
        return flow.with_source(run.source or f"run {run.run_id}", None)

    async def events(self, run: FlowRun) -> list[dict[str, Any]]:
        """The run's journal, oldest first, each event with its ``seq`` and time ``at``."""
        found = []
        for record in await self.store.read(STREAM, after=max(run.journal_from - 1, 0)):
            event: dict[str, Any] = json.loads(record.data)
            if event.get("run") == run.run_id:
                event["seq"], event["at"] = record.seq, record.time
                found.append(event)
        return found

    async def replay(self, run: FlowRun) -> Replay:
        """Rebuild the run's state from its journal (see the module docstring)."""
        replay = Replay()
        for event in await self.events(run):
            task_id = event.get("task")
            if task_id is None:
                name = event.get("event")
                if name == "failing":
                    replay.failing = event
                elif name == "crashed":
                    replay.crashes += 1
                elif name == "resumed":
                    replay.resumes += 1
                continue
            task = replay.tasks.get(task_id)
            if task is None:
                task = replay.tasks[task_id] = TaskReplay()
            try:
                new = TaskState(event["state"])
                task.state = next_task_state(task.state, new)
            except (ValueError, KeyError, errors.StoreError) as exc:
                raise errors.StoreError(
                    f"flow run {run.run_id}: journal event {event['seq']} for task "
                    f"{task_id!r} is impossible: {exc}"
                ) from None
            task.attempt = int(event.get("attempt", task.attempt or 1))
            if new is TaskState.SUCCEEDED:
                task.result, task.error = event.get("result"), None
            elif new in (TaskState.FAILED, TaskState.REVERT_FAILED):
                task.error = event.get("error")
            if new in _ENDED:
                task.ended = event["seq"]
            wait = event.get("wait")
            if wait is not None:
                replay.memos[(task_id, int(wait))] = event
            if "revision" in event and "signal" in event:
                replay.consumed.add((str(event["signal"]), int(event["revision"])))
        return replay
