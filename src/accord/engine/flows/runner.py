"""The durable flow runner: run a flow's task graph, journal every step, resume after a crash.

Execution
    Tasks run through :func:`accord.engine.executor.execute`: each starts the moment its last
    predecessor succeeds, at most ``concurrency`` at once. A task is retried per its policy on
    ``TransientError`` only; ``timeout`` bounds each attempt (a timeout is transient).

Failure policy (``on_failure``)
    ``revert`` (default): on the first failure nothing new starts, waiting tasks are stopped,
    then every task that started is reverted in reverse order of completion, each revert
    journaled; the run ends ``reverted`` (``failed`` if a revert failed). ``{transition: S}``:
    the same stop, then the registered ``transition`` task runs (journaled as task
    ``on_failure``) with ``{to: S, reason: …}``; the run ends ``failed``. ``none``: a failed task
    blocks only its descendants, the rest of the graph goes on; the run ends ``failed``. An
    ``abort`` signal stops the run the same way and it ends ``aborted``.

What is written, and why it is enough (the durability argument)
    Every journal append is one SQLite commit, durable when the call returns: against
    ``kill -9`` with the store's default ``synchronous=normal``, against power loss too with
    ``?synchronous=full`` (see :mod:`accord.store.sqlite`). Per task the runner writes:

    * the end (``succeeded`` with the result, or ``failed`` with the error): always, and
      before any successor starts, because the executor releases successors only after the
      step returns. So a task's effects are never needed by a successor unless its success
      is on disk.
    * ``running`` before ``execute`` starts, but only if the task is not ``idempotent`` or
      can ``revert``. Then, if the process dies while the task runs, the journal says it may
      have had effects: resume asks an operator instead of repeating it, and a revert undoes
      it. An idempotent task without a revert needs no such mark: resume simply runs it again,
      which its contract allows, and there is nothing to undo. That makes the common case one
      write per task, and at most two.
    * per durable wait one ``waiting`` event (the wake time, the signal awaited, the deadline),
      and per signal received one receipt; per retry one ``retrying`` event.

    The run record (``flows.<run>``) is written at start, when the run's state changes
    (running ↔ waiting, reverting, the end), and never per task; the run's own journal events
    (``started``, ``crashed``, ``resumed``, ``failing``) are one per turn.

Crash and resume
    The executing process holds the run's lock (:mod:`accord.engine.flows.lock`) from before
    its first write. ``resume(run)`` takes that lock (failing if a live process holds it), and
    only then reads the record: if it says ``running``, ``waiting`` or ``reverting``, its
    process is dead, so the run is marked ``crashed`` (record and journal) before anything
    else. The state is rebuilt from the journal: succeeded tasks are not run again (their
    journaled results are reused); failed tasks stay failed; a task that started and did not
    finish is run again if it is idempotent, otherwise it waits for an operator (signal
    ``retry``, ``skip`` or ``abort``, optionally with ``{"task": ID}`` as data to pick the task;
    ``skip``'s ``{"result": …}`` becomes the task's result) while the run is ``waiting`` with an
    ``OperatorDecision`` condition. Durable waits resume where they were (see
    :mod:`accord.engine.flows.context`). A crash during the failure policy resumes the policy:
    reverts are idempotent by contract, so a revert that was running is run again.
    Retry counts restart on resume; per-attempt timeouts restart too.

Starting without waiting
    ``run`` is ``start`` (check the parameters, take the lock, write the definition, the
    ``started`` event and the record) followed by ``StartedRun.go`` (execute). A caller that
    must answer before the run ends (the control plane's ``POST /flows``) calls ``start``,
    answers with the record, and drives ``go`` in the background.

Stopping
    The caller's ``stop`` event (Ctrl-C) starts nothing new, ends every wait, lets running
    tasks finish and leaves the run ``interrupted``, resumable. Cancelling the runner leaves it
    ``interrupted`` as well.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from accord import errors
from accord.engine.flows import tasks as tasks_module
from accord.engine.flows.execution import Execution, Node
from accord.engine.flows.journal import FlowJournal, FlowRun
from accord.engine.flows.lock import RunLock
from accord.engine.flows.model import (
    BUILTIN_PLACEHOLDERS,
    ON_FAILURE_TASK,
    TRANSITION_TASK,
    FlowSpec,
    InvalidFlowError,
    TaskSpec,
    TransitionPolicy,
    substitute,
)
from accord.engine.flows.observer import NullObserver, Observer
from accord.engine.flows.states import FlowState, next_flow_state
from accord.engine.journal import new_run_id
from accord.store.base import Store


class FlowRunner:
    """Runs and resumes flows on one store.

    Args:
        store: where runs are recorded.
        registry: task types (default: built-ins plus the ``accord.tasks`` entry points).
        lock_dir: where run locks live; every process running flows on this store must use
            the same one (the CLI uses ``<state dir>/flows``).
        services: handed to tasks as ``ctx.services``; ``node`` and ``base_dir`` are added
            from the run record when it has them.
        observer: told about progress.
        concurrency: tasks running at once, unless the flow says otherwise.
    """

    def __init__(
        self,
        store: Store,
        registry: tasks_module.TaskRegistry | None = None,
        *,
        lock_dir: Path,
        services: Mapping[str, Any] | None = None,
        observer: Observer | None = None,
        concurrency: int = 8,
    ) -> None:
        self.store = store
        self.registry = registry or tasks_module.default()
        self.lock_dir = lock_dir
        self.services = dict(services or {})
        self.observer: Observer = observer or NullObserver()
        self.concurrency = concurrency
        self.journal = FlowJournal(store)

    async def start(
        self,
        flow: FlowSpec,
        *,
        params: Mapping[str, Any] | None = None,
        node: str | None = None,
        base_dir: Path | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> StartedRun:
        """Check, lock and record a new run of ``flow``; execute nothing yet.

        Takes the same arguments as :meth:`run` (but ``stop``). The returned run holds its lock
        until :meth:`StartedRun.go` ends: call ``go`` exactly once. Until then the run is
        recorded ``running`` by this process, and resumable as crashed if the process dies.

        Raises:
            InvalidFlowError: bad parameters; nothing was written.
            InputError: the definition is too large to store; nothing was written.
        """
        run_id = new_run_id()
        values = flow.bind(params or {}, run_id=run_id)
        nodes = self._nodes(flow, values)
        lock = RunLock.take(self.lock_dir, run_id)
        try:
            # The definition first: it is the write most likely to be refused (its size), and
            # it is invisible until the record that names the run exists.
            await self.journal.save_definition(run_id, flow)
            first = await self.journal.event(run_id, "started", flow=flow.name, pid=os.getpid())
            record = FlowRun(
                run_id=run_id,
                flow=flow.name,
                source=flow.source,
                params={k: v for k, v in values.items() if k not in BUILTIN_PLACEHOLDERS},
                node=node,
                base_dir=str(base_dir) if base_dir is not None else None,
                context=dict(context or {}),
                pid=os.getpid(),
                journal_from=first,
                tasks=len(flow.tasks),
            )
            await self.journal.save(record)
        except BaseException:
            lock.release(finished=False)
            raise
        self.observer.run(record)
        return StartedRun(Execution(self, flow, record, nodes, None), lock)

    async def run(
        self,
        flow: FlowSpec,
        *,
        params: Mapping[str, Any] | None = None,
        node: str | None = None,
        base_dir: Path | None = None,
        context: Mapping[str, Any] | None = None,
        stop: asyncio.Event | None = None,
    ) -> FlowRun:
        """Start a run of ``flow`` and drive it to its end (or until stopped).

        Args:
            flow: the definition; it is stored with the run, which resumes from that copy.
            params: run parameters (``--param``), overlaid on the flow's defaults.
            node: the node the run is about; tasks get it as ``services["node"]``.
            base_dir: relative paths in task parameters resolve against it (the flow file's
                directory); tasks get it as ``services["base_dir"]``.
            context: JSON-able data the caller needs to resume the run (the CLI keeps its
                roots there); stored in the record, never read by the runner.
            stop: set it to stop the run (it ends ``interrupted``).

        Raises:
            InvalidFlowError: bad parameters; nothing was written.
        """
        started = await self.start(
            flow, params=params, node=node, base_dir=base_dir, context=context
        )
        return await started.go(stop)

    async def resume(self, run_id: str, *, stop: asyncio.Event | None = None) -> FlowRun:
        """Continue a run that crashed or was interrupted (see the module docstring).

        Raises:
            AccordError: a live process is running it.
            NotFoundError: no such run.
            InputError: the run has ended already.
        """
        lock = RunLock.take(self.lock_dir, run_id)
        record: FlowRun | None = None
        try:
            record = await self.journal.get(run_id)
            if record.state.terminal:
                raise errors.InputError(
                    f"flow run {run_id} has ended ({record.state}); there is nothing to resume"
                )
            flow = await self.journal.definition(record)
            nodes = self._nodes(flow, flow.bind(record.params, run_id=run_id))
            replay = await self.journal.replay(record)
            if record.state in (FlowState.RUNNING, FlowState.WAITING, FlowState.REVERTING):
                # We hold its lock, so the process that left it so is gone.
                await self.journal.event(run_id, "crashed", pid=record.pid, state=record.state)
                record.state = next_flow_state(record.state, FlowState.CRASHED)
                await self.journal.save(record)
                self.observer.run(record)
            await self.journal.event(run_id, "resumed", pid=os.getpid(), was=record.state)
            reverting = replay.failing is not None and flow.on_failure == "revert"
            record.state = next_flow_state(
                record.state, FlowState.REVERTING if reverting else FlowState.RUNNING
            )
            record.pid, record.host = os.getpid(), socket.gethostname()
            record.resumed += 1
            record.waiting_for, record.conditions = {}, ()
            await self.journal.save(record)
            self.observer.run(record)
            return await Execution(self, flow, record, nodes, replay).go(stop)
        finally:
            lock.release(finished=record is not None and record.state.terminal)

    def _nodes(self, flow: FlowSpec, values: Mapping[str, Any]) -> list[Node]:
        """Resolve every task: its type, its parameters (checked), its retry policy."""
        nodes: list[Node] = []
        problems: list[str] = []
        for index, spec in enumerate(flow.tasks):
            task = self.registry.get(spec.task)
            params = substitute(spec.with_, values)
            if task.params_model is not None:
                try:
                    task.params_model.model_validate(params)
                except ValidationError as exc:
                    for err in exc.errors():
                        where = flow.where(("tasks", index, "with", *err["loc"]))
                        field = ".".join(str(p) for p in err["loc"]) or "with"
                        problems.append(
                            f"{where}: task {spec.id!r} ({spec.task}): with.{field}: {err['msg']}"
                        )
            nodes.append(self._node(spec, task, params))
        if isinstance(flow.on_failure, TransitionPolicy):
            hook = TaskSpec.model_validate({"id": ON_FAILURE_TASK, "task": TRANSITION_TASK})
            nodes.append(self._node(hook, self.registry.get(TRANSITION_TASK), {}))
        if problems:
            raise InvalidFlowError(flow.source, problems)
        return nodes

    @staticmethod
    def _node(spec: TaskSpec, task: tasks_module.Task, params: dict[str, Any]) -> Node:
        policy = spec.retry.policy() if spec.retry is not None else task.retry
        if policy is not None and policy.attempts <= 1:
            policy = None
        return Node(spec, task, params, policy, not task.idempotent or task.reversible)


class StartedRun:
    """A run :meth:`FlowRunner.start` recorded and locked: :meth:`go` drives it, once."""

    def __init__(self, execution: Execution, lock: RunLock) -> None:
        self._execution = execution
        self._lock: RunLock | None = lock

    @property
    def record(self) -> FlowRun:
        """The run record (kept current while the run goes)."""
        return self._execution.record

    async def go(self, stop: asyncio.Event | None = None) -> FlowRun:
        """Drive the run to its end or until ``stop`` is set; release its lock."""
        lock, self._lock = self._lock, None
        if lock is None:
            raise RuntimeError(f"flow run {self.record.run_id} was driven already")
        try:
            return await self._execution.go(stop)
        finally:
            lock.release(finished=self.record.state.terminal)
