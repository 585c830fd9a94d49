"""Lifecycle events: what happened to a node, appended to the ``events`` stream.

The stream is the outbox: webhook delivery reads it from a per-subscription cursor, so an event
is announced iff it was appended. Appends happen *after* the fact they announce is committed
(a transition commits with the node record's compare-and-set), and a crash in between is
repaired by appending again: consumers must therefore treat ``id`` as an idempotency key
(at-least-once). ``id`` is stable for the fact, e.g. ``node.transition:n1:7`` for node n1's
seventh transition.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from accord.model.status import utcnow
from accord.store.base import Record, Store

STREAM = "events"

TRANSITION = "node.transition"
"""A node changed lifecycle state; ``data`` is the transition record."""


class Event(BaseModel):
    """One announced fact."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    at: datetime = Field(default_factory=utcnow)
    node: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)  # the node's labels, for filtering
    data: dict[str, Any] = Field(default_factory=dict)


async def publish(store: Store, event: Event) -> int:
    """Append ``event`` to the stream; returns its sequence number."""
    return await store.append(STREAM, event.model_dump_json().encode())


async def read(
    store: Store, *, after: int = 0, limit: int | None = None
) -> list[tuple[int, Event]]:
    """Events after sequence ``after``, in order, with their sequence numbers."""
    records: list[Record] = await store.read(STREAM, after=after, limit=limit)
    return [(r.seq, Event.model_validate_json(r.data)) for r in records]
