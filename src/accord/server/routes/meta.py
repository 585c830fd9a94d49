"""``/healthz`` (no auth) and ``/api/v1/signing-keys`` (viewer): the keys agents pin."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from accord.server.auth import Viewer
from accord.server.context import Ctx
from accord.server.routes.common import PublicKey, public_keys

router = APIRouter(tags=["meta"])
health = APIRouter(tags=["meta"])


class Health(BaseModel):
    status: str


@health.get("/healthz")
async def healthz(ctx: Ctx) -> Health:
    """Liveness: the app is up and its store answers."""
    await ctx.store.get("healthz")
    return Health(status="ok")


@router.get("/signing-keys")
async def signing_keys(ctx: Ctx, caller: Viewer) -> list[PublicKey]:
    """The public keys every published manifest is signed with (for agents to pin)."""
    return public_keys(ctx)
