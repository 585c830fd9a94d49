"""What a task gets besides its parameters: the run it belongs to, and durable waits.

Every wait a task makes through its context is durable: it is journaled when it starts, so a
run resumed after a crash does not start it over. ``sleep_until`` waits only the remainder;
a signal already received is handed back at once; a deadline keeps its original time. Waits
are matched to the journal by their order within one attempt of the task (the first wait is
wait 0, the next wait 1, ...), so a task must make the same waits in the same order when it
runs again, as a Temporal workflow must.

Every wait ends early with :class:`Halted` when the run stops: an operator's ``abort``,
Ctrl-C, or (with the ``revert`` and transition policies) another task's failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from accord import errors
from accord.model.status import ErrorRecord
from accord.store.base import Store


class Halted(BaseException):
    """The run is stopping; raised inside a wait. A ``BaseException`` (as ``CancelledError``
    is) so that a task's ``except Exception`` does not turn a stop into a failure.

    Attributes:
        reason: ``aborted``, ``interrupted`` or ``failed`` (another task failed).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WaitHost(Protocol):
    """The runner's side of the waits (see :mod:`accord.engine.flows.runner`)."""

    async def wait_signal(self, ctx: FlowContext, name: str, within: float | None) -> Any: ...

    async def sleep_until(self, ctx: FlowContext, when: float) -> None: ...

    async def deadline(self, ctx: FlowContext, seconds: float, what: str) -> float: ...

    async def pause(self, ctx: FlowContext, seconds: float, what: str) -> None: ...

    def halted(self) -> Halted: ...


@dataclass(slots=True)
class FlowContext:
    """One attempt of one task. Attributes other than the waits are plain data.

    Attributes:
        store: the run's store.
        run_id: the flow run.
        flow: the flow's name.
        task_id: this task's id in the flow.
        attempt: 1 for the first try, then one more per retry.
        results: results of the tasks completed so far (a task's predecessors are always in it).
        services: what the caller provides (e.g. ``session``: an open ``LocalSession``,
            ``node``: the node id, ``conditions``: named condition functions).
        stop: set when the run is stopping; long tasks may watch it.
        failure: during ``revert`` of a task whose ``execute`` failed, why it failed.
    """

    store: Store
    run_id: str
    flow: str
    task_id: str
    attempt: int
    results: Mapping[str, Any]
    services: Mapping[str, Any]
    stop: asyncio.Event
    host: WaitHost
    failure: ErrorRecord | None = None
    waits: int = 0  # durable waits made so far in this attempt

    def next_wait(self) -> int:
        """The number of the next durable wait of this attempt (used to match the journal)."""
        number = self.waits
        self.waits += 1
        return number

    def service(self, name: str) -> Any:
        """``services[name]``, or a ``PermanentError`` saying that the task needs it."""
        try:
            return self.services[name]
        except KeyError:
            raise errors.PermanentError(
                f"task {self.task_id!r} needs the {name!r} service, which this run lacks"
            ) from None

    async def wait_signal(self, name: str, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 - durable
        """Wait for signal ``name`` (sent by ``accord flow signal RUN NAME``); return its data.

        A signal sent before the wait began counts. Each signal wakes one wait, which consumes
        it. ``timeout`` (seconds) ends the wait with ``PermanentError``.
        """
        return await self.host.wait_signal(self, name, timeout)

    async def sleep_until(self, when: datetime) -> None:
        """Sleep until ``when`` (aware, or naive meaning local time)."""
        await self.host.sleep_until(self, when.timestamp())

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` from the first time this wait was reached (durable)."""
        await self.host.sleep_until(self, time.time() + seconds)

    async def deadline(self, seconds: float, *, what: str) -> float:
        """A time ``seconds`` from the first time this wait was reached, as a Unix time."""
        return await self.host.deadline(self, seconds, what)

    async def pause(self, seconds: float, *, what: str) -> None:
        """Sleep ``seconds`` (not durable: for polling), ending early if the run stops."""
        await self.host.pause(self, seconds, what)

    def halted(self) -> Halted:
        """What to raise when ``stop`` cut the task's work short (the task is then
        ``interrupted``, not ``failed``, and runs again on resume)."""
        return self.host.halted()
