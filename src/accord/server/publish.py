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

Concurrency
    One pass settles up to :data:`CONCURRENCY` nodes at once; each node is settled by one task,
    and the outcome lists are sorted by node id. Requests (and control-plane replicas) may
    publish at once. Each node's key is written with
    compare-and-set against the revision read at the start, and that read comes *before* the
    reads of assignments, versions and nodes. So a publisher working from an older view either
    finds the key unchanged since (its view was current for that node when it read the key) or
    loses the compare-and-set, re-reads, and decides again: an older generation never replaces
    a newer one.
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


@dataclass
class Outcome:
    """What one publish pass did, per node id."""

    published: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # node → why it got nothing new


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


@dataclass
class Publisher:
    """Computes and writes desired state with one set of keys and kinds."""

    store: Store
    signing_keys: Sequence[signing.SigningKey]
    kinds: Mapping[str, type[Spec]]
    _typed: dict[tuple[str, int], Manifest] = field(default_factory=dict)

    async def run(self, *, initiator: str, only: Collection[str] | None = None) -> Outcome:
        """Bring ``fleet.desired.<node>`` up to date for every node (or those in ``only``)."""
        current = {e.key: e for e in await self.store.list(DESIRED)}  # first: see the docstring
        view = await _View.read(self.store)
        outcome = Outcome()
        todo = iter([n for n in await list_nodes(self.store) if only is None or n.id in only])

        async def worker() -> None:
            for node in todo:  # shared: each node is taken by exactly one worker
                entry = current.get(keys.desired_key(node.id))
                await self._settle(node, entry, view, initiator=initiator, outcome=outcome)

        async with asyncio.TaskGroup() as group:
            for _ in range(CONCURRENCY):
                group.create_task(worker())
        for names in (outcome.published, outcome.withdrawn, outcome.unchanged):
            names.sort()
        return outcome

    async def _settle(
        self, node: Node, entry: Entry | None, view: _View, *, initiator: str, outcome: Outcome
    ) -> None:
        key = keys.desired_key(node.id)
        while True:
            target = view.target(node)
            try:
                if target is None:
                    if entry is None:
                        outcome.unchanged.append(node.id)
                    else:
                        await self.store.delete(key, expected_revision=entry.revision)
                        await audit.record(
                            self.store,
                            audit.DESIRED_WITHDRAWN,
                            f"{node.id}:{entry.revision}",
                            initiator=initiator,
                            node=node.id,
                            labels=node.labels,
                        )
                        outcome.withdrawn.append(node.id)
                    return
                try:
                    envelope = self._envelope(target, node.id)
                except errors.InputError as exc:
                    # E.g. a version using a kind this server no longer serves: this node keeps
                    # what it has, the others still get theirs, and the caller is told.
                    outcome.failed[node.id] = str(exc)
                    return
                if entry is not None and self._same(entry, envelope):
                    outcome.unchanged.append(node.id)
                    return
                value = envelope.model_dump_json().encode()
                if entry is None:
                    revision = await self.store.create(key, value)
                else:
                    revision = await self.store.update(key, value, expected_revision=entry.revision)
            except errors.ConflictError:
                # Someone published for this node since we looked: look again, decide again.
                entry = await self.store.get(key)
                view = await _View.read(self.store)
                found = await self.store.get(node_key(node.id))
                if found is None:
                    return  # the node is gone
                node = Node.model_validate_json(found.value)
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
            )
            outcome.published.append(node.id)
            return

    def _envelope(self, version: catalog.ManifestVersion, node: str) -> signing.SignedManifest:
        which = (version.name, version.generation)
        if which not in self._typed:
            self._typed[which] = version.typed(self.kinds)
        return signing.sign(self._typed[which], node, self.signing_keys)

    def _same(self, entry: Entry, envelope: signing.SignedManifest) -> bool:
        """Whether the stored envelope carries the same manifest text, signed by the same keys."""
        try:
            stored = signing.load_envelope(entry.value)
        except signing.SignatureError:
            return False  # unreadable: replace it
        return stored.manifest == envelope.manifest and _key_ids(stored) == _key_ids(envelope)


def _key_ids(envelope: signing.SignedManifest) -> builtins.set[str]:
    return {s.key_id for s in envelope.signatures}


async def desired(store: Store, node: str) -> signing.SignedManifest | None:
    """The envelope published for ``node``, if any."""
    entry = await store.get(keys.desired_key(node))
    return None if entry is None else signing.load_envelope(entry.value)
