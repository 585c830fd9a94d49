"""``/api/v1/flows``: workflow runs — read them (viewer), signal them and start them (operator).

Reading covers every run on the store, wherever it executes: on a device (``accord flow run
--store …``) or in the control plane itself. A run's tasks are rebuilt from its journal as
``accord flow status`` shows them (:mod:`accord.engine.flows.view`).

``GET /flows`` lists runs newest first, ``?node=`` and ``?state=`` filter, ``?limit=`` (default
100) caps one page, and ``?before=RUN`` continues after the last run of the previous page.

``POST /flows/{run}/signals`` writes a signal key the run watches in the store, so the run
receives it wherever it executes: ``approve``, ``abort``, ``retry``, ``skip`` or any name a
``wait_signal`` task waits for, with optional JSON ``data``. 404 for an unknown run, 409 for a
run that has ended (a run that ends between the check and the write ignores the signal). The
caller's token name is the signal's sender, journaled with its receipt.

``POST /flows`` starts a run in the control plane's own process (see
:mod:`accord.server.flows` for what may run there and why): the definition is YAML or JSON
text, or a JSON object, with ``node`` and ``params``. An invalid definition or parameters, an
unknown node, or a device-local task type (``converge``, ``wait_window``): 422 naming the field
or task, and nothing is stored. 201 returns the run as started; it goes on in the background.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from accord import errors
from accord.engine.flows import signals, view
from accord.engine.flows.journal import FlowJournal, FlowRun
from accord.engine.flows.states import FlowState
from accord.server import audit, auth, fleet
from accord.server.context import Ctx
from accord.server.problems import documented
from accord.server.routes.common import MAX_BODY

router = APIRouter(prefix="/flows", tags=["flows"])

RunId = Annotated[str, Path(description="Flow run id.", max_length=128)]


class StartFlowBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition: Annotated[str, Field(max_length=MAX_BODY)] | dict[str, Any] = Field(
        description="The flow: YAML or JSON text, or a JSON object (accord flow format)."
    )
    node: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The enrolled node the run is about (its `${node}` parameter too).",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Run parameters.")


class FlowRunDetail(BaseModel):
    run: FlowRun
    tasks: list[view.TaskView] = Field(description="Every task, in definition order.")
    running_here: bool = Field(description="Whether this control plane is executing it now.")


class JournalEvent(BaseModel):
    """One journal event: a task transition (``task``, ``state``) or the run's (``event``)."""

    model_config = ConfigDict(extra="allow")

    seq: int
    at: datetime
    run: str
    task: str | None = None
    state: str | None = None
    event: str | None = None


class SignalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=signals.NAME.pattern,
        description="approve, abort, retry, skip, or a name a wait_signal task waits for.",
    )
    data: Any = Field(default=None, description="Handed to the waiting task.")


class SignalSent(BaseModel):
    run_id: str
    name: str
    revision: int


@router.get("")
async def list_flow_runs(
    ctx: Ctx,
    caller: auth.Viewer,
    node: Annotated[str | None, Query(max_length=200, description="Only this node's.")] = None,
    state: Annotated[FlowState | None, Query(description="Only runs in this state.")] = None,
    before: Annotated[
        str | None, Query(max_length=128, description="Only runs started before this run.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 100,
) -> list[FlowRun]:
    """Flow runs, newest first."""
    runs = await FlowJournal(ctx.store).runs()
    return view.select(runs, node=node, state=state, before=before, limit=limit)


@router.get("/{run_id}")
async def get_flow_run(run_id: RunId, ctx: Ctx, caller: auth.Viewer) -> FlowRunDetail:
    """One run with every task's state, rebuilt from its journal."""
    journal = FlowJournal(ctx.store)
    record = await journal.get(run_id)
    return FlowRunDetail(
        run=record,
        tasks=await view.tasks_of(journal, record),
        running_here=ctx.flows is not None and ctx.flows.running(run_id),
    )


@router.get("/{run_id}/journal")
async def get_flow_journal(run_id: RunId, ctx: Ctx, caller: auth.Viewer) -> list[JournalEvent]:
    """The run's journal, oldest first."""
    journal = FlowJournal(ctx.store)
    return [JournalEvent.model_validate(e) for e in await journal.events(await journal.get(run_id))]


@router.post("/{run_id}/signals", status_code=status.HTTP_201_CREATED)
async def signal_flow_run(
    run_id: RunId, body: SignalBody, ctx: Ctx, caller: auth.Operator
) -> SignalSent:
    """Send a signal to a run (operator), wherever it executes."""
    record = await FlowJournal(ctx.store).get(run_id)
    if record.state.terminal:
        raise errors.ConflictError(f"flow run {run_id} has ended ({record.state})")
    revision = await signals.send(ctx.store, run_id, body.name, body.data, by=caller.name)
    await audit.record(
        ctx.store,
        audit.FLOW_SIGNALLED,
        f"{run_id}:{revision}",
        initiator=caller.name,
        node=record.node,
        run=run_id,
        signal=body.name,
    )
    return SignalSent(run_id=run_id, name=body.name, revision=revision)


@router.post("", status_code=status.HTTP_201_CREATED, responses=documented(501))
async def start_flow(body: StartFlowBody, ctx: Ctx, caller: auth.Operator) -> FlowRun:
    """Start a flow in the control plane (operator); it runs on in the background."""
    if ctx.flows is None:
        raise HTTPException(
            status.HTTP_501_NOT_IMPLEMENTED, detail="this control plane was started without flows"
        )
    flow = ctx.flows.parse(body.definition)
    if body.node is not None:
        try:
            await fleet.require_node(ctx.store, body.node)
        except errors.NotFoundError:
            raise errors.InputError(f"node: no node {body.node!r} is enrolled") from None
    record = await ctx.flows.start(
        flow,
        params=body.params,
        node=body.node,
        initiator=caller.name,
        roles=auth.lifecycle_roles(caller.role),
    )
    await audit.record(
        ctx.store,
        audit.FLOW_STARTED,
        record.run_id,
        initiator=caller.name,
        node=record.node,
        run=record.run_id,
        flow=record.flow,
    )
    return record
