"""The run's waiting side: halts, durable waits, operator decisions, and the record meanwhile.

:class:`Waits` is the ``host`` behind every :class:`~accord.engine.flows.context.FlowContext`
of a run. It owns the run's halt event (set by a failure under a fail-fast policy, an ``abort``
signal, or Ctrl-C) and ends every wait with ``Halted`` when it is set. It keeps the run record
current while tasks wait: ``waiting`` when every active task waits, ``running`` otherwise, with
what each task waits for and, while a task in doubt waits for an operator, an
``OperatorDecision`` condition. How each wait is journaled and resumed is described in
:mod:`accord.engine.flows.context` and :mod:`accord.engine.flows.runner`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from accord import errors
from accord.engine.flows import signals
from accord.engine.flows.context import FlowContext, Halted
from accord.engine.flows.journal import FlowJournal, FlowRun
from accord.engine.flows.states import FlowState, TaskState, next_flow_state
from accord.model.status import Condition, ConditionStatus
from accord.store.base import Store

RESERVED_SIGNALS = frozenset({signals.ABORT, signals.RETRY, signals.SKIP})


class Mark(Protocol):
    """Journal one transition of a task (by id); returns the event's sequence number."""

    def __call__(self, task_id: str, state: TaskState, **details: Any) -> Awaitable[int]: ...


class Waits:
    """Halts, waits and the record of one run in one process. ``open`` it, then ``close``."""

    def __init__(
        self,
        *,
        store: Store,
        record: FlowRun,
        journal: FlowJournal,
        on_record: Callable[[FlowRun], None],
        memos: dict[tuple[str, int], dict[str, Any]],
        consumed: set[tuple[str, int]],
        mark: Mark,
    ) -> None:
        self.record = record
        self.journal = journal
        self.on_record = on_record
        self.memos = memos
        self.mark = mark
        self.halt = asyncio.Event()
        self.reason = ""  # why halt is set: failed | aborted | interrupted
        self.aborted = False  # an abort signal arrived while the graph ran
        self.interrupted = False  # the caller asked to stop (Ctrl-C)
        self.in_graph = True  # False once the failure policy (or the end) is reached
        self.waker = signals.Waker()
        self.hub = signals.SignalHub(
            store, record.run_id, self.waker, on_abort=self._on_abort, consumed=consumed
        )
        self.running = 0  # tasks inside a step, waiting or not
        self.waiting: dict[str, str] = {}  # task id → what it waits for
        self.asks: dict[str, str] = {}  # task id → what the operator is asked
        self.lock = asyncio.Lock()  # one record write at a time, computed under the lock

    async def open(self) -> None:
        await self.hub.open()

    async def close(self) -> None:
        await self.hub.close()

    # -- halting -----------------------------------------------------------------------

    def halted(self) -> Halted:
        """The exception a wait raises when the run stops."""
        return Halted(self.reason or "interrupted")

    def stop(self, reason: str) -> None:
        """Halt the run: nothing new starts, every wait ends. The first reason is kept."""
        if not self.halt.is_set():
            self.reason = reason
            self.halt.set()
        self.waker.poke()

    def rearm(self) -> None:
        """A fresh halt for the failure policy, which only Ctrl-C stops."""
        self.in_graph = False
        self.halt = asyncio.Event()
        self.reason = ""
        if self.interrupted:
            self.stop("interrupted")

    async def follow(self, stop: asyncio.Event) -> None:
        """Halt when the caller's ``stop`` is set (run as a task for the run's duration)."""
        await stop.wait()
        self.interrupted = True
        self.stop("interrupted")

    def _on_abort(self) -> None:
        if self.in_graph and not self.aborted:
            self.aborted = True
            self.stop("aborted")
        elif not self.in_graph and self.asks:  # the failure hook waits for an operator
            self.stop("aborted")

    # -- waits (the FlowContext host) ----------------------------------------------------

    async def wait_signal(self, ctx: FlowContext, name: str, within: float | None) -> Any:
        signals.check_name(name)
        if name in RESERVED_SIGNALS:
            raise errors.PermanentError(f"signal {name!r} is reserved; tasks cannot wait for it")
        number = ctx.next_wait()
        memo = self.memos.get((ctx.task_id, number))
        if memo is not None and "revision" in memo:
            return memo.get("data")  # received before: hand it back
        deadline = None
        if memo is not None and "deadline" in memo:
            deadline = float(memo["deadline"])
        elif within is not None:
            deadline = time.time() + within
        if memo is None:
            await self.mark(
                ctx.task_id, TaskState.WAITING, wait=number, signal=name, deadline=deadline
            )
            self.memos[(ctx.task_id, number)] = {"signal": name, "deadline": deadline}
        await self.enter(ctx.task_id, f"signal {name}")
        try:
            while True:
                token = self.waker.token()
                found = self.hub.get(name)
                if found is not None:
                    break
                if self.halt.is_set():
                    raise self.halted()
                left = None if deadline is None else deadline - time.time()
                if left is not None and left <= 0:
                    raise errors.PermanentError(f"no {name!r} signal came in time")
                await self.waker.wait(token, left)
        finally:
            await self.leave(ctx.task_id)
        receipt = {"signal": name, "data": found.data, "revision": found.revision,
                   "by": found.by or None}  # fmt: skip
        await self.mark(ctx.task_id, TaskState.RUNNING, wait=number, **receipt)
        await self.hub.consume(found)
        self.memos[(ctx.task_id, number)] = receipt
        return found.data

    async def sleep_until(self, ctx: FlowContext, when: float) -> None:
        number = ctx.next_wait()
        memo = self.memos.get((ctx.task_id, number))
        until = float(memo["until"]) if memo is not None and "until" in memo else when
        if until <= time.time():
            return
        if memo is None:
            await self.mark(ctx.task_id, TaskState.WAITING, wait=number, until=until)
            self.memos[(ctx.task_id, number)] = {"until": until}
        await self.pause(ctx, until - time.time(), f"until {iso(until)}")

    async def deadline(self, ctx: FlowContext, seconds: float, what: str) -> float:
        number = ctx.next_wait()
        memo = self.memos.get((ctx.task_id, number))
        if memo is not None and "deadline" in memo:
            return float(memo["deadline"])
        at = time.time() + seconds
        await self.mark(ctx.task_id, TaskState.WAITING, wait=number, deadline=at, what=what)
        self.memos[(ctx.task_id, number)] = {"deadline": at}
        return at

    async def pause(self, ctx: FlowContext, seconds: float, what: str) -> None:
        halt = self.halt
        if halt.is_set():
            raise self.halted()
        await self.enter(ctx.task_id, what)
        try:
            await asyncio.wait_for(halt.wait(), max(seconds, 0.0))
        except TimeoutError:
            return
        finally:
            await self.leave(ctx.task_id)
        raise self.halted()

    async def ask_operator(self, task_id: str, state: TaskState) -> signals.Received:
        """Wait for ``retry`` or ``skip`` about a task in doubt (``abort`` halts the run)."""

        def mine(signal: signals.Received) -> bool:
            data = signal.data
            return not (isinstance(data, dict) and data.get("task") not in (None, task_id))

        self.asks[task_id] = (
            f"task {task_id!r} was {state} when its process stopped and is not idempotent: "
            "signal retry to run it again, skip if it completed, or abort"
        )
        await self.enter(task_id, "an operator: retry | skip | abort")
        try:
            while True:
                token = self.waker.token()
                for name in (signals.RETRY, signals.SKIP):
                    found = self.hub.get(name, mine)
                    if found is not None:
                        return found
                if self.halt.is_set():
                    raise self.halted()
                await self.waker.wait(token, None)
        finally:
            del self.asks[task_id]
            await self.leave(task_id)

    # -- the record ----------------------------------------------------------------------

    async def enter(self, task_id: str, what: str) -> None:
        self.waiting[task_id] = what
        await self.refresh()

    async def leave(self, task_id: str) -> None:
        self.waiting.pop(task_id, None)
        await self.refresh()

    async def refresh(self) -> None:
        """Write the record if its state (running ↔ waiting), waits or asks changed."""
        async with self.lock:
            record = self.record
            if record.state not in (FlowState.RUNNING, FlowState.WAITING):
                return
            idle = bool(self.waiting) and self.running <= len(self.waiting)
            state = FlowState.WAITING if idle else FlowState.RUNNING
            conditions: tuple[Condition, ...] = ()
            if self.asks:
                conditions = (
                    Condition(
                        type="OperatorDecision", status=ConditionStatus.TRUE,
                        reason="TaskInDoubt", message="; ".join(self.asks.values()),
                    ),
                )  # fmt: skip
            asked = [c.message for c in record.conditions] == [c.message for c in conditions]
            if state is record.state and record.waiting_for == self.waiting and asked:
                return
            if state is not record.state:
                record.state = next_flow_state(record.state, state)
            record.waiting_for, record.conditions = dict(self.waiting), conditions
            await self.journal.save(record)
        self.on_record(record)

    async def set_state(self, state: FlowState) -> None:
        """Move the record to ``state`` (through the table) and write it."""
        async with self.lock:
            record = self.record
            if record.state is not state:
                record.state = next_flow_state(record.state, state)
            record.waiting_for, record.conditions = {}, ()
            await self.journal.save(record)
        self.on_record(record)


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")
