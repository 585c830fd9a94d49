"""``/api/v1/lifecycles``: the lifecycle definitions nodes follow.

``GET`` (viewer) shows one: states, transitions, guards. ``PUT`` (admin) stores a lifecycle
from its YAML body, validated as a whole (422 with ``problems`` naming the line); it replaces
a stored lifecycle of the same name, which changes the rules for every node that follows it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from accord.lifecycle import definition, nodes
from accord.server import auth, fleet
from accord.server.context import Ctx
from accord.server.problems import documented
from accord.server.routes.common import read_text

router = APIRouter(prefix="/lifecycles", tags=["lifecycles"])

LifecycleName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]

_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A lifecycle definition, as YAML (or JSON).",
        "content": {"application/yaml": {"schema": {"type": "string"}}},
    }
}


@router.get("/{name}")
async def get_lifecycle(name: LifecycleName, ctx: Ctx, caller: auth.Viewer) -> definition.Lifecycle:
    """A stored lifecycle (``default`` is always there)."""
    return await fleet.ensure_lifecycle(ctx.store, name)


@router.put("", openapi_extra=_BODY, responses=documented(413))
async def put_lifecycle(request: Request, ctx: Ctx, caller: auth.Admin) -> definition.Lifecycle:
    """Store (or replace) a lifecycle (admin)."""
    return await nodes.save_lifecycle(ctx.store, await read_text(request), source="body")
