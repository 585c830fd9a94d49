"""One process's turn at one flow run: the task graph, then the failure policy if needed.

:class:`Execution` is built by :class:`~accord.engine.flows.runner.FlowRunner` for a new run or
a resumed one; the runner's docstring states the contract (what is journaled, how a crash is
resumed). Every task transition goes through :meth:`Execution.mark`: one journal append,
checked against the task state table.
"""

from __future__ import annotations

import asyncio
import math
import types
from collections import Counter
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accord import errors
from accord.engine import executor
from accord.engine.flows import signals
from accord.engine.flows.context import FlowContext, Halted
from accord.engine.flows.journal import FlowRun, Replay
from accord.engine.flows.model import FlowSpec, TaskSpec, TransitionPolicy
from accord.engine.flows.observer import NullObserver
from accord.engine.flows.states import FlowState, TaskState, next_flow_state, next_task_state
from accord.engine.flows.tasks import Task
from accord.engine.flows.waits import Waits, iso
from accord.engine.retry import RetryPolicy, retrying
from accord.model.status import ErrorRecord, utcnow

if TYPE_CHECKING:
    from accord.engine.flows.runner import FlowRunner

_ENDED = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.INTERRUPTED})


@dataclass(slots=True)
class Node:
    """One task of the run, resolved: its type, its parameters, how it is retried."""

    spec: TaskSpec
    task: Task
    params: dict[str, Any]
    policy: RetryPolicy | None  # None: one attempt
    mark_start: bool  # journal `running` before execute (not idempotent, or reversible)


class Execution:
    """Drives one run from its current state to its end, or until it is stopped."""

    def __init__(
        self,
        runner: FlowRunner,
        flow: FlowSpec,
        record: FlowRun,
        nodes: list[Node],
        replay: Replay | None,
    ) -> None:
        self.runner = runner
        self.journal = runner.journal
        self.observer = runner.observer
        self.observing = not isinstance(runner.observer, NullObserver)
        self.flow = flow
        self.record = record
        self.run_id = record.run_id
        self.nodes = nodes
        self.index = {node.spec.id: i for i, node in enumerate(nodes)}
        replay = replay or Replay()
        self.failing = replay.failing
        count = len(nodes)
        self.states = [TaskState.PENDING] * count
        self.ended = [0] * count  # seq of the event that ended each task's execution
        self.errors: list[ErrorRecord | None] = [None] * count
        self.results: dict[str, Any] = {}
        for task_id, past in replay.tasks.items():
            i = self.index.get(task_id)
            if i is None:
                raise errors.StoreError(f"flow run {self.run_id}: journal names task {task_id!r}")
            self.states[i], self.ended[i] = past.state, past.ended
            if past.state is TaskState.SUCCEEDED or past.result is not None:
                self.results[task_id] = past.result
            if past.error is not None:
                self.errors[i] = error_from(past.error)
        self.results_view = types.MappingProxyType(self.results)
        services = dict(runner.services)
        if record.node is not None:
            services["node"] = record.node
        if record.base_dir is not None:
            services["base_dir"] = Path(record.base_dir)
        self.services: Mapping[str, Any] = types.MappingProxyType(services)
        self.failure: tuple[str, ErrorRecord] | None = None
        self.waits = Waits(
            store=runner.store, record=record, journal=self.journal,
            on_record=self.observer.run, memos=replay.memos, consumed=replay.consumed,
            mark=self.mark_id,
        )  # fmt: skip

    # -- the run -----------------------------------------------------------------------

    async def go(self, stop: asyncio.Event | None) -> FlowRun:
        follower = None
        if stop is not None:
            if stop.is_set():  # stopped already: start nothing
                self.waits.interrupted = True
                self.waits.stop("interrupted")
            follower = asyncio.get_running_loop().create_task(self.waits.follow(stop))
        try:
            await self.waits.open()
            if self.failing is not None:  # resumed after the failure policy began
                cause = str(self.failing.get("cause", "failed"))
                if self.failing.get("error") is not None:
                    self.failure = (
                        str(self.failing.get("failed")),
                        error_from(self.failing["error"]),
                    )
                return await self._policy(cause)
            outcomes = await executor.execute(
                self.flow.graph(), self._step,
                concurrency=self.flow.concurrency or self.runner.concurrency,
                stop=self.waits.halt, instant=self._done_before,
            )  # fmt: skip
            self.waits.in_graph = False
            if all(o is executor.Outcome.OK for o in outcomes):
                return await self._finish(FlowState.SUCCEEDED)
            if not self.waits.aborted and self.failure is None:
                return await self._finish(FlowState.INTERRUPTED)
            cause = "aborted" if self.waits.aborted else "failed"
            task_id, error = self.failure if self.failure else (None, None)
            await self.journal.event(
                self.run_id, "failing", cause=cause, failed=task_id,
                error=error.model_dump() if error else None,
            )  # fmt: skip
            return await self._policy(cause)
        except asyncio.CancelledError:
            if not self.record.state.terminal:
                await self._finish(FlowState.INTERRUPTED)
            raise
        finally:
            if follower is not None:
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)
            await self.waits.close()

    async def _policy(self, cause: str) -> FlowRun:
        """What ``on_failure`` says, after a failure or an abort."""
        self.waits.rearm()
        policy = self.flow.on_failure
        if policy == "revert":
            return await self._revert(cause)
        if self.waits.interrupted:
            return await self._finish(FlowState.INTERRUPTED)
        if isinstance(policy, TransitionPolicy):
            hook = len(self.nodes) - 1
            reason = policy.reason or self._why(cause)
            self.nodes[hook].params = {"to": policy.transition, "reason": reason}
            if self.states[hook] is not TaskState.SUCCEEDED:
                await self._step(hook)
                if self.waits.interrupted and self.states[hook] is not TaskState.SUCCEEDED:
                    return await self._finish(FlowState.INTERRUPTED)
        return await self._finish(FlowState.ABORTED if cause == "aborted" else FlowState.FAILED)

    async def _revert(self, cause: str) -> FlowRun:
        """Revert every task that started, newest first (reverts are idempotent)."""
        await self.waits.set_state(FlowState.REVERTING)
        done = (TaskState.REVERTED, TaskState.REVERT_FAILED)
        todo = [
            i for i, node in enumerate(self.nodes)
            if self.states[i].started and self.states[i] not in done and node.task.reversible
        ]  # fmt: skip
        # A task that never journaled its end (in doubt) is the newest of all.
        todo.sort(key=lambda i: self.ended[i] or math.inf, reverse=True)
        for i in todo:
            if self.waits.interrupted:
                return await self._finish(FlowState.INTERRUPTED)
            await self._revert_one(i)
        if any(self.states[i] is TaskState.REVERTING for i in todo):  # a revert was stopped
            return await self._finish(FlowState.INTERRUPTED)
        if cause == "aborted":
            return await self._finish(FlowState.ABORTED)
        failed = any(s is TaskState.REVERT_FAILED for s in self.states)
        return await self._finish(FlowState.FAILED if failed else FlowState.REVERTED)

    async def _revert_one(self, i: int) -> None:
        node = self.nodes[i]
        await self.mark(i, TaskState.REVERTING)
        ctx = self._context(i, 1, failure=self.errors[i])
        result = self.results.get(node.spec.id)
        try:
            if node.policy is None:
                await node.task.revert(ctx, node.params, result)
            else:
                await retrying(lambda: node.task.revert(ctx, node.params, result), node.policy)
        except Halted:
            return  # Ctrl-C: it stays `reverting` and runs again on resume
        except Exception as exc:  # noqa: BLE001 - recorded as the revert's failure
            await self.mark(i, TaskState.REVERT_FAILED, error=error_record(exc).model_dump())
            return
        await self.mark(i, TaskState.REVERTED)

    async def _finish(self, state: FlowState) -> FlowRun:
        async with self.waits.lock:
            record = self.record
            if state is not record.state:
                record.state = next_flow_state(record.state, state)
            record.waiting_for, record.conditions = {}, ()
            if state.terminal:
                record.finished_at = utcnow()
            if self.failure is not None:
                record.failed_task, record.error = self.failure
            counted = Counter(self.states[: len(self.flow.tasks)])
            record.counts = {state.value: n for state, n in counted.items()}
            await self.journal.save(record)
        self.observer.run(record)
        return record

    def _why(self, cause: str) -> str:
        what = f"flow {self.flow.name} run {self.run_id}"
        if cause == "aborted":
            return f"{what} was aborted"
        if self.failure is not None:
            return f"{what} failed at task {self.failure[0]}: {self.failure[1].message}"
        return f"{what} failed"

    # -- one task ----------------------------------------------------------------------

    def _done_before(self, i: int) -> bool:
        """Succeeded in an earlier turn: completes inline, its result already in ``results``."""
        if self.states[i] is TaskState.SUCCEEDED:
            self.observer.task(self.run_id, self.nodes[i].spec.id, TaskState.SUCCEEDED, "earlier")
            return True
        return False

    async def _step(self, i: int) -> bool:
        """Run task ``i`` (the executor's step); True if it succeeded."""
        state = self.states[i]
        if state is TaskState.FAILED:
            return False  # failed in an earlier turn: it stays failed
        waits = self.waits
        waits.running += 1
        try:
            if state.in_doubt and not self.nodes[i].task.idempotent:
                return await self._decide(i, state)
            return await self._execute(i, marked=False)
        finally:
            waits.running -= 1
            if waits.waiting:
                await waits.refresh()

    async def _decide(self, i: int, state: TaskState) -> bool:
        """A non-idempotent task in doubt after a crash: an operator says what to do."""
        try:
            decision = await self.waits.ask_operator(self.nodes[i].spec.id, state)
        except Halted as halted:
            await self.mark(i, TaskState.INTERRUPTED, reason=halted.reason)
            return False
        receipt = {"signal": decision.name, "revision": decision.revision,
                   "by": decision.by or None}  # fmt: skip
        if decision.name == signals.SKIP:
            data = decision.data
            result = data.get("result") if isinstance(data, dict) else None
            await self.mark(i, TaskState.SUCCEEDED, result=result, skipped=True, **receipt)
            await self.waits.hub.consume(decision)
            self.results[self.nodes[i].spec.id] = result
            return True
        await self.mark(i, TaskState.RUNNING, attempt=1, **receipt)
        await self.waits.hub.consume(decision)
        return await self._execute(i, marked=True)

    async def _execute(self, i: int, *, marked: bool) -> bool:
        node = self.nodes[i]
        attempt = 1
        if node.mark_start and not marked:
            await self.mark(i, TaskState.RUNNING, attempt=1)
        elif not marked and self.observing:
            self.observer.task(self.run_id, node.spec.id, TaskState.RUNNING, "")
        try:
            if node.policy is None:
                result = await self._attempt(i, 1)
            else:

                async def call() -> Any:
                    return await self._attempt(i, attempt)

                async def on_retry(n: int, exc: errors.TransientError, pause: float) -> None:
                    nonlocal attempt
                    if self.waits.halt.is_set():
                        raise self.waits.halted()
                    attempt = n + 1
                    await self.mark(i, TaskState.RETRYING, attempt=attempt, error=str(exc),
                                    pause=round(pause, 3))  # fmt: skip

                result, attempt = await retrying(call, node.policy, on_retry=on_retry)
        except Halted as halted:
            await self.mark(i, TaskState.INTERRUPTED, reason=halted.reason)
            return False
        except asyncio.CancelledError:
            await self.mark(i, TaskState.INTERRUPTED, reason="cancelled")
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as the task's failure
            await self._fail(i, exc, attempt)
            return False
        try:
            await self.mark(
                i, TaskState.SUCCEEDED, result=result, attempt=attempt if attempt > 1 else None
            )
        except (TypeError, ValueError) as exc:
            await self._fail(i, errors.PermanentError(f"result is not JSON-able: {exc}"), attempt)
            return False
        self.results[node.spec.id] = result
        return True

    async def _attempt(self, i: int, attempt: int) -> Any:
        node = self.nodes[i]
        work = node.task.execute(self._context(i, attempt), node.params)
        limit = node.spec.timeout
        if limit is None:
            return await work
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                return await work
        except TimeoutError:
            if deadline.expired():
                raise errors.TransientError(f"timed out after {limit:g} s") from None
            raise

    def _context(self, i: int, attempt: int, failure: ErrorRecord | None = None) -> FlowContext:
        return FlowContext(
            store=self.runner.store, run_id=self.run_id, flow=self.flow.name,
            task_id=self.nodes[i].spec.id, attempt=attempt, results=self.results_view,
            services=self.services, stop=self.waits.halt, host=self.waits, failure=failure,
        )  # fmt: skip

    async def _fail(self, i: int, exc: BaseException, attempt: int) -> None:
        error = error_record(exc)
        self.errors[i] = error
        await self.mark(
            i, TaskState.FAILED, error=error.model_dump(), attempt=attempt if attempt > 1 else None
        )
        if self.waits.in_graph:
            if self.failure is None:
                self.failure = (self.nodes[i].spec.id, error)
            if self.flow.on_failure != "none":
                self.waits.stop("failed")

    async def mark(self, i: int, state: TaskState, **details: Any) -> int:
        """Journal a task transition (one append), then tell the observer."""
        task_id = self.nodes[i].spec.id
        new = next_task_state(self.states[i], state)
        seq = await self.journal.task(self.run_id, task_id, state, **details)
        self.states[i] = new
        if state in _ENDED:
            self.ended[i] = seq
        if self.observing:
            self.observer.task(self.run_id, task_id, state, describe(details))
        return seq

    def mark_id(self, task_id: str, state: TaskState, **details: Any) -> Awaitable[int]:
        return self.mark(self.index[task_id], state, **details)


def error_record(exc: BaseException) -> ErrorRecord:
    return ErrorRecord(
        type=type(exc).__name__,
        message=str(exc) or type(exc).__name__,
        transient=isinstance(exc, errors.TransientError),
    )


def error_from(data: Any) -> ErrorRecord:
    if isinstance(data, dict):
        return ErrorRecord.model_validate(data)
    return ErrorRecord(type="Error", message=str(data))


_WHY = {"failed": "another task failed", "aborted": "abort signal", "interrupted": "stop asked",
        "cancelled": "cancelled"}  # fmt: skip


def describe(details: Mapping[str, Any]) -> str:
    """A short human line from a journal event's details, for observers."""
    if "error" in details:
        error = details["error"]
        text = error.get("message", "") if isinstance(error, dict) else str(error)
        if "pause" in details:
            return f"attempt {details.get('attempt')} in {details['pause']:g} s: {text}"
        return str(text)
    if "until" in details:
        return f"until {iso(float(details['until']))}"
    if "signal" in details:
        got = "revision" in details
        return f"{'got' if got else 'waiting for'} signal {details['signal']}"
    if "deadline" in details:
        return f"{details.get('what', '')} (deadline {iso(float(details['deadline']))})"
    if "reason" in details:
        return _WHY.get(str(details["reason"]), str(details["reason"]))
    if int(details.get("attempt") or 1) > 1:
        return f"after {details['attempt']} attempts"
    return ""
