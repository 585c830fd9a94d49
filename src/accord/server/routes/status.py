"""``/api/v1/status``: the fleet at a glance (viewer).

Per node: lifecycle state, labels, what was published to it (manifest, generation, signing
keys), the status its agent last wrote (observed / staged / applied generation, per-resource
phases, conditions, heartbeat) and a computed ``Stale`` condition (see
:mod:`accord.server.fleet`).
"""

from __future__ import annotations

from fastapi import APIRouter

from accord.server import auth, fleet
from accord.server.context import Ctx
from accord.server.routes.common import NodeId

router = APIRouter(prefix="/status", tags=["status"])


@router.get("")
async def fleet_status(ctx: Ctx, caller: auth.Viewer) -> list[fleet.NodeView]:
    """Every node's desired and reported state, sorted by node id."""
    return await fleet.fleet(ctx.store, now=ctx.clock(), stale_after=ctx.stale_after)


@router.get("/{node_id}")
async def node_status(node_id: NodeId, ctx: Ctx, caller: auth.Viewer) -> fleet.NodeView:
    """One node's desired and reported state."""
    return await fleet.node_view(ctx.store, node_id, now=ctx.clock(), stale_after=ctx.stale_after)
