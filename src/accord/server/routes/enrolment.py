"""Enrolment: one-time tokens that let a new node register itself and get its credential.

``POST /api/v1/enrolment-tokens`` (operator) returns a token once and stores only its hash at
``enrol.<sha256>``, with an expiry, the labels the operator wants the node to carry and,
optionally, the one node id it may enrol.

``POST /api/v1/nodes/enrol`` takes that token in its body (no bearer token: the node has none
yet). The token is consumed by a compare-and-set delete, so of two concurrent uses exactly one
wins; the node is created in its lifecycle's initial state (lifecycle ``default`` unless
named) and gets an ``agent`` token bound to it, plus the public keys its manifests are signed
with. Labels from the enrolment token override labels the node asks for. The initiator
recorded is the enrolment token's creator. If creating the node fails after the token was
consumed (another node took the id in between), the token is spent: ask for a new one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from accord import errors
from accord.lifecycle import nodes
from accord.model.status import utcnow
from accord.server import audit, auth, fleet, publish
from accord.server.catalog import Labels
from accord.server.context import Ctx
from accord.server.routes.common import PublicKey, public_keys

router = APIRouter(tags=["nodes"])

ENROL = "enrol."
NodeId = Annotated[str, Field(pattern=nodes.NODE_ID, max_length=200)]


class EnrolmentGrant(BaseModel):
    """What ``enrol.<hash>`` holds."""

    model_config = ConfigDict(frozen=True)

    created_by: str
    created_at: datetime
    expires_at: datetime
    labels: dict[str, str]
    node: str | None


class NewEnrolmentToken(BaseModel):
    ttl_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    labels: Labels = Field(default_factory=dict)
    node: NodeId | None = Field(default=None, description="Only this node id may use it.")


class IssuedEnrolmentToken(BaseModel):
    token: str = Field(description="Shown once, never stored.")
    expires_at: datetime
    labels: dict[str, str]
    node: str | None


class EnrolRequest(BaseModel):
    token: str = Field(min_length=1, max_length=200)
    node: NodeId
    labels: Labels = Field(default_factory=dict)
    lifecycle: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$", max_length=64)


class Enrolled(BaseModel):
    node: str
    lifecycle: str
    state: str
    labels: dict[str, str]
    token: str = Field(description="The node's agent credential: shown once, never stored.")
    signing_keys: list[PublicKey]


@router.post("/enrolment-tokens", status_code=status.HTTP_201_CREATED)
async def create_enrolment_token(
    body: NewEnrolmentToken, ctx: Ctx, caller: auth.Operator
) -> IssuedEnrolmentToken:
    """Issue a one-time enrolment token (operator)."""
    token = auth.new_token()
    grant = EnrolmentGrant(
        created_by=caller.name,
        created_at=utcnow(),
        expires_at=utcnow() + timedelta(seconds=body.ttl_seconds),
        labels=body.labels,
        node=body.node,
    )
    await ctx.store.create(ENROL + auth.hash_token(token), grant.model_dump_json().encode())
    return IssuedEnrolmentToken(
        token=token, expires_at=grant.expires_at, labels=grant.labels, node=grant.node
    )


def _refused(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message)


@router.post("/nodes/enrol", status_code=status.HTTP_201_CREATED)
async def enrol(body: EnrolRequest, ctx: Ctx) -> Enrolled:
    """Enrol a node with a one-time enrolment token; returns its agent token (once)."""
    key = ENROL + auth.hash_token(body.token)
    entry = await ctx.store.get(key)
    if entry is None:
        raise _refused("unknown or already used enrolment token")
    grant = EnrolmentGrant.model_validate_json(entry.value)
    if grant.expires_at <= ctx.clock():
        await ctx.store.delete(key, expected_revision=entry.revision)
        raise _refused("the enrolment token has expired")
    if grant.node is not None and grant.node != body.node:
        raise auth.forbidden(f"this enrolment token is for node {grant.node!r} only")
    if await ctx.store.get(nodes.node_key(body.node)) is not None:
        raise errors.ConflictError(f"node {body.node!r} is already enrolled")
    try:
        lifecycle = await fleet.ensure_lifecycle(ctx.store, body.lifecycle or "default")
    except errors.NotFoundError as exc:
        raise errors.InputError(str(exc)) from None
    try:
        await ctx.store.delete(key, expected_revision=entry.revision)
    except errors.ConflictError:
        raise _refused("unknown or already used enrolment token") from None
    try:
        node = await nodes.add_node(
            ctx.store, body.node, lifecycle, labels={**body.labels, **grant.labels}
        )
    except errors.InputError as exc:  # the id was taken between our check and the create
        raise errors.ConflictError(str(exc)) from None
    token, _, _ = await auth.issue(
        ctx.store,
        name=f"agent:{node.id}",
        role=auth.Role.AGENT,
        node=node.id,
        created_by=grant.created_by,
    )
    await audit.record(
        ctx.store,
        audit.NODE_ENROLLED,
        node.id,
        initiator=grant.created_by,
        node=node.id,
        labels=node.labels,
        lifecycle=lifecycle.name,
        state=node.state,
        via="enrolment token",
    )
    await publish.Publisher(ctx.store, ctx.signing_keys, ctx.kinds).run(
        initiator=grant.created_by, only={node.id}
    )
    return Enrolled(
        node=node.id,
        lifecycle=node.lifecycle,
        state=node.state,
        labels=node.labels,
        token=token,
        signing_keys=public_keys(ctx),
    )
