"""``/api/v1/whoami`` and ``/api/v1/tokens``: who is calling, and people's tokens (admin).

A new token's plaintext is in the ``POST`` response only; the store keeps its SHA-256.
Agent tokens are issued by enrolment (``/api/v1/nodes/enrol``), not here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, Field

from accord import errors
from accord.server import audit
from accord.server.auth import Admin, Caller, Role, TokenRecord, issue, list_tokens, token_key
from accord.server.context import Ctx

router = APIRouter(tags=["auth"])

TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="The token's SHA-256.")]


class Whoami(BaseModel):
    name: str
    role: Role
    node: str | None


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")
    role: Literal["admin", "operator", "viewer"]


class IssuedToken(BaseModel):
    id: str
    token: str = Field(description="The plaintext: shown once, never stored.")
    name: str
    role: Role


class TokenInfo(BaseModel):
    id: str
    name: str
    role: Role
    node: str | None
    created_at: datetime
    created_by: str


def _info(token_id: str, record: TokenRecord) -> TokenInfo:
    return TokenInfo(
        id=token_id,
        name=record.name,
        role=record.role,
        node=record.node,
        created_at=record.created_at,
        created_by=record.created_by,
    )


@router.get("/whoami")
async def whoami(caller: Caller) -> Whoami:
    """The caller's token: name, role, bound node."""
    return Whoami(name=caller.name, role=caller.role, node=caller.node)


@router.post("/tokens", status_code=status.HTTP_201_CREATED)
async def create_token(body: NewToken, ctx: Ctx, caller: Admin) -> IssuedToken:
    """Issue a token for a person (admin). The response is the only place the token appears."""
    token, record, token_id = await issue(
        ctx.store, name=body.name, role=Role(body.role), created_by=caller.name
    )
    await audit.record(
        ctx.store,
        audit.TOKEN_CREATED,
        token_id,
        initiator=caller.name,
        name=record.name,
        role=record.role.value,
    )
    return IssuedToken(id=token_id, token=token, name=record.name, role=record.role)


@router.get("/tokens")
async def get_tokens(ctx: Ctx, caller: Admin) -> list[TokenInfo]:
    """Every token (admin): names, roles, bound nodes; never a secret."""
    return [_info(token_id, record) for token_id, record in await list_tokens(ctx.store)]


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_token(token_id: TokenId, ctx: Ctx, caller: Admin) -> None:
    """Revoke a token (admin); it stops working at once."""
    entry = await ctx.store.get(token_key(token_id))
    if entry is None:
        raise errors.NotFoundError(f"no token {token_id}")
    await ctx.store.delete(token_key(token_id), expected_revision=entry.revision)
    record = TokenRecord.model_validate_json(entry.value)
    await audit.record(
        ctx.store,
        audit.TOKEN_REVOKED,
        token_id,
        initiator=caller.name,
        name=record.name,
        role=record.role.value,
    )
