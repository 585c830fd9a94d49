"""Audit events: every mutating call appends one to the ``events`` stream, naming its initiator.

The stream is the same one lifecycle transitions are announced on (and webhooks deliver
from), so the SSE stream and webhook subscribers see one ordered history of the fleet. Each
event's ``id`` is stable for the fact it announces (at-least-once, like the transitions'),
and ``data["initiator"]`` is the caller's token name.

Types: ``token.created``, ``token.revoked``, ``node.enrolled``, ``node.labels_changed``,
``manifest.published``, ``assignment.changed``, ``assignment.deleted``, ``desired.published``,
``desired.withdrawn``, ``flow.started``, ``flow.signalled`` (plus ``node.transition`` from
:mod:`accord.lifecycle.nodes`).
"""

from __future__ import annotations

from typing import Any

from accord.lifecycle import events
from accord.store.base import Store

TOKEN_CREATED = "token.created"
TOKEN_REVOKED = "token.revoked"
NODE_ENROLLED = "node.enrolled"
NODE_LABELS = "node.labels_changed"
MANIFEST_PUBLISHED = "manifest.published"
ASSIGNMENT_CHANGED = "assignment.changed"
ASSIGNMENT_DELETED = "assignment.deleted"
DESIRED_PUBLISHED = "desired.published"
DESIRED_WITHDRAWN = "desired.withdrawn"
FLOW_STARTED = "flow.started"
FLOW_SIGNALLED = "flow.signalled"


async def record(
    store: Store,
    kind: str,
    fact: str,
    *,
    initiator: str,
    node: str | None = None,
    labels: dict[str, str] | None = None,
    **data: Any,
) -> int:
    """Append an audit event; ``fact`` makes its id unique (``<kind>:<fact>``)."""
    event = events.Event(
        id=f"{kind}:{fact}",
        type=kind,
        node=node,
        labels=labels or {},
        data={"initiator": initiator, **data},
    )
    return await events.publish(store, event)
