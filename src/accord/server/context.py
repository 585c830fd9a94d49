"""What every request handler needs, built once per app and reached through one dependency.

Handlers take ``Annotated[ServerContext, Depends(context)]``; tests may replace the whole
context with ``app.dependency_overrides[context]``. The context holds no request state: the
control plane is stateless over its store, so several replicas may serve one fleet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from accord import signing
from accord.model.specs import Spec
from accord.model.status import utcnow
from accord.server.flows import FlowHost
from accord.store.base import Store


@dataclass
class ServerContext:
    """The store, the signing keys and the settings the routers share."""

    store: Store
    signing_keys: tuple[signing.SigningKey, ...]  # every published envelope is signed by all
    kinds: Mapping[str, type[Spec]]  # the resource kinds a published manifest may use
    stale_after: float  # seconds without a heartbeat before a node is Stale
    event_poll_interval: float  # seconds between reads of the events stream by an SSE stream
    clock: Callable[[], datetime] = field(default=utcnow)
    flows: FlowHost | None = None  # None: this control plane runs no flows itself


def context(request: Request) -> ServerContext:
    """The app's context (set up by its lifespan)."""
    found = getattr(request.app.state, "accord", None)
    if not isinstance(found, ServerContext):
        raise RuntimeError("the accord app is not started: run it under its lifespan")
    return found


Ctx = Annotated[ServerContext, Depends(context)]
