"""The store contract: the tests that every :class:`accord.store.base.Store` backend must pass.

A backend earns its place by subclassing :class:`StoreContract` in its test module and giving
the class a ``store`` fixture that yields a fresh, empty, open store and closes it afterwards::

    class TestNatsStore(StoreContract):
        @pytest.fixture
        async def store(self, nats_url: str) -> AsyncIterator[Store]:
            store = await open_store(nats_url)  # skip loudly if the server is missing
            yield store
            await store.close()

The tests use nothing but the public protocol, so they run unchanged over every backend. They
pin what :mod:`accord.store.base` promises and a few choices it leaves open:

* ``update`` of a missing key and ``delete`` with ``expected_revision`` of a missing key raise
  ``ConflictError`` (the caller's view of the key is stale), as JetStream does;
* ``list`` is sorted by key; ``watch`` sends its initial values in no particular order;
* blob digests are 64 lowercase hex digits, anything else is an ``InputError``; ``get_blob``
  creates the destination's parent directories; a ``put_blob`` source that cannot be read is
  an ``InputError``;
* ``read(limit=0)`` returns nothing; ``close`` is idempotent, ends every open watch, and any
  later call raises ``StoreError``.

:func:`watching` and :func:`next_event` are exported for backend-specific tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from accord import errors
from accord.store import base
from accord.store.base import Entry, Op, Store, WatchEvent

EVENT_TIMEOUT = 5.0
"""Seconds a test waits for one watch event before it fails."""

BAD_KEYS = ["", ".", ".a", "a.", "a b", "a*", "a>", "a:b", "a\\b", "ü", "a\tb"]
GOOD_KEYS = ["a", "-", "=", "_", "a.b", "a/b/c", "A-Z_0=9", "nodes/n1/desired.v2"]

_KEY_OPERATIONS: dict[str, Callable[[Store, str], Awaitable[object]]] = {
    "get": lambda store, key: store.get(key),
    "create": lambda store, key: store.create(key, b"v"),
    "update": lambda store, key: store.update(key, b"v", expected_revision=1),
    "put": lambda store, key: store.put(key, b"v"),
    "delete": lambda store, key: store.delete(key),
}


async def next_event(events: AsyncIterator[WatchEvent]) -> WatchEvent:
    """The next event of a watch, or ``TimeoutError`` after :data:`EVENT_TIMEOUT` seconds."""
    return await asyncio.wait_for(anext(events), EVENT_TIMEOUT)


@contextlib.asynccontextmanager
async def watching(
    store: Store, prefix: str = "", *, exact: bool = False
) -> AsyncIterator[AsyncIterator[WatchEvent]]:
    """``store.watch(prefix, exact=exact)``, closed on exit even if the test fails."""
    events = store.watch(prefix, exact=exact)
    try:
        yield events
    finally:
        if isinstance(events, AsyncGenerator):
            await events.aclose()


async def initial_values(events: AsyncIterator[WatchEvent]) -> dict[str, WatchEvent]:
    """Consume a watch up to its ``READY`` marker; return the initial values by key."""
    initial: dict[str, WatchEvent] = {}
    while (event := await next_event(events)).op is not Op.READY:
        assert event.op is Op.PUT, f"only puts come before READY, got {event}"
        assert event.key not in initial, f"{event.key} sent twice before READY"
        initial[event.key] = event
    assert event.value is None
    return initial


class StoreContract:
    """Every backend's test class inherits these tests and provides a ``store`` fixture."""

    # Shape

    async def test_conforms_to_the_protocol(self, store: Store) -> None:
        assert isinstance(store, Store)
        assert "://" in store.url

    # KV: get, create, update, put, delete

    async def test_get_of_a_missing_key_is_none(self, store: Store) -> None:
        assert await store.get("missing") is None

    async def test_create_then_get(self, store: Store) -> None:
        revision = await store.create("a", b"one")
        assert await store.get("a") == Entry("a", b"one", revision)

    async def test_create_of_an_existing_key_conflicts(self, store: Store) -> None:
        revision = await store.create("a", b"one")
        with pytest.raises(errors.ConflictError):
            await store.create("a", b"two")
        assert await store.get("a") == Entry("a", b"one", revision)

    async def test_create_after_delete_succeeds(self, store: Store) -> None:
        await store.create("a", b"one")
        await store.delete("a")
        revision = await store.create("a", b"two")
        assert await store.get("a") == Entry("a", b"two", revision)

    async def test_update_with_the_current_revision(self, store: Store) -> None:
        first = await store.create("a", b"one")
        second = await store.update("a", b"two", expected_revision=first)
        assert second > first
        assert await store.get("a") == Entry("a", b"two", second)

    async def test_update_with_a_stale_revision_conflicts(self, store: Store) -> None:
        first = await store.create("a", b"one")
        second = await store.update("a", b"two", expected_revision=first)
        with pytest.raises(errors.ConflictError):
            await store.update("a", b"three", expected_revision=first)
        assert await store.get("a") == Entry("a", b"two", second)

    async def test_update_of_a_missing_key_conflicts(self, store: Store) -> None:
        revision = await store.put("other", b"x")
        with pytest.raises(errors.ConflictError):
            await store.update("a", b"one", expected_revision=revision)
        assert await store.get("a") is None

    async def test_put_creates_and_overwrites(self, store: Store) -> None:
        first = await store.put("a", b"one")
        assert await store.get("a") == Entry("a", b"one", first)
        second = await store.put("a", b"two")
        assert second > first
        assert await store.get("a") == Entry("a", b"two", second)

    async def test_values_are_bytes_of_any_content(self, store: Store) -> None:
        empty = await store.put("empty", b"")
        binary = await store.put("binary", bytes(range(256)))
        assert await store.get("empty") == Entry("empty", b"", empty)
        assert await store.get("binary") == Entry("binary", bytes(range(256)), binary)

    async def test_delete_removes_the_key(self, store: Store) -> None:
        await store.put("a", b"one")
        await store.delete("a")
        assert await store.get("a") is None
        assert await store.list() == []

    async def test_delete_of_a_missing_key_is_a_noop(self, store: Store) -> None:
        await store.delete("missing")
        assert await store.get("missing") is None

    async def test_delete_with_the_current_revision(self, store: Store) -> None:
        revision = await store.put("a", b"one")
        await store.delete("a", expected_revision=revision)
        assert await store.get("a") is None

    async def test_delete_with_a_stale_revision_conflicts(self, store: Store) -> None:
        first = await store.put("a", b"one")
        second = await store.put("a", b"two")
        with pytest.raises(errors.ConflictError):
            await store.delete("a", expected_revision=first)
        assert await store.get("a") == Entry("a", b"two", second)

    async def test_delete_with_a_revision_of_a_missing_key_conflicts(self, store: Store) -> None:
        revision = await store.put("a", b"one")
        await store.delete("a")
        with pytest.raises(errors.ConflictError):
            await store.delete("a", expected_revision=revision)

    async def test_revisions_strictly_increase_across_keys(self, store: Store) -> None:
        revisions = [
            await store.put("a", b"1"),
            await store.create("b", b"2"),
            await store.put("c", b"3"),
        ]
        revisions.append(await store.update("a", b"4", expected_revision=revisions[0]))
        await store.delete("b")
        revisions.append(await store.put("b", b"5"))
        assert revisions == sorted(set(revisions)), f"not strictly increasing: {revisions}"
        assert [entry.revision for entry in await store.list()] == [
            revisions[3],
            revisions[4],
            revisions[2],
        ]

    # KV: list

    async def test_list_by_prefix_is_sorted_by_key(self, store: Store) -> None:
        for key in ["a/3", "b/1", "a/1", "ab/1", "a/2/x", "a/2"]:
            await store.put(key, key.encode())
        await store.put("a/gone", b"x")
        await store.delete("a/gone")
        listed = await store.list("a/")
        assert [entry.key for entry in listed] == ["a/1", "a/2", "a/2/x", "a/3"]
        assert listed == [await store.get(entry.key) for entry in listed]
        assert [entry.value for entry in listed] == [b"a/1", b"a/2", b"a/2/x", b"a/3"]

    async def test_list_without_prefix_lists_everything(self, store: Store) -> None:
        for key in ["c", "a", "b/1"]:
            await store.put(key, b"")
        assert [entry.key for entry in await store.list()] == ["a", "b/1", "c"]

    async def test_list_prefix_is_literal(self, store: Store) -> None:
        # "_" and "." are key characters; a backend must not treat them as wildcards.
        for key in ["a_b/1", "aXb/1", "a.b/1", "aYb/1"]:
            await store.put(key, b"")
        assert [entry.key for entry in await store.list("a_b/")] == ["a_b/1"]
        assert [entry.key for entry in await store.list("a.b/")] == ["a.b/1"]
        assert await store.list("nothing/") == []

    # KV: validation

    @pytest.mark.parametrize("operation", list(_KEY_OPERATIONS))
    @pytest.mark.parametrize("key", BAD_KEYS)
    async def test_invalid_keys_are_rejected(self, store: Store, operation: str, key: str) -> None:
        with pytest.raises(errors.InputError):
            await _KEY_OPERATIONS[operation](store, key)
        assert await store.list() == []

    async def test_a_key_with_a_trailing_newline_is_rejected(self, store: Store) -> None:
        with pytest.raises(errors.InputError):
            await store.put("a\n", b"v")

    @pytest.mark.parametrize("key", GOOD_KEYS)
    async def test_valid_keys_round_trip(self, store: Store, key: str) -> None:
        revision = await store.put(key, b"v")
        assert await store.get(key) == Entry(key, b"v", revision)
        assert [entry.key for entry in await store.list()] == [key]

    async def test_values_up_to_the_limit_are_accepted(self, store: Store) -> None:
        value = b"x" * base.MAX_VALUE_BYTES
        revision = await store.create("big", value)
        revision = await store.update("big", value, expected_revision=revision)
        assert await store.get("big") == Entry("big", value, revision)

    async def test_values_over_the_limit_are_rejected(self, store: Store) -> None:
        value = b"x" * (base.MAX_VALUE_BYTES + 1)
        revision = await store.put("small", b"s")
        with pytest.raises(errors.InputError):
            await store.put("big", value)
        with pytest.raises(errors.InputError):
            await store.create("big", value)
        with pytest.raises(errors.InputError):
            await store.update("small", value, expected_revision=revision)
        assert await store.list() == [Entry("small", b"s", revision)]

    # KV: watch

    async def test_watch_of_an_empty_prefix_starts_with_ready(self, store: Store) -> None:
        await store.put("elsewhere", b"x")
        async with watching(store, "nothing/") as events:
            assert await initial_values(events) == {}

    async def test_watch_sends_initial_values_then_ready(self, store: Store) -> None:
        one = await store.put("a/1", b"one")
        two = await store.put("a/2", b"two")
        await store.put("b/1", b"other")
        await store.put("a/3", b"gone")
        await store.delete("a/3")
        async with watching(store, "a/") as events:
            assert await initial_values(events) == {
                "a/1": WatchEvent(Op.PUT, "a/1", b"one", one),
                "a/2": WatchEvent(Op.PUT, "a/2", b"two", two),
            }

    async def test_watch_sends_live_puts_and_deletes(self, store: Store) -> None:
        first = await store.put("a/1", b"one")
        async with watching(store, "a/") as events:
            await initial_values(events)
            second = await store.put("a/1", b"two")
            await store.put("b/1", b"not watched")
            third = await store.create("a/2", b"three")
            await store.delete("a/1")
            assert await next_event(events) == WatchEvent(Op.PUT, "a/1", b"two", second)
            assert await next_event(events) == WatchEvent(Op.PUT, "a/2", b"three", third)
            deleted = await next_event(events)
            assert (deleted.op, deleted.key, deleted.value) == (Op.DELETE, "a/1", None)
            assert deleted.revision > third > second > first

    async def test_an_exact_watch_sees_only_its_key(self, store: Store) -> None:
        await store.put("node.1", b"mine")
        await store.put("node.10", b"a longer key with my key as prefix")
        await store.put("node.1.sub", b"a key below mine")
        async with watching(store, "node.1", exact=True) as events:
            assert list(await initial_values(events)) == ["node.1"]
            await store.put("node.10", b"not mine")
            await store.put("node.1.sub", b"not mine either")
            mine = await store.put("node.1", b"new")
            assert await next_event(events) == WatchEvent(Op.PUT, "node.1", b"new", mine)
            await store.delete("node.1")
            deleted = await next_event(events)
            assert (deleted.op, deleted.key) == (Op.DELETE, "node.1")

    async def test_an_exact_watch_of_a_missing_key_starts_empty(self, store: Store) -> None:
        await store.put("node.10", b"not mine")
        async with watching(store, "node.1", exact=True) as events:
            assert await initial_values(events) == {}
            created = await store.create("node.1", b"born")
            assert await next_event(events) == WatchEvent(Op.PUT, "node.1", b"born", created)

    async def test_an_exact_watch_needs_a_valid_key(self, store: Store) -> None:
        async with watching(store, "node.", exact=True) as events:
            with pytest.raises(errors.InputError, match="node"):
                await anext(events)

    async def test_a_watch_cancelled_right_after_a_write_ends(self, store: Store) -> None:
        """Cancelling a consumer must end its watch even when a write just woke it."""

        async def consume() -> None:
            async for _ in store.watch("k."):
                pass

        for i in range(50):
            task = asyncio.create_task(consume())
            await asyncio.sleep(0.001)
            await store.put(f"k.{i}", b"v")
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5)
            assert done, f"the watch did not end after cancel (round {i})"

    async def test_watches_are_independent(self, store: Store) -> None:
        async with watching(store, "a/") as a_events, watching(store, "b/") as b_events:
            await initial_values(a_events)
            await initial_values(b_events)
            a_revision = await store.put("a/1", b"a")
            b_revision = await store.put("b/1", b"b")
            assert await next_event(b_events) == WatchEvent(Op.PUT, "b/1", b"b", b_revision)
            assert await next_event(a_events) == WatchEvent(Op.PUT, "a/1", b"a", a_revision)

    async def test_watch_has_no_gaps_under_a_burst(self, store: Store) -> None:
        expected: list[tuple[Op, str, bytes | None, int | None]] = []

        async def write() -> None:
            for i in range(200):
                if i % 10 == 9:
                    key = f"burst/{(i - 1) % 7}"  # written by the previous step, so it exists
                    await store.delete(key)
                    expected.append((Op.DELETE, key, None, None))
                else:
                    key, value = f"burst/{i % 7}", str(i).encode()
                    expected.append((Op.PUT, key, value, await store.put(key, value)))
                if i % 3 == 0:
                    await store.put(f"other/{i}", b"not watched")
                if i % 5 == 0:
                    await asyncio.sleep(0)  # let the watch run while the burst goes on

        async with watching(store, "burst/") as events:
            await initial_values(events)
            writer = asyncio.create_task(write())
            seen = [await next_event(events) for _ in range(200)]
            await writer
        assert [(e.op, e.key, e.value) for e in seen] == [(op, k, v) for op, k, v, _ in expected]
        for event, (_, _, _, revision) in zip(seen, expected, strict=True):
            assert revision is None or event.revision == revision
        revisions = [event.revision for event in seen]
        assert revisions == sorted(set(revisions)), "revisions out of order or repeated"

    # Event log

    async def test_append_and_read_in_order(self, store: Store) -> None:
        before = time.time()
        seqs = [await store.append("journal", data) for data in [b"one", b"", b"three"]]
        records = await store.read("journal")
        assert [(r.stream, r.seq, r.data) for r in records] == [
            ("journal", seqs[0], b"one"),
            ("journal", seqs[1], b""),
            ("journal", seqs[2], b"three"),
        ]
        assert seqs == sorted(set(seqs))
        assert all(before - 5 <= r.time <= time.time() + 5 for r in records)

    async def test_read_resumes_after_a_sequence(self, store: Store) -> None:
        seqs = [await store.append("journal", str(i).encode()) for i in range(5)]
        assert [r.data for r in await store.read("journal", after=seqs[1])] == [b"2", b"3", b"4"]
        assert await store.read("journal", after=seqs[-1]) == []

    async def test_read_with_a_limit(self, store: Store) -> None:
        seqs = [await store.append("journal", str(i).encode()) for i in range(5)]
        assert [r.data for r in await store.read("journal", limit=2)] == [b"0", b"1"]
        assert [r.data for r in await store.read("journal", after=seqs[2], limit=10)] == [
            b"3",
            b"4",
        ]
        assert [r.seq for r in await store.read("journal", after=seqs[0], limit=1)] == [seqs[1]]
        assert await store.read("journal", limit=0) == []

    async def test_streams_are_independent(self, store: Store) -> None:
        a1 = await store.append("a", b"a1")
        b1 = await store.append("b", b"b1")
        a2 = await store.append("a", b"a2")
        assert a1 < b1 < a2, "sequence numbers increase across the whole store"
        assert [(r.seq, r.data) for r in await store.read("a")] == [(a1, b"a1"), (a2, b"a2")]
        assert [(r.stream, r.seq, r.data) for r in await store.read("b")] == [("b", b1, b"b1")]
        assert await store.read("never-written") == []

    @pytest.mark.parametrize("stream", ["", "Journal", "a/b", "a.b", "-a", "a b"])
    async def test_invalid_stream_names_are_rejected(self, store: Store, stream: str) -> None:
        with pytest.raises(errors.InputError):
            await store.append(stream, b"x")
        with pytest.raises(errors.InputError):
            await store.read(stream)

    # Blobs

    async def test_put_blob_from_bytes(self, store: Store, tmp_path: Path) -> None:
        data = b"artifact contents"
        digest = await store.put_blob(data)
        assert digest == hashlib.sha256(data).hexdigest()
        assert await store.has_blob(digest)
        destination = tmp_path / "out" / "nested" / "artifact"
        await store.get_blob(digest, destination)
        assert destination.read_bytes() == data

    async def test_put_blob_from_a_path(self, store: Store, tmp_path: Path) -> None:
        # Larger than any sensible copy buffer, and not a repeated pattern.
        data = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(100_000))
        source = tmp_path / "source.bin"
        source.write_bytes(data)
        digest = await store.put_blob(source)
        assert digest == hashlib.sha256(data).hexdigest()
        assert source.read_bytes() == data, "the source is left alone"
        await store.get_blob(digest, tmp_path / "copy.bin")
        assert (tmp_path / "copy.bin").read_bytes() == data

    async def test_put_blob_is_idempotent(self, store: Store, tmp_path: Path) -> None:
        source = tmp_path / "source.bin"
        source.write_bytes(b"same")
        digests = {await store.put_blob(b"same"), await store.put_blob(source)}
        digests.add(await store.put_blob(b"same"))
        assert digests == {hashlib.sha256(b"same").hexdigest()}

    async def test_empty_blob(self, store: Store, tmp_path: Path) -> None:
        digest = await store.put_blob(b"")
        assert digest == hashlib.sha256(b"").hexdigest()
        await store.get_blob(digest, tmp_path / "empty")
        assert (tmp_path / "empty").read_bytes() == b""

    async def test_get_blob_replaces_the_destination(self, store: Store, tmp_path: Path) -> None:
        destination = tmp_path / "artifact"
        destination.write_bytes(b"old contents, longer than the new ones")
        await store.get_blob(await store.put_blob(b"new"), destination)
        assert destination.read_bytes() == b"new"

    async def test_missing_blob(self, store: Store, tmp_path: Path) -> None:
        digest = hashlib.sha256(b"never stored").hexdigest()
        assert not await store.has_blob(digest)
        with pytest.raises(errors.NotFoundError):
            await store.get_blob(digest, tmp_path / "out")
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize("digest", ["", "abc", "../../etc/passwd", "A" * 64, "g" * 64])
    async def test_invalid_digests_are_rejected(
        self, store: Store, tmp_path: Path, digest: str
    ) -> None:
        with pytest.raises(errors.InputError):
            await store.has_blob(digest)
        with pytest.raises(errors.InputError):
            await store.get_blob(digest, tmp_path / "out")

    async def test_put_blob_of_a_missing_file(self, store: Store, tmp_path: Path) -> None:
        with pytest.raises(errors.InputError):
            await store.put_blob(tmp_path / "missing")

    # Close

    async def test_close_is_final_and_idempotent(self, store: Store) -> None:
        await store.put("a", b"one")
        await store.close()
        await store.close()
        with pytest.raises(errors.StoreError):
            await store.get("a")
        with pytest.raises(errors.StoreError):
            await store.put("a", b"two")
        with pytest.raises(errors.StoreError):
            await store.append("journal", b"x")

    async def test_close_ends_open_watches(self, store: Store) -> None:
        async with watching(store, "a/") as events:
            await initial_values(events)
            await store.close()
            with pytest.raises(StopAsyncIteration):
                await next_event(events)
