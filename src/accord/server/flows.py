"""The flows the control plane runs itself: started by ``POST /flows``, in the server's process.

What runs here
    Only flows whose every task type is not ``device_local``
    (:attr:`accord.engine.flows.tasks.Task.device_local`): ``sleep``, ``wait_signal``,
    ``wait_condition``, ``call_webhook``, ``transition``, and third-party types that say so.
    ``converge`` and ``wait_window`` need the device's filesystem and run there, with
    ``accord flow run``; a flow using one is refused (422, naming the task), and nothing is
    stored.

How
    Each run is a background task in the server's event loop on the durable runner, over the
    server's store: the same records, journal and signals as a run started with
    ``accord flow run --store …``, so ``accord flow status``, the ``/flows`` routes and signals
    work the same for both. Run locks live in ``lock_dir`` (``accord server`` uses
    ``STATE_DIR/flows``, the directory ``accord flow`` uses with that state dir).

Which runs this process resumes
    A run started here carries ``context.runner = "control-plane"``, and its record names the
    host of the process executing it. At start-up the control plane resumes every unfinished
    run that carries both marks for this host. It never resumes other runs: a run started with
    ``accord flow run`` holds a lock in a lock directory (another state dir, often another
    machine) that this process cannot see, so it cannot tell a live one from a dead one.
    Locks are per machine (:mod:`accord.engine.flows.lock`): replicas on one machine must share
    ``lock_dir``; replicas on several machines each resume only their own host's runs.

Stopping
    :meth:`FlowHost.close` stops every run (waits end, running tasks finish, the run is
    ``interrupted``) and the next start-up resumes it.

Services given to tasks
    ``facts`` (for ``transition``'s guards): the node's reported status, as
    ``POST /nodes/{node}/transitions`` sees it (:func:`accord.server.fleet.facts`), with the
    lifecycle roles of whoever started the run. Condition ``converged``: the node's agent
    reports ``Ready`` and applied the generation published to it (and, given
    ``args.manifest``, that manifest is the one published); the built-in condition reads
    this machine's converge journal, which on a control plane holds no device's runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any

from accord import errors
from accord.engine.flows import tasks
from accord.engine.flows.builtin import CallWebhookTask, ControlPlaneWebhookTask
from accord.engine.flows.context import FlowContext
from accord.engine.flows.journal import FlowJournal, FlowRun
from accord.engine.flows.model import FlowSpec, InvalidFlowError, parse_flow
from accord.engine.flows.runner import FlowRunner
from accord.lifecycle.definition import Facts
from accord.model.status import utcnow
from accord.server import fleet
from accord.store.base import Store

log = logging.getLogger("accord.server")

RUNNER = "control-plane"  # context["runner"] of the runs the control plane owns
SOURCE = "definition"  # how problems name the flow: the request body's field


def refuse_device_tasks(flow: FlowSpec, registry: tasks.TaskRegistry) -> None:
    """``InvalidFlowError`` naming every task whose type needs the device's filesystem."""
    problems = [
        f"{flow.where(('tasks', i, 'task'))}: task {spec.id!r} ({spec.task}): runs on the "
        f"device (it needs the device's filesystem): start this flow there with accord flow run"
        for i, spec in enumerate(flow.tasks)
        if registry.get(spec.task).device_local
    ]
    if problems:
        raise InvalidFlowError(flow.source, problems)


class FlowHost:
    """Starts, resumes and stops the control plane's own flow runs (see the module docstring).

    Args:
        store: the server's store.
        lock_dir: where run locks live.
        stale_after: as the server's: when a node's status is too old (for guards).
        registry: task types (default: built-ins plus installed ones).
        grace: seconds :meth:`close` lets running tasks finish before cancelling them.
    """

    def __init__(
        self,
        store: Store,
        *,
        lock_dir: Path,
        stale_after: float,
        registry: tasks.TaskRegistry | None = None,
        grace: float = 5.0,
    ) -> None:
        self.store = store
        self.registry = tasks.TaskRegistry(registry or tasks.default())  # a copy: we swap one
        if type(self.registry.get("call_webhook")) is CallWebhookTask:
            self.registry.replace(ControlPlaneWebhookTask())  # see its docstring
        self.journal = FlowJournal(store)
        self.stale_after = stale_after
        self.grace = grace
        services = {"facts": self._facts, "conditions": {"converged": self._converged}}
        self.runner = FlowRunner(store, self.registry, lock_dir=lock_dir, services=services)
        self._stop = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}

    def parse(self, definition: str | dict[str, Any]) -> FlowSpec:
        """A flow this process may run, from YAML or JSON text or a JSON object.

        Raises:
            InvalidFlowError: invalid, or it has a device-local task (each problem names it).
        """
        text = definition if isinstance(definition, str) else json.dumps(definition, indent=2)
        flow = parse_flow(text, source=SOURCE, task_types=self.registry.names())
        refuse_device_tasks(flow, self.registry)
        return flow

    async def start(
        self,
        flow: FlowSpec,
        *,
        params: dict[str, Any],
        node: str | None,
        initiator: str,
        roles: Iterable[str],
    ) -> FlowRun:
        """Record a new run and execute it in the background; returns the record as started.

        Raises:
            InvalidFlowError: bad parameters; nothing was written.
        """
        if node is not None and "node" in flow.params and "node" not in params:
            params = {**params, "node": node}
        context = {"runner": RUNNER, "started_by": initiator, "roles": sorted(roles)}
        started = await self.runner.start(flow, params=params, node=node, context=context)
        record = started.record.model_copy(deep=True)  # the live one changes as the run goes
        self._spawn(record.run_id, started.go(self._stop))
        return record

    async def resume_all(self) -> list[str]:
        """Resume (in the background) every unfinished run this host owns; returns their ids."""
        host = socket.gethostname()
        found = [
            r.run_id
            for r in await self.journal.runs()
            if not r.state.terminal and r.context.get("runner") == RUNNER and r.host == host
        ]
        for run_id in found:
            self._spawn(run_id, self.runner.resume(run_id, stop=self._stop))
        return found

    def running(self, run_id: str) -> bool:
        """Whether this process is executing the run now."""
        return run_id in self._running

    async def close(self) -> None:
        """Stop every run: each ends ``interrupted``, resumed at the next start-up."""
        self._stop.set()
        pending = set(self._running.values())
        if pending:
            _, pending = await asyncio.wait(pending, timeout=self.grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _spawn(self, run_id: str, work: Coroutine[Any, Any, FlowRun]) -> None:
        task = asyncio.get_running_loop().create_task(self._drive(run_id, work), name=run_id)
        self._running[run_id] = task
        task.add_done_callback(lambda _: self._running.pop(run_id, None))

    @staticmethod
    async def _drive(run_id: str, work: Coroutine[Any, Any, FlowRun]) -> None:
        try:
            record = await work
        except errors.AccordError as exc:  # e.g. a live process holds the run
            log.warning("flow run %s not driven here: %s", run_id, exc)
            return
        except Exception:
            # Its record says where it stopped; the next start-up resumes it if it can.
            log.exception("flow run %s stopped on an error", run_id)
            return
        log.info("flow run %s: %s", run_id, record.state)

    async def _facts(self, ctx: FlowContext, reason: str) -> Facts:
        run = await self.journal.get(ctx.run_id)
        roles = frozenset(run.context.get("roles") or ["operator"])
        found = await fleet.node_view(
            self.store, ctx.service("node"), now=utcnow(), stale_after=self.stale_after
        )
        return fleet.facts(found, reason=reason, roles=roles)

    async def _converged(self, ctx: FlowContext, args: dict[str, Any]) -> bool:
        found = await fleet.node_view(
            self.store, ctx.service("node"), now=utcnow(), stale_after=self.stale_after
        )
        manifest = args.get("manifest")
        if manifest is not None and (found.desired is None or found.desired.manifest != manifest):
            return False
        return fleet.facts(found, reason="", roles=frozenset()).converged is True
