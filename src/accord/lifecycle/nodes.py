"""Nodes and their transitions: compare-and-set, an append-only history, announced events.

Keys: ``nodes.<node>`` (the node record), ``history.<node>.<seq>`` (one transition each, seq
from 1 with no gaps), ``lifecycles.<name>`` (a lifecycle's YAML), and the ``events`` stream.

A transition makes three writes, in this order:

1. **compare-and-set of the node record** — the new state, ``transitions = seq`` and the full
   transition record in ``last``. This write is the commit point: it either happens, and the
   transition happened, or it does not.
2. **append of the event** (the webhook outbox, :mod:`accord.lifecycle.events`).
3. **create of the history entry** ``history.<node>.<seq>`` — ``create`` fails if it exists, so
   the entry can never be written twice.

A crash after (1) leaves a committed transition whose history entry is missing. Every reader of
history and every writer of the node record first *repairs*: if ``last`` has no history entry,
it appends the event again and creates the entry. So a committed transition is never lost from
history, history has no gap (seq comes from the CAS-protected counter) and no duplicate
(``create``), and events are delivered at least once (consumers dedupe by event id). Because
writers repair *before* their own compare-and-set, the node record's revision at repair time
is the one that committed ``last``, which is what the entry records as ``revision``.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from accord import errors
from accord.lifecycle import events
from accord.lifecycle.definition import Facts, Lifecycle, decide, load_lifecycle
from accord.model.status import utcnow
from accord.store.base import Store, key_part

NODE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$"


class TransitionRecord(BaseModel):
    """One committed transition: ``{from, to, at, initiator, reason, workflow, revision}``."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)

    node: str
    seq: int = Field(ge=1)
    from_: str = Field(alias="from")
    to: str
    at: datetime
    initiator: str
    reason: str = ""
    workflow: str | None = None  # the flow run that made it, if a flow did
    forced: bool = False  # outside the table, by an admin
    revision: int = 0  # the node record's revision that committed it


class Node(BaseModel):
    """A managed machine's record."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=NODE_ID, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict)
    lifecycle: str
    state: str
    transitions: int = 0  # the seq of the last transition
    last: TransitionRecord | None = None
    created_at: datetime = Field(default_factory=utcnow)


def node_key(node_id: str) -> str:
    return f"nodes.{key_part(node_id)}"


def history_key(node_id: str, seq: int) -> str:
    return f"history.{key_part(node_id)}.{seq:010d}"


def lifecycle_key(name: str) -> str:
    return f"lifecycles.{key_part(name)}"


# -- lifecycles in the store ------------------------------------------------------------


async def save_lifecycle(store: Store, lifecycle_text: str, *, source: str) -> Lifecycle:
    """Validate and store a lifecycle definition under its name (replacing an older one)."""
    lifecycle = load_lifecycle(lifecycle_text, source=source)
    await store.put(lifecycle_key(lifecycle.name), lifecycle_text.encode())
    return lifecycle


async def get_lifecycle(store: Store, name: str) -> Lifecycle:
    entry = await store.get(lifecycle_key(name))
    if entry is None:
        raise errors.InputError(f"unknown lifecycle {name!r}: store it first")
    return load_lifecycle(entry.value.decode(), source=f"lifecycle {name!r} in the store")


# -- nodes ----------------------------------------------------------------------------


async def add_node(
    store: Store, node_id: str, lifecycle: Lifecycle, *, labels: dict[str, str] | None = None
) -> Node:
    """Enrol a node in its lifecycle's initial state; ``InputError`` if it exists."""
    node = Node(id=node_id, labels=labels or {}, lifecycle=lifecycle.name, state=lifecycle.initial)
    try:
        await store.create(node_key(node_id), node.model_dump_json().encode())
    except errors.ConflictError:
        raise errors.InputError(f"node {node_id!r} already exists") from None
    return node


async def get_node(store: Store, node_id: str) -> tuple[Node, int]:
    """The node and its record's revision, after repairing its history."""
    entry = await store.get(node_key(node_id))
    if entry is None:
        raise errors.InputError(f"unknown node {node_id!r}")
    node = Node.model_validate_json(entry.value)
    await repair(store, node, entry.revision)
    return node, entry.revision


async def list_nodes(store: Store) -> list[Node]:
    return [Node.model_validate_json(e.value) for e in await store.list("nodes.")]


async def set_labels(store: Store, node_id: str, labels: dict[str, str]) -> Node:
    """Replace a node's labels (compare-and-set, retried on conflict)."""
    while True:
        node, revision = await get_node(store, node_id)
        changed = node.model_copy(update={"labels": labels})
        try:
            await store.update(
                node_key(node_id), changed.model_dump_json().encode(), expected_revision=revision
            )
            return changed
        except errors.ConflictError:
            continue


# -- transitions ----------------------------------------------------------------------


async def transition(
    store: Store,
    lifecycle: Lifecycle,
    node_id: str,
    to: str,
    *,
    initiator: str,
    facts: Facts,
    expected: str | None = None,
    force: bool = False,
    workflow: str | None = None,
) -> TransitionRecord:
    """Move a node to ``to`` if the lifecycle allows it; return the committed record.

    ``expected`` is the state the caller believes the node is in: if another request moved the
    node first, this one fails with ``StaleStateError`` instead of acting on a state it never
    saw. Without ``expected``, a lost compare-and-set is retried against the new state, which
    the table then judges again.
    """
    while True:
        node, revision = await get_node(store, node_id)
        if node.lifecycle != lifecycle.name:
            raise errors.InputError(
                f"node {node_id!r} follows lifecycle {node.lifecycle!r}, not {lifecycle.name!r}"
            )
        if expected is not None and node.state != expected:
            raise errors.StaleStateError(
                f"node {node_id!r} is {node.state}, not {expected} (it moved since you looked)"
            )
        decision = decide(lifecycle, node.state, to, facts, force=force)
        record = TransitionRecord(
            node=node_id,
            seq=node.transitions + 1,
            from_=node.state,
            to=to,
            at=utcnow(),
            initiator=initiator,
            reason=facts.reason,
            workflow=workflow,
            forced=decision.forced,
        )
        moved = node.model_copy(update={"state": to, "transitions": record.seq, "last": record})
        try:
            committed = await store.update(
                node_key(node_id), moved.model_dump_json().encode(), expected_revision=revision
            )
        except errors.ConflictError:
            continue  # someone else wrote first: look again, judge again
        record = record.model_copy(update={"revision": committed})
        await _announce(store, moved, record)
        return record


async def history(store: Store, node_id: str) -> list[TransitionRecord]:
    """Every transition of a node, oldest first (repairing a crash's missing entry first)."""
    await get_node(store, node_id)
    entries = await store.list(f"history.{key_part(node_id)}.")
    return [TransitionRecord.model_validate_json(e.value) for e in entries]


async def repair(store: Store, node: Node, revision: int) -> bool:
    """Write the history entry (and event) of ``node.last`` if a crash lost them."""
    last = node.last
    if last is None or await store.get(history_key(node.id, last.seq)) is not None:
        return False
    await _announce(store, node, last.model_copy(update={"revision": revision}))
    return True


async def _announce(store: Store, node: Node, record: TransitionRecord) -> None:
    data: dict[str, Any] = record.model_dump(mode="json", by_alias=True)
    await events.publish(
        store,
        events.Event(
            id=f"{events.TRANSITION}:{node.id}:{record.seq}",
            type=events.TRANSITION,
            at=record.at,
            node=node.id,
            labels=node.labels,
            data=data,
        ),
    )
    # A concurrent repair may have created the same entry first: history keeps it exactly once.
    with contextlib.suppress(errors.ConflictError):
        await store.create(history_key(node.id, record.seq), record.model_dump_json().encode())
