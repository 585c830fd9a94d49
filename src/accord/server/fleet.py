"""The fleet as the API shows it: a node's lifecycle, desired and reported state, and staleness.

Staleness
    An agent refreshes ``heartbeat_at`` in ``fleet.status.<node>`` even when nothing changes.
    The view adds a computed ``Stale`` condition: ``True`` (reason ``HeartbeatsStopped``) when
    the last heartbeat is older than ``stale_after`` seconds, ``False`` (``HeartbeatsCurrent``)
    otherwise, ``Unknown`` (``NeverReported``) when the node never wrote a status. The agent's
    own conditions are passed through unchanged; a ``Stale`` condition an agent wrote itself is
    replaced by the computed one.

Guards
    :func:`facts` feeds lifecycle guards from the same data: ``converged`` is whether the node's
    ``Ready`` condition is ``True`` and it applied the manifest and generation published to it
    (both: a generation alone is ambiguous across manifests; ``None`` when it never reported);
    ``apply_in_progress`` is whether its last run is still running.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources

from pydantic import BaseModel, ConfigDict

from accord import errors, signing
from accord.lifecycle.definition import Facts, Lifecycle
from accord.lifecycle.nodes import (
    Node,
    get_lifecycle,
    get_node,
    lifecycle_key,
    list_nodes,
    node_key,
    save_lifecycle,
)
from accord.model.fleet import NodeStatus
from accord.model.status import Condition, ConditionStatus
from accord.store import keys
from accord.store.base import Entry, Store

STALE = "Stale"
READY = "Ready"
_DEFAULT = resources.files("accord.lifecycle").joinpath("default.yaml")


class Desired(BaseModel):
    """What was published to a node (read from its signed envelope)."""

    model_config = ConfigDict(frozen=True)

    manifest: str
    generation: int
    sequence: int  # the publish sequence; the agent reports it as observed_sequence
    signed_at: datetime
    key_ids: list[str]


class NodeView(BaseModel):
    """One node in ``GET /status``."""

    node: str
    lifecycle: str
    state: str
    labels: dict[str, str]
    desired: Desired | None
    status: NodeStatus | None  # as the agent last wrote it
    status_revision: int | None
    conditions: list[Condition]  # the agent's, plus the computed Stale
    stale: bool
    last_heartbeat: datetime | None


async def require_node(store: Store, node_id: str) -> tuple[Node, int]:
    """The node and its record's revision; ``NotFoundError`` if there is no such node."""
    if await store.get(node_key(node_id)) is None:
        raise errors.NotFoundError(f"unknown node {node_id!r}")
    return await get_node(store, node_id)


async def ensure_lifecycle(store: Store, name: str) -> Lifecycle:
    """A stored lifecycle; ``default`` (accord's own) is stored on first use."""
    if await store.get(lifecycle_key(name)) is None:
        if name != "default":
            raise errors.NotFoundError(f"unknown lifecycle {name!r}: an admin must store it")
        await save_lifecycle(store, _DEFAULT.read_text(), source="accord/lifecycle/default.yaml")
    return await get_lifecycle(store, name)


async def read_status(store: Store, node_id: str) -> tuple[NodeStatus, int] | None:
    entry = await store.get(keys.status_key(node_id))
    return None if entry is None else (NodeStatus.model_validate_json(entry.value), entry.revision)


def desired_of(entry: Entry | None) -> Desired | None:
    """Summarise a stored envelope (None if absent or unreadable)."""
    if entry is None:
        return None
    try:
        envelope = signing.load_envelope(entry.value)
        metadata = json.loads(envelope.manifest)["metadata"]
        name, generation = str(metadata["name"]), int(metadata["generation"])
    except (signing.SignatureError, ValueError, KeyError, TypeError):
        return None  # not ours to judge here: the agent refuses it and reports why
    return Desired(
        manifest=name,
        generation=generation,
        sequence=envelope.sequence,
        signed_at=envelope.signed_at,
        key_ids=[s.key_id for s in envelope.signatures],
    )


def stale_condition(status: NodeStatus | None, *, now: datetime, stale_after: float) -> Condition:
    if status is None:
        return Condition(
            type=STALE,
            status=ConditionStatus.UNKNOWN,
            reason="NeverReported",
            message="the node's agent has not reported yet",
            last_transition_time=now,
        )
    beat = status.heartbeat_at
    if beat.tzinfo is None:  # written straight to the store without a zone: read it as UTC
        beat = beat.replace(tzinfo=UTC)
    # now - beat cannot overflow (both are real instants); beat + delta could (year 9999).
    if now - beat > timedelta(seconds=stale_after):
        return Condition(
            type=STALE,
            status=ConditionStatus.TRUE,
            reason="HeartbeatsStopped",
            message=f"no heartbeat for more than {stale_after:g}s",
            last_transition_time=beat + timedelta(seconds=stale_after),
            observed_generation=status.observed_generation,
        )
    return Condition(
        type=STALE,
        status=ConditionStatus.FALSE,
        reason="HeartbeatsCurrent",
        last_transition_time=beat,
        observed_generation=status.observed_generation,
    )


def view(
    node: Node,
    desired_entry: Entry | None,
    status_entry: Entry | None,
    *,
    now: datetime,
    stale_after: float,
) -> NodeView:
    status = None if status_entry is None else NodeStatus.model_validate_json(status_entry.value)
    stale = stale_condition(status, now=now, stale_after=stale_after)
    conditions = [c for c in (status.conditions if status else []) if c.type != STALE]
    return NodeView(
        node=node.id,
        lifecycle=node.lifecycle,
        state=node.state,
        labels=node.labels,
        desired=desired_of(desired_entry),
        status=status,
        status_revision=None if status_entry is None else status_entry.revision,
        conditions=[*conditions, stale],
        stale=stale.status is ConditionStatus.TRUE,
        last_heartbeat=None if status is None else status.heartbeat_at,
    )


async def fleet(store: Store, *, now: datetime, stale_after: float) -> list[NodeView]:
    """Every node's view, sorted by node id (three list reads, whatever the fleet's size)."""
    desired = {e.key: e for e in await store.list(keys.desired_key("_")[:-1])}
    statuses = {e.key: e for e in await store.list(keys.status_key("_")[:-1])}
    return [
        view(
            node,
            desired.get(keys.desired_key(node.id)),
            statuses.get(keys.status_key(node.id)),
            now=now,
            stale_after=stale_after,
        )
        for node in sorted(await list_nodes(store), key=lambda n: n.id)
    ]


async def node_view(store: Store, node_id: str, *, now: datetime, stale_after: float) -> NodeView:
    node, _ = await require_node(store, node_id)
    return view(
        node,
        await store.get(keys.desired_key(node_id)),
        await store.get(keys.status_key(node_id)),
        now=now,
        stale_after=stale_after,
    )


def facts(found: NodeView, *, reason: str, roles: frozenset[str]) -> Facts:
    """What lifecycle guards see for this node (see the module docstring)."""
    status = found.status
    if status is None:
        converged: bool | None = None
    else:
        ready = next((c for c in status.conditions if c.type == READY), None)
        desired = found.desired
        applied = desired is None or (
            status.applied_manifest == desired.manifest
            and status.applied_generation == desired.generation
        )
        converged = ready is not None and ready.status is ConditionStatus.TRUE and applied
    return Facts(
        converged=converged,
        apply_in_progress=status is not None and status.state == "running",
        reason=reason,
        roles=roles,
    )
