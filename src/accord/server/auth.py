"""Token auth: bearer tokens stored hashed, four roles, and the dependencies that check them.

Tokens
    A token is ``acc_`` + 32 random bytes (URL-safe base64). The store keeps only its SHA-256:
    ``tokens.<sha256 hex>`` → :class:`TokenRecord` (name, role, bound node, who created it,
    when). The plaintext is returned once, when the token is issued, and never stored or
    logged. The hash is also the token's public id (for listing and revoking).

Roles
    ``viewer``    read everything (GET), including the event stream
    ``operator``  viewer + transitions, labels, manifests, assignments, enrolment tokens
    ``admin``     operator + tokens, lifecycles, forced transitions
    ``agent``     bound to one node: read that node's desired state and status, write its
                  status; nothing else (not even the fleet's status)

Errors
    No token, or one the store does not know: 401 with ``WWW-Authenticate: Bearer``.
    A known token whose role is not enough (or an agent acting for another node): 403.

The caller's token ``name`` is the *initiator* recorded on every mutating call.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from accord import errors
from accord.model.status import utcnow
from accord.server.context import Ctx
from accord.store.base import Store

TOKENS = "tokens."
TOKEN_PREFIX = "acc_"


class Role(enum.StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    AGENT = "agent"


# People's roles nest; an agent's role is outside the ladder on purpose.
_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


def lifecycle_roles(role: Role) -> frozenset[str]:
    """The roles lifecycle guards see for a token of ``role`` (admin holds every role)."""
    if role is Role.AGENT:
        return frozenset({Role.AGENT.value})
    return frozenset(r.value for r, rank in _RANK.items() if rank <= _RANK[role])


class TokenRecord(BaseModel):
    """What the store keeps about a token (never the token itself)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=200)
    role: Role
    node: str | None = None  # set for agent tokens: the only node they may act for
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = ""


@dataclass(frozen=True)
class Principal:
    """The caller, as its token says."""

    id: str  # the token's hash
    name: str
    role: Role
    node: str | None

    def at_least(self, role: Role) -> bool:
        return self.role is not Role.AGENT and _RANK[self.role] >= _RANK[role]


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_key(token_id: str) -> str:
    return TOKENS + token_id


async def issue(
    store: Store, *, name: str, role: Role, created_by: str, node: str | None = None
) -> tuple[str, TokenRecord, str]:
    """Create a token; returns ``(plaintext, record, id)``. The plaintext is not kept."""
    token = new_token()
    record = TokenRecord(name=name, role=role, node=node, created_by=created_by)
    token_id = hash_token(token)
    await store.create(token_key(token_id), record.model_dump_json().encode())
    return token, record, token_id


async def seed(store: Store, token: str, *, name: str = "admin") -> bool:
    """Make ``token`` an admin token (at startup); False if it already was one."""
    if len(token) < 16:
        raise errors.InputError("an admin token needs at least 16 characters")
    record = TokenRecord(name=name, role=Role.ADMIN, created_by="bootstrap")
    try:
        await store.create(token_key(hash_token(token)), record.model_dump_json().encode())
    except errors.ConflictError:
        return False
    return True


async def resolve(store: Store, token: str) -> Principal | None:
    """The principal a token stands for, or None if the store does not know it."""
    token_id = hash_token(token)
    entry = await store.get(token_key(token_id))
    if entry is None:
        return None
    record = TokenRecord.model_validate_json(entry.value)
    return Principal(id=token_id, name=record.name, role=record.role, node=record.node)


async def list_tokens(store: Store) -> list[tuple[str, TokenRecord]]:
    return [
        (entry.key.removeprefix(TOKENS), TokenRecord.model_validate_json(entry.value))
        for entry in await store.list(TOKENS)
    ]


# -- dependencies ------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="A token issued by an admin or by enrolment.")


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=message, headers={"WWW-Authenticate": "Bearer"}
    )


def forbidden(message: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=message)


async def principal(
    ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The authenticated caller; 401 if there is no valid bearer token."""
    if credentials is None:
        raise _unauthorized("missing bearer token")
    found = await resolve(ctx.store, credentials.credentials)
    if found is None:
        raise _unauthorized("unknown or revoked token")
    return found


Caller = Annotated[Principal, Depends(principal)]


def require(role: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting people whose role is ``role`` or higher (never agents)."""

    async def check(caller: Caller) -> Principal:
        if not caller.at_least(role):
            raise forbidden(f"this needs the {role.value} role; {caller.name!r} is {caller.role}")
        return caller

    return check


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


async def node_reader(node_id: str, caller: Caller) -> Principal:
    """Viewers and up, or the agent bound to ``node_id`` (the path parameter)."""
    if caller.at_least(Role.VIEWER) or (caller.role is Role.AGENT and caller.node == node_id):
        return caller
    raise forbidden(f"{caller.name!r} may not read node {node_id!r}")


async def node_agent(node_id: str, caller: Caller) -> Principal:
    """Only the agent bound to ``node_id`` (the path parameter)."""
    if caller.role is Role.AGENT and caller.node == node_id:
        return caller
    raise forbidden(f"only node {node_id!r}'s own agent may write its status")


NodeReader = Annotated[Principal, Depends(node_reader)]
NodeAgent = Annotated[Principal, Depends(node_agent)]
