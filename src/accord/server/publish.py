"""Desired state: which manifest each node should run, signed and published to its own key.

Publish rules
    * A node's desired manifest is the newest version of the manifest whose assignment
      selects it (:func:`accord.server.catalog.choose` breaks ties). It is addressed to the
      node, signed with every signing key (:func:`accord.signing.sign`) and written to
      ``fleet.desired.<node>``; a ``desired.published`` audit event follows.
    * A node already holding exactly that manifest text, signed by exactly the current keys,
      is left alone: re-running a publish is a no-op, and a key rotation re-signs everything.
    * A node that no assignment selects (any more) has its desired key deleted, announced as
      ``desired.withdrawn``: the control plane no longer asserts anything about it.
    * A version that cannot be signed for a node (it no longer validates against the server's
      kinds) leaves that node's key as it is and is reported in ``Outcome.failed``.
    * Publishing runs after every change that can alter the result: a new manifest version, an
      assignment set or removed (all nodes), a node enrolled or relabelled (that node).

Publish sequence
    Every envelope carries the node's publish sequence (:mod:`accord.signing`, Replay), which
    the agent orders by. The node's counter, ``fleet.sequence.<node>`` (decimal text; control
    plane only), is raised by one for *every* change of the node's desired key: a publish, a
    re-signing, a withdrawal. Raising it (compare-and-set) is taking a ticket; a new manifest
    text is signed with its ticket as its sequence, a re-signing of the same text (a key
    rotation) keeps the sequence it had, so that the agent takes it as a re-delivery; a
    withdrawal's ticket goes into no envelope. Withdrawal deletes only the desired key, never
    the counter, so a node selected again continues above everything it was ever sent. A ticket
    is ``max(counter, stored envelope's sequence) + 1``: a counter lost while the node has an
    envelope cannot take it backwards. Never delete ``fleet.sequence.<node>`` while the node's
    desired key is absent: its next publish would start again at 1 and be refused as
    ``replayed``.

    Why a counter key: the desired key is deleted on withdrawal, and with it the only record of
    the sequence (a tombstone in its place would be a value that every agent watches and has to
    understand). Why not the store's revision: revisions belong to one store; a fleet moved to
    another store (SQLite to NATS) would start them again low.

Concurrency
    One pass settles up to :data:`CONCURRENCY` nodes at once, each node by one task (nodes
    are independent; the outcome lists are sorted by node id). Requests (and control-plane
    replicas) may publish at once. A pass reads, in this order, the
    counters, the desired keys, then assignments, versions and nodes. A node's ticket is taken
    by compare-and-set against the counter read *first*, and its desired key is written by
    compare-and-set against the revision read second; losing either means someone changed the
    node since: re-read all of it (in the same order) and decide again. So:

    * a sequence is handed out once (the counter's compare-and-set), and never signed for two
      manifest texts; a ticket whose write then loses leaves a gap, which is harmless;
    * an update or delete that wins replaces exactly the value it decided on, and that value's
      writer took its ticket before writing it, so the new sequence is higher; the view, read
      after the key, was current for that node when the key was read;
    * a *create* cannot tell "still absent" from "absent again": between this publisher's read
      and its create, others may have published (perhaps a higher sequence, which the agent may
      have accepted already) and withdrawn, from a newer view. That withdrawal deleted what was
      written after this publisher read the key, so it took its ticket after that read, hence
      after this publisher read the counter, hence after this publisher's own ticket (else that
      compare-and-set would have failed); and a higher sequence is a later ticket anyway. So
      after a create the publisher reads the counter again; if it moved past its ticket, it
      decides again from fresh reads and does not trust its own envelope's sequence: it
      re-publishes under a new one (or withdraws, if the node should have nothing). Until
      then an agent may see the out-of-order envelope and refuse it as ``replayed``; the
      repair follows. (Before sequences, the same race could resurrect a withdrawn node from
      an older view; the re-check repairs that too.)

    Once the publishers are done, every node's desired key holds the newest view's decision,
    under the highest sequence ever written to it.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from accord import errors, signing
from accord.lifecycle.nodes import Node, list_nodes, node_key
from accord.model.manifest import Manifest
from accord.model.specs import Spec
from accord.server import audit, catalog
from accord.store import keys
from accord.store.base import Entry, Store

DESIRED = keys.desired_key("_")[:-1]  # "fleet.desired."
# Nodes settled at once: on NATS each is a few round trips, so one at a time would leave the
# connection idle (5,000 nodes took 16.6 s one by one, see docs/benchmarks.md). On SQLite the
# writes run inline, so this changes nothing there.
CONCURRENCY = 64
SEQUENCES = keys.sequence_key("_")[:-1]  # "fleet.sequence."


@dataclass
class Outcome:
    """What one publish pass did, per node id."""

    published: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # node → why it got nothing new


class _UnreadableCounter(errors.StoreError):
    """``fleet.sequence.<node>`` holds no sequence (edited by hand?): that node is not
    published to until it is repaired. Caught in ``_settle``; never leaves this module."""


@dataclass
class _View:
    """Assignments and the newest version of each assigned manifest, read once per pass."""

    assignments: list[catalog.Assignment]
    newest: dict[str, catalog.ManifestVersion | None]

    @classmethod
    async def read(cls, store: Store) -> _View:
        assigned = await catalog.assignments(store)
        return cls(
            assigned, {a.manifest: await catalog.latest(store, a.manifest) for a in assigned}
        )

    def target(self, node: Node) -> catalog.ManifestVersion | None:
        chosen = catalog.choose(self.assignments, node.labels)
        return None if chosen is None else self.newest[chosen.manifest]


@dataclass(frozen=True)
class _Read:
    """What a publisher decides one node from, read in this order: counter, desired, view."""

    node: Node
    counter: Entry | None
    entry: Entry | None  # the desired key
    view: _View

    @property
    def key(self) -> str:
        return keys.desired_key(self.node.id)

    @classmethod
    async def again(cls, store: Store, node_id: str) -> _Read | None:
        """A fresh read for one node (None if the node is gone)."""
        counter = await store.get(keys.sequence_key(node_id))
        entry = await store.get(keys.desired_key(node_id))
        view = await _View.read(store)
        found = await store.get(node_key(node_id))
        if found is None:
            return None
        return cls(Node.model_validate_json(found.value), counter, entry, view)


@dataclass
class Publisher:
    """Computes and writes desired state with one set of keys and kinds."""

    store: Store
    signing_keys: Sequence[signing.SigningKey]
    kinds: Mapping[str, type[Spec]]
    _typed: dict[tuple[str, int], Manifest] = field(default_factory=dict)

    async def run(self, *, initiator: str, only: Collection[str] | None = None) -> Outcome:
        """Bring ``fleet.desired.<node>`` up to date for every node (or those in ``only``)."""
        # In this order: see Concurrency in the module docstring.
        counters = {e.key: e for e in await self.store.list(SEQUENCES)}
        current = {e.key: e for e in await self.store.list(DESIRED)}
        view = await _View.read(self.store)
        outcome = Outcome()
        todo = iter([n for n in await list_nodes(self.store) if only is None or n.id in only])

        async def worker() -> None:
            for node in todo:  # shared: each node is taken by exactly one worker
                read = _Read(
                    node,
                    counters.get(keys.sequence_key(node.id)),
                    current.get(keys.desired_key(node.id)),
                    view,
                )
                await self._settle(read, initiator=initiator, outcome=outcome)

        async with asyncio.TaskGroup() as group:
            for _ in range(CONCURRENCY):
                group.create_task(worker())
        for names in (outcome.published, outcome.withdrawn, outcome.unchanged):
            names[:] = sorted(set(names))  # a node settled twice (see Concurrency): once
        return outcome

    async def _settle(self, read: _Read, *, initiator: str, outcome: Outcome) -> None:
        suspect: int | None = None  # the revision of our own create, if it may be out of order
        while True:
            node, entry = read.node, read.entry
            target = read.view.target(node)
            stored = _stored(entry)
            try:
                if target is None:
                    if entry is None:
                        outcome.unchanged.append(node.id)
                    else:
                        # The ticket keeps the counter ahead; a node selected again continues.
                        await self._ticket(read, stored)
                        await self.store.delete(read.key, expected_revision=entry.revision)
                        await audit.record(
                            self.store,
                            audit.DESIRED_WITHDRAWN,
                            f"{node.id}:{entry.revision}",
                            initiator=initiator,
                            node=node.id,
                            labels=node.labels,
                            sequence=None if stored is None else stored.sequence,
                        )
                        outcome.withdrawn.append(node.id)
                    return
                try:
                    manifest = self._typed_manifest(target)
                except errors.InputError as exc:
                    # E.g. a version using a kind this server no longer serves: this node keeps
                    # what it has, the others still get theirs, and the caller is told.
                    outcome.failed[node.id] = str(exc)
                    return
                text = signing.canonical_bytes(manifest).decode("utf-8")
                # The same text again keeps its sequence, unless it is our own suspect create.
                same = stored if stored is not None and stored.manifest == text else None
                if same is not None and entry is not None and entry.revision == suspect:
                    same = None
                if same is not None and _key_ids(same) == self._signer_ids():
                    outcome.unchanged.append(node.id)
                    return
                ticket = await self._ticket(read, stored)
                sequence = ticket if same is None else same.sequence  # re-signed: a re-delivery
                try:
                    envelope = signing.sign(manifest, node.id, self.signing_keys, sequence=sequence)
                except errors.InputError as exc:  # a node id or sequence that cannot be signed
                    outcome.failed[node.id] = str(exc)
                    return
                value = envelope.model_dump_json().encode()
                if entry is None:
                    revision = await self.store.create(read.key, value)
                else:
                    revision = await self.store.update(
                        read.key, value, expected_revision=entry.revision
                    )
            except _UnreadableCounter as exc:
                outcome.failed[node.id] = str(exc)
                return
            except errors.ConflictError:
                # Someone changed this node since we looked: look again, decide again.
                fresh = await _Read.again(self.store, node.id)
                if fresh is None:
                    return  # the node is gone
                read = fresh
                continue
            await audit.record(
                self.store,
                audit.DESIRED_PUBLISHED,
                f"{node.id}:{revision}",
                initiator=initiator,
                node=node.id,
                labels=node.labels,
                manifest=target.name,
                generation=target.generation,
                sequence=envelope.sequence,
            )
            outcome.published.append(node.id)
            if entry is None and await self._moved_past(node.id, ticket):
                # Perhaps published and withdrawn meanwhile (see Concurrency): decide again,
                # and do not trust our envelope's sequence.
                suspect = revision
                fresh = await _Read.again(self.store, node.id)
                if fresh is None:
                    return
                read = fresh
                continue
            return

    async def _ticket(self, read: _Read, stored: signing.SignedManifest | None) -> int:
        """Raise the node's counter by compare-and-set against the value ``read`` saw.

        Raises:
            ConflictError: the counter moved since: someone else changed this node.
        """
        floor = 0 if stored is None else stored.sequence
        ticket = max(_counter_value(read.counter), floor) + 1
        value = str(ticket).encode("ascii")
        key = keys.sequence_key(read.node.id)
        if read.counter is None:
            await self.store.create(key, value)
        else:
            await self.store.update(key, value, expected_revision=read.counter.revision)
        return ticket

    async def _moved_past(self, node: str, ticket: int) -> bool:
        """Whether another ticket was taken for ``node`` after ``ticket`` (or the counter is
        unreadable now: then the next decision reports it)."""
        try:
            return _counter_value(await self.store.get(keys.sequence_key(node))) != ticket
        except _UnreadableCounter:
            return True

    def _signer_ids(self) -> builtins.set[str]:
        return {key.key_id for key in self.signing_keys}

    def _typed_manifest(self, version: catalog.ManifestVersion) -> Manifest:
        which = (version.name, version.generation)
        if which not in self._typed:
            self._typed[which] = version.typed(self.kinds)
        return self._typed[which]


def _stored(entry: Entry | None) -> signing.SignedManifest | None:
    """The envelope in a desired key; None if absent or unreadable (then it is replaced)."""
    if entry is None:
        return None
    try:
        return signing.load_envelope(entry.value)
    except signing.SignatureError:
        return None


def _counter_value(entry: Entry | None) -> int:
    if entry is None:
        return 0
    text = entry.value.decode("ascii", errors="replace")
    if not text.isascii() or not text.isdigit() or len(text) > 16:
        raise _UnreadableCounter(f"{entry.key} holds {text[:40]!r}, not a publish sequence")
    return int(text)


def _key_ids(envelope: signing.SignedManifest) -> builtins.set[str]:
    return {s.key_id for s in envelope.signatures}


async def desired(store: Store, node: str) -> signing.SignedManifest | None:
    """The envelope published for ``node``, if any."""
    entry = await store.get(keys.desired_key(node))
    return None if entry is None else signing.load_envelope(entry.value)
