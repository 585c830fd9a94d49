"""``/api/v1/nodes``: nodes, labels, lifecycle transitions and history, desired state, status.

Roles: viewers read; operators relabel and transition (admins may ``force``); a node's own
agent reads its desired state and status and writes its status (nobody else writes status).

Status writes are compare-and-set over HTTP: ``GET`` returns the record's revision as its
``ETag``; ``PUT`` with ``If-Match: "<revision>"`` replaces exactly that revision (412 if it is
no longer current). Without ``If-Match`` a ``PUT`` only creates the first status (428 if one
exists). Heartbeats are status writes and are not announced as events.

Relabelling re-publishes the node's desired state (its assignment may change). Transitions
record the caller's token name as initiator; their guards see the node's reported status
(:func:`accord.server.fleet.facts`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response, status
from pydantic import BaseModel, Field

from accord import errors, signing
from accord.lifecycle import nodes
from accord.model.fleet import NodeStatus
from accord.server import audit, auth, fleet, publish
from accord.server.catalog import Labels
from accord.server.context import Ctx
from accord.server.problems import (
    BadRequest,
    PreconditionFailed,
    PreconditionRequired,
    documented,
)
from accord.server.routes.common import NodeId
from accord.store import keys

router = APIRouter(prefix="/nodes", tags=["nodes"])


class NodeDetail(BaseModel):
    node: nodes.Node
    revision: int
    next: list[str] = Field(description="The states the lifecycle table allows from here.")


class LabelsBody(BaseModel):
    labels: Labels


class TransitionBody(BaseModel):
    to: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    reason: str = Field(default="", max_length=2000)
    expect: str | None = Field(
        default=None,
        max_length=64,
        description="Refuse (409) unless the node is in this state now.",
    )
    force: bool = Field(default=False, description="Admin: move outside the table.")


class StatusWritten(BaseModel):
    revision: int


def _etag(revision: int) -> str:
    return f'"{revision}"'


def _if_match(value: str) -> int:
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 19:
        raise BadRequest(f'If-Match must be a revision like "42", not {value!r}')
    return int(text)


@router.get("")
async def list_nodes(ctx: Ctx, caller: auth.Viewer) -> list[nodes.Node]:
    """Every node with its lifecycle state and labels."""
    return sorted(await nodes.list_nodes(ctx.store), key=lambda n: n.id)


@router.get("/{node_id}")
async def get_node(node_id: NodeId, ctx: Ctx, caller: auth.Viewer) -> NodeDetail:
    """One node, its record's revision and where its lifecycle may take it next."""
    node, revision = await fleet.require_node(ctx.store, node_id)
    lifecycle = await nodes.get_lifecycle(ctx.store, node.lifecycle)
    return NodeDetail(node=node, revision=revision, next=lifecycle.allowed_from(node.state))


@router.put("/{node_id}/labels")
async def put_labels(
    node_id: NodeId, body: LabelsBody, ctx: Ctx, caller: auth.Operator
) -> nodes.Node:
    """Replace a node's labels (operator) and re-publish its desired state."""
    before, _ = await fleet.require_node(ctx.store, node_id)
    changed = await nodes.set_labels(ctx.store, node_id, dict(body.labels))
    if changed.labels != before.labels:
        await audit.record(
            ctx.store,
            audit.NODE_LABELS,
            f"{node_id}:{ctx.clock().isoformat()}",
            initiator=caller.name,
            node=node_id,
            labels=changed.labels,
            previous=before.labels,
        )
    await publish.Publisher(ctx.store, ctx.signing_keys, ctx.kinds).run(
        initiator=caller.name, only={node_id}
    )
    return changed


@router.post("/{node_id}/transitions", status_code=status.HTTP_201_CREATED)
async def transition(
    node_id: NodeId, body: TransitionBody, ctx: Ctx, caller: auth.Operator
) -> nodes.TransitionRecord:
    """Move a node to another lifecycle state (operator; ``force`` needs admin).

    409 if ``expect`` is not the node's state; 422 if the table or a guard refuses.
    """
    if body.force and not caller.at_least(auth.Role.ADMIN):
        raise auth.forbidden("only an admin may force a transition")
    node, _ = await fleet.require_node(ctx.store, node_id)
    lifecycle = await nodes.get_lifecycle(ctx.store, node.lifecycle)
    found = await fleet.node_view(ctx.store, node_id, now=ctx.clock(), stale_after=ctx.stale_after)
    facts = fleet.facts(found, reason=body.reason, roles=auth.lifecycle_roles(caller.role))
    return await nodes.transition(
        ctx.store,
        lifecycle,
        node_id,
        body.to,
        initiator=caller.name,
        facts=facts,
        expected=body.expect,
        force=body.force,
    )


@router.get("/{node_id}/history")
async def get_history(
    node_id: NodeId, ctx: Ctx, caller: auth.Viewer
) -> list[nodes.TransitionRecord]:
    """Every transition of the node, oldest first: from, to, when, who, why."""
    await fleet.require_node(ctx.store, node_id)
    return await nodes.history(ctx.store, node_id)


@router.get("/{node_id}/desired")
async def get_desired(node_id: NodeId, ctx: Ctx, caller: auth.NodeReader) -> signing.SignedManifest:
    """The signed manifest envelope published to the node (its agent, or viewers)."""
    await fleet.require_node(ctx.store, node_id)
    found = await publish.desired(ctx.store, node_id)
    if found is None:
        raise errors.NotFoundError(f"nothing is published to node {node_id!r}")
    return found


@router.get("/{node_id}/status")
async def get_status(
    node_id: NodeId, ctx: Ctx, caller: auth.NodeReader, response: Response
) -> NodeStatus:
    """The status the node's agent wrote last; its revision is the ``ETag``."""
    await fleet.require_node(ctx.store, node_id)
    found = await fleet.read_status(ctx.store, node_id)
    if found is None:
        raise errors.NotFoundError(f"node {node_id!r} has not reported a status")
    response.headers["ETag"] = _etag(found[1])
    return found[0]


@router.put("/{node_id}/status", responses=documented(412, 428))
async def put_status(
    node_id: NodeId,
    body: NodeStatus,
    ctx: Ctx,
    caller: auth.NodeAgent,
    response: Response,
    if_match: Annotated[str | None, Header(max_length=64)] = None,
) -> StatusWritten:
    """Write the node's status (its own agent only), compare-and-set on ``If-Match``."""
    if body.node != node_id:
        raise errors.InputError(f"the status is for node {body.node!r}, not {node_id!r}")
    if body.heartbeat_at.tzinfo is None:
        raise errors.InputError("heartbeat_at needs a timezone")
    await fleet.require_node(ctx.store, node_id)
    key, value = keys.status_key(node_id), body.model_dump_json().encode()
    try:
        if if_match is None:
            revision = await ctx.store.create(key, value)
        else:
            revision = await ctx.store.update(key, value, expected_revision=_if_match(if_match))
    except errors.ConflictError:
        if if_match is None:
            raise PreconditionRequired(
                f"node {node_id!r} has a status: send If-Match with its revision"
            ) from None
        raise PreconditionFailed(
            f"node {node_id!r}'s status changed since revision {if_match}: read it again"
        ) from None
    response.headers["ETag"] = _etag(revision)
    return StatusWritten(revision=revision)
