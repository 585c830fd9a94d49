"""Flow tasks that act on a node's lifecycle: ``transition`` and ``wait_window``.

Both act on the node named by the ``node`` service, in the run's store (where nodes live).

``transition``
    Moves the node like ``accord node transition`` does, with the flow run as the initiator
    and recorded in the history entry's ``workflow`` field. Its guards see the ``facts``
    service if the run has one, else this machine's runs (the ``session`` service).
    Idempotent: after a crash, a re-run that finds the node already moved *by this run* to
    the target returns that transition instead of failing.
``wait_window``
    Returns at once when one of the node's maintenance windows is open, else sleeps
    (durably: a resumed run waits only the remainder) until the next one opens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from accord import errors
from accord.engine.flows.context import FlowContext
from accord.engine.flows.tasks import Task
from accord.lifecycle import nodes
from accord.lifecycle.definition import Facts

FactsSource = Callable[[FlowContext, str], Awaitable[Facts]]
"""The ``facts`` service: ``async (ctx, reason) -> Facts`` for the run's node."""


class TransitionParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    to: str = Field(min_length=1)
    reason: str = ""
    expect: str | None = None
    force: bool = False


class TransitionTask(Task):
    """Move the run's node to another lifecycle state."""

    name = "transition"
    idempotent = True
    device_local = False  # acts on the store only
    params_model = TransitionParams

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        p = TransitionParams.model_validate(params)
        node_id = ctx.service("node")
        node, _ = await nodes.get_node(ctx.store, node_id)
        last = node.last
        if node.state == p.to and last is not None and last.workflow == ctx.run_id:
            return last.model_dump(mode="json", by_alias=True)  # done before a crash
        lifecycle = await nodes.get_lifecycle(ctx.store, node.lifecycle)
        reason = p.reason or f"flow {ctx.flow}, task {ctx.task_id}"
        facts = await _facts(ctx, reason)
        record = await nodes.transition(
            ctx.store, lifecycle, node_id, p.to, initiator=f"flow:{ctx.flow}", facts=facts,
            expected=p.expect, force=p.force, workflow=ctx.run_id,
        )  # fmt: skip
        return record.model_dump(mode="json", by_alias=True)


async def _facts(ctx: FlowContext, reason: str) -> Facts:
    """What the guards see: the run's ``facts`` service if it has one (the control plane's
    reads the node's reported status), else this machine's runs when a local session is
    present."""
    given: FactsSource | None = ctx.services.get("facts")
    if given is not None:
        return await given(ctx, reason)
    roles = frozenset(ctx.services.get("roles") or {"operator"})
    session = ctx.services.get("session")
    if session is not None:
        facts: Facts = await session.facts(reason=reason, roles=roles)
        return facts
    return Facts(reason=reason, roles=roles)


class WaitWindowParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    windows: str = Field(min_length=1, description="windows YAML, relative to the flow file")


class WaitWindowTask(Task):
    """Wait until one of the node's maintenance windows is open."""

    name = "wait_window"
    idempotent = True
    params_model = WaitWindowParams

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        from accord.lifecycle.windows import load_windows, status_at

        p = WaitWindowParams.model_validate(params)
        path = Path(p.windows)
        if not path.is_absolute():
            path = Path(ctx.services.get("base_dir") or Path.cwd()) / path
        try:
            schedule = load_windows(path.read_text(), source=str(path))
        except OSError as exc:
            raise errors.PermanentError(f"{path}: {exc.strerror or exc}") from None
        node_id = ctx.service("node")
        node, _ = await nodes.get_node(ctx.store, node_id)
        status = status_at(schedule, node.id, node.labels, datetime.now(UTC))
        if not status.open:
            if status.next_opens_at is None:
                raise errors.PermanentError(f"no maintenance window of {node_id} ever opens")
            await ctx.sleep_until(status.next_opens_at)
            status = status_at(schedule, node.id, node.labels, datetime.now(UTC))
        return {
            "window": status.window,
            "closes_at": status.closes_at.isoformat() if status.closes_at else None,
        }
