"""Publish sequences on a real SQLite store: a node reassigned to a manifest with a lower
generation still moves forward, old envelopes stay refused, withdrawal does not reset the
sequence, and concurrent publishers never hand out a sequence twice.

The publisher runs in-process (:class:`accord.server.publish.Publisher`); what an agent would
make of each envelope is checked with the agent's own check, :meth:`TrustStore.verify`, fed
the ``Accepted`` it returned last, as :mod:`accord.agent.loop` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from accord import signing
from accord.lifecycle import events
from accord.lifecycle.definition import default_lifecycle
from accord.lifecycle.nodes import add_node, set_labels
from accord.providers import registry
from accord.server import audit, catalog
from accord.server.publish import Publisher
from accord.store import Op, Store, keys, open_store
from helpers import build_manifest, file

KINDS = registry.default().kinds()
NODE = "edge-1"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fleet.db'}"


@pytest.fixture
async def store(url: str) -> AsyncIterator[Store]:
    opened = await open_store(url)
    yield opened
    await opened.close()


@pytest.fixture(scope="module")
def key() -> signing.SigningKey:
    return signing.SigningKey.generate()


async def new_version(store: Store, name: str, content: str) -> int:
    manifest = build_manifest([file("f", f"etc/{name}", content)], name=name)
    version, created = await catalog.publish(store, manifest, by="test")
    assert created
    return version.generation


async def assign(store: Store, name: str, selector: dict[str, str]) -> None:
    await catalog.assign(
        store, catalog.Assignment(manifest=name, selector=selector, assigned_by="test")
    )


async def desired(store: Store, node: str = NODE) -> signing.SignedManifest | None:
    entry = await store.get(keys.desired_key(node))
    return None if entry is None else signing.load_envelope(entry.value)


class Agent:
    """What a node's agent keeps between envelopes: its pinned keys and its last Accepted."""

    def __init__(self, *keys: signing.SigningKey, node: str = NODE) -> None:
        self.trust = signing.TrustStore(k.verify_key for k in keys)
        self.node = node
        self.last: signing.Accepted | None = None

    def offer(self, envelope: signing.SignedManifest) -> signing.Verified:
        verified = self.trust.verify(envelope, node=self.node, kinds=KINDS, last=self.last)
        self.last = verified.accepted
        return verified

    def refuses(self, envelope: signing.SignedManifest) -> signing.SignatureError:
        with pytest.raises(signing.SignatureError) as info:
            self.trust.verify(envelope, node=self.node, kinds=KINDS, last=self.last)
        return info.value


async def test_a_reassigned_node_moves_forward_and_old_envelopes_stay_refused(
    store: Store, key: signing.SigningKey
) -> None:
    publisher = Publisher(store, [key], KINDS)
    agent = Agent(key)
    await add_node(store, NODE, default_lifecycle(), labels={"role": "big"})
    await assign(store, "big", {"role": "big"})
    await assign(store, "small", {"role": "small"})

    big: list[signing.SignedManifest] = []
    for content in ("one", "two", "three"):  # big: generations 1, 2, 3
        await new_version(store, "big", content)
        assert (await publisher.run(initiator="test")).published == [NODE]
        envelope = await desired(store)
        assert envelope is not None
        assert agent.offer(envelope).manifest.metadata.name == "big"
        big.append(envelope)
    assert [e.sequence for e in big] == [1, 2, 3]
    assert agent.last is not None and agent.last.generation == 3

    # Reassigned to small, generation 1: lower than big's 3, yet accepted.
    assert await new_version(store, "small", "tiny") == 1
    await set_labels(store, NODE, {"role": "small"})
    assert (await publisher.run(initiator="test", only=[NODE])).published == [NODE]
    small = await desired(store)
    assert small is not None and small.sequence == 4
    verified = agent.offer(small)
    assert (verified.manifest.metadata.name, verified.accepted.generation) == ("small", 1)

    # Every one of big's envelopes, validly signed, is a replay now.
    for old in big:
        refused = agent.refuses(old)
        assert refused.reason is signing.Reason.REPLAYED
        assert f"sequence {old.sequence} (big generation" in str(refused)

    # Withdrawn (no assignment selects the node), then selected again.
    await catalog.unassign(store, "small")
    assert (await publisher.run(initiator="test")).withdrawn == [NODE]
    assert await desired(store) is None
    counter = await store.get(keys.sequence_key(NODE))
    assert counter is not None and counter.value == b"5"  # the withdrawal took a ticket too
    await assign(store, "small", {"role": "small"})
    assert (await publisher.run(initiator="test")).published == [NODE]
    again = await desired(store)
    assert again is not None and again.sequence == 6
    assert again.manifest == small.manifest  # the same text, a new publish
    assert agent.offer(again).accepted.sequence == 6
    for old in (*big, small):
        assert agent.refuses(old).reason is signing.Reason.REPLAYED

    # Back to big: a new text gets the next sequence whatever its generation.
    await set_labels(store, NODE, {"role": "big"})
    await publisher.run(initiator="test")
    back = await desired(store)
    assert back is not None and back.sequence == 7 and back.manifest == big[-1].manifest
    assert agent.offer(back).accepted.generation == 3

    published = [
        e.data["sequence"]
        for _, e in await events.read(store)
        if e.type == audit.DESIRED_PUBLISHED and e.node == NODE
    ]
    assert published == [1, 2, 3, 4, 6, 7]


async def test_an_unchanged_publish_keeps_its_sequence_and_a_rotation_re_signs_with_it(
    store: Store, key: signing.SigningKey
) -> None:
    new = signing.SigningKey.generate()
    await add_node(store, NODE, default_lifecycle())
    await new_version(store, "m", "one")
    await assign(store, "m", {})
    await Publisher(store, [key], KINDS).run(initiator="test")
    first = await desired(store)
    assert first is not None and first.sequence == 1

    again = await Publisher(store, [key], KINDS).run(initiator="test")
    assert again.unchanged == [NODE] and again.published == []
    counter = await store.get(keys.sequence_key(NODE))
    assert counter is not None and counter.value == b"1"  # nothing new: nothing handed out

    # A rotation re-signs the same text: same sequence, so the agent takes it as re-delivery.
    agent = Agent(key, new)
    agent.offer(first)
    assert (await Publisher(store, [key, new], KINDS).run(initiator="test")).published == [NODE]
    rotated = await desired(store)
    assert rotated is not None and rotated.sequence == 1 and rotated.manifest == first.manifest
    counter = await store.get(keys.sequence_key(NODE))
    assert counter is not None and counter.value == b"2"  # a ticket, not a new sequence
    assert {s.key_id for s in rotated.signatures} == {key.key_id, new.key_id}
    assert set(agent.offer(rotated).key_ids) == {key.key_id, new.key_id}


async def test_a_lost_counter_cannot_take_a_node_backwards_and_a_bad_one_stops_it(
    store: Store, key: signing.SigningKey
) -> None:
    publisher = Publisher(store, [key], KINDS)
    await add_node(store, NODE, default_lifecycle())
    await assign(store, "m", {})
    for content in ("one", "two", "three"):
        await new_version(store, "m", content)
        await publisher.run(initiator="test")
    await store.delete(keys.sequence_key(NODE))  # e.g. deleted by hand
    await new_version(store, "m", "four")
    await publisher.run(initiator="test")
    current = await desired(store)
    assert current is not None and current.sequence == 4  # above the envelope it replaced

    await store.put(keys.sequence_key(NODE), b"not a number")
    await new_version(store, "m", "five")
    outcome = await publisher.run(initiator="test")
    assert outcome.published == [] and "not a publish sequence" in outcome.failed[NODE]
    assert await desired(store) == current  # the node keeps what it has


async def test_concurrent_publishers_never_reuse_a_sequence_and_agents_end_on_the_last(
    url: str, store: Store, key: signing.SigningKey
) -> None:
    """Several publishers (threads, each with its own store connection, as replicas would be)
    publish new versions while another withdraws and reassigns. A watch sees every envelope
    written, in order, as the agents would; each is offered to that node's agent."""
    writers, rounds, nodes = 4, 16, (NODE, "edge-2")
    for node in nodes:
        await add_node(store, node, default_lifecycle(), labels={"site": "a"})
    await new_version(store, "a", "start")
    await assign(store, "a", {"site": "a"})

    async def writer(index: int) -> None:
        own = await open_store(url)
        try:
            publisher = Publisher(own, [key], KINDS)
            for turn in range(rounds):
                await new_version(own, "a", f"writer {index}, turn {turn}")
                await publisher.run(initiator=f"writer-{index}")
        finally:
            await own.close()

    async def toggler() -> None:
        own = await open_store(url)
        try:
            publisher = Publisher(own, [key], KINDS)
            for turn in range(rounds):
                if turn % 2 == 0:
                    await catalog.unassign(own, "a")
                else:
                    await assign(own, "a", {"site": "a"})
                await publisher.run(initiator="toggler")
        finally:
            await own.close()

    seen: dict[str, list[signing.SignedManifest]] = {node: [] for node in nodes}
    end = keys.desired_key("zz-end")  # not a node: marks the end of the writes
    done = asyncio.Event()

    async def watch() -> None:
        async for event in store.watch(keys.desired_key("_")[:-1]):
            if event.key == end:
                done.set()
            elif event.op is Op.PUT and event.value is not None:
                envelope = signing.load_envelope(event.value)
                seen[envelope.node].append(envelope)

    watcher = asyncio.create_task(watch())
    try:
        work = [writer(i) for i in range(writers)] + [toggler()]
        await asyncio.gather(*(asyncio.to_thread(asyncio.run, w) for w in work))
        await assign(store, "a", {"site": "a"})  # end assigned, and published
        await Publisher(store, [key], KINDS).run(initiator="test")
        await store.put(end, b"")
        await asyncio.wait_for(done.wait(), 10)
    finally:
        watcher.cancel()

    newest = await catalog.latest(store, "a")
    assert newest is not None
    for node in nodes:
        envelopes = seen[node]
        assert len(envelopes) > 2, "nothing to compare"
        texts: dict[int, str] = {}
        for envelope in envelopes:  # a sequence is never signed for two manifest texts
            assert texts.setdefault(envelope.sequence, envelope.manifest) == envelope.manifest
        agent = Agent(key, node=node)
        for envelope in envelopes:  # in the order they were written
            try:
                agent.offer(envelope)
            except signing.SignatureError as refused:
                # Only a create that lost a publish and a withdrawal to others lands out of
                # order; the agent refuses it, and the repair follows (see publish.py).
                assert refused.reason is signing.Reason.REPLAYED
        final = await desired(store, node)
        assert final is not None
        assert final.sequence == max(texts)
        assert agent.last == signing.Accepted(
            sequence=final.sequence, generation=newest.generation, digest=final.digest
        )
        counter = await store.get(keys.sequence_key(node))
        assert counter is not None and final.sequence <= int(counter.value)


class Paused:
    """A store whose first create of ``key`` waits until released: a publisher caught between
    taking its sequence and writing, while others publish and withdraw."""

    def __init__(self, store: Store, key: str) -> None:
        self._store, self._key = store, key
        self.waiting, self.release = asyncio.Event(), asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def create(self, key: str, value: bytes) -> int:
        if key == self._key and not self.release.is_set():
            self.waiting.set()
            await self.release.wait()
        return await self._store.create(key, value)


@pytest.mark.parametrize("then", ["withdrawn", "reassigned"])
async def test_a_create_that_lost_a_publish_and_a_withdrawal_meanwhile_is_repaired(
    store: Store, key: signing.SigningKey, then: str
) -> None:
    """A reads 'no desired state', takes a sequence, and stalls; B publishes a higher sequence,
    which the agent accepts; T withdraws. A's create then succeeds (the key is absent again),
    with a lower sequence and an older view. The publisher must notice and settle again."""
    await add_node(store, NODE, default_lifecycle())
    await new_version(store, "m", "one")
    await assign(store, "m", {})
    paused = Paused(store, keys.desired_key(NODE))
    stalled = asyncio.create_task(Publisher(paused, [key], KINDS).run(initiator="a"))  # type: ignore[arg-type]
    await asyncio.wait_for(paused.waiting.wait(), 5)

    agent = Agent(key)
    await Publisher(store, [key], KINDS).run(initiator="b")
    published = await desired(store)
    assert published is not None
    agent.offer(published)
    await catalog.unassign(store, "m")
    assert (await Publisher(store, [key], KINDS).run(initiator="t")).withdrawn == [NODE]
    if then == "reassigned":
        await assign(store, "m", {})  # (no publish pass: the stalled one is the last to run)

    paused.release.set()
    await asyncio.wait_for(stalled, 5)
    final = await desired(store)
    if then == "withdrawn":
        assert final is None  # not resurrected from A's older view
    else:
        assert final is not None and final.sequence > published.sequence
        assert agent.offer(final).manifest.metadata.name == "m"
