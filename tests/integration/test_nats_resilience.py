"""The NATS store when the server goes away: restarts, kill -9, outages, many watches.

Each test runs its own nats-server (skipped, with the reason, when there is none) and restarts
or kills it on the same port and store directory, as an operator or a crash would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from accord import errors
from accord.store.base import Entry, Op, WatchEvent
from accord.store.nats import NatsStore
from accord.testing.nats_server import NatsServer, start_or_skip
from accord.testing.store_contract import initial_values, next_event, watching


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NatsServer]:
    sync_always = getattr(request, "param", False)
    server = start_or_skip(NatsServer(tmp_path / "nats", sync_always=sync_always))
    yield server
    server.stop()


@pytest.fixture
def url(server: NatsServer) -> str:
    return f"{server.url}?bucket=r{uuid.uuid4().hex[:12]}"


class Proxy:
    """A TCP relay to the server that the test can cut, as a network partition would."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._links: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.open = True
        self.port = 0

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        await asyncio.sleep(0.05)  # let connections accepted just now see the cut and close

    def cut(self) -> None:
        """Drop every connection and refuse new ones until :meth:`heal`."""
        self.open = False
        for writer in self._links:
            writer.transport.abort()
        self._links.clear()

    def heal(self) -> None:
        self.open = True

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not self.open:
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
            try:
                if self.open:  # not cut while we connected
                    self._links |= {writer, up_writer}
                    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()


async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):  # the other side was cut
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.transport.abort()


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[NatsStore]:
    store = await NatsStore.open(url)
    try:
        yield store
    finally:
        await store.close()


async def test_a_watch_survives_a_restart_without_gaps(server: NatsServer, url: str) -> None:
    async with opened(url) as watcher, opened(url) as writer, watching(watcher, "r.") as events:
        await initial_values(events)
        before = await writer.put("r.1", b"before")
        assert await next_event(events) == WatchEvent(Op.PUT, "r.1", b"before", before)

        await asyncio.to_thread(server.restart)
        loop = asyncio.get_running_loop()
        back = loop.time()
        written = [
            (Op.PUT, "r.2", b"after", await writer.put("r.2", b"after")),
            (Op.PUT, "r.1", b"again", await writer.put("r.1", b"again")),
        ]
        await writer.delete("r.2")
        first = await next_event(events)
        recovered = loop.time() - back
        seen = [first, await next_event(events), await next_event(events)]
        assert [(e.op, e.key, e.value, e.revision) for e in seen[:2]] == written
        assert (seen[2].op, seen[2].key) == (Op.DELETE, "r.2")
        assert before < written[0][3] < written[1][3] < seen[2].revision
        assert recovered < 5, f"the watch took {recovered:.1f} s to deliver after the restart"


async def test_a_watch_resumes_after_a_network_cut(server: NatsServer, url: str) -> None:
    """Changes made while a watcher is cut off arrive after it reconnects, none twice."""
    async with Proxy(server.port or 0) as proxy:
        cut_url = url.replace(f":{server.port}?", f":{proxy.port}?")
        async with (
            opened(cut_url) as watcher,
            opened(url) as writer,
            watching(watcher, "n.") as events,
        ):
            await initial_values(events)
            first = await writer.put("n.a", b"1")
            assert await next_event(events) == WatchEvent(Op.PUT, "n.a", b"1", first)

            proxy.cut()
            written = [await writer.put("n.a", b"2"), await writer.put("n.b", b"3")]
            await writer.delete("n.a")
            await asyncio.sleep(0.5)  # the watcher's consumer keeps trying to push meanwhile
            proxy.heal()

            seen = [await next_event(events) for _ in range(3)]
            assert [(e.op, e.key, e.value) for e in seen] == [
                (Op.PUT, "n.a", b"2"),
                (Op.PUT, "n.b", b"3"),
                (Op.DELETE, "n.a", None),
            ]
            assert [e.revision for e in seen[:2]] == written
            assert watcher._nc.stats["reconnects"] == 1, "the cut must have cut"
            last = await writer.put("n.c", b"4")
            assert await next_event(events) == WatchEvent(Op.PUT, "n.c", b"4", last)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(events), 0.3)  # and nothing more


@pytest.mark.parametrize(
    "server", [False, True], ids=["default-sync", "sync-always"], indirect=True
)
async def test_everything_survives_kill_9(server: NatsServer, url: str, tmp_path: Path) -> None:
    async with opened(url) as store, watching(store, "k.") as events:
        await initial_values(events)
        kept = await store.put("k.kept", b"1")
        changed = await store.put("k.changed", b"1")
        await store.put("k.gone", b"x")
        await store.delete("k.gone")
        seqs = [await store.append("journal", str(i).encode()) for i in range(5)]
        digest = await store.put_blob(b"artifact" * 1000)
        before = await store.list()
        for _ in range(4):
            await next_event(events)

        await asyncio.to_thread(server.kill)
        await asyncio.to_thread(server.start)

        assert await store.list() == before
        assert before == [Entry("k.changed", b"1", changed), Entry("k.kept", b"1", kept)]
        # A compare-and-set with a revision read before the crash still works.
        updated = await store.update("k.changed", b"2", expected_revision=changed)
        assert updated > max(kept, changed)
        with pytest.raises(errors.ConflictError):
            await store.update("k.changed", b"3", expected_revision=changed)
        # The open watch resumes after the crash, at the first change it has not seen.
        assert await next_event(events) == WatchEvent(Op.PUT, "k.changed", b"2", updated)
        assert [(r.seq, r.data) for r in await store.read("journal")] == [
            (seq, str(i).encode()) for i, seq in enumerate(seqs)
        ]
        assert await store.append("journal", b"5") > seqs[-1]
        await store.get_blob(digest, tmp_path / "blob")
        assert hashlib.sha256((tmp_path / "blob").read_bytes()).hexdigest() == digest

    async with opened(url) as store:  # and a new connection sees the same
        assert await store.get("k.changed") == Entry("k.changed", b"2", updated)


async def test_a_write_during_an_outage_fails_then_works(server: NatsServer, url: str) -> None:
    async with opened(f"{url}&timeout=1") as store:
        await store.put("k.before", b"1")
        await asyncio.to_thread(server.stop)
        # Once the client knows it is cut off, nothing is queued to be sent later. (A write
        # under way when the connection drops may still be applied after the reconnect.)
        for _ in range(250):
            if not store._nc.is_connected:
                break
            await asyncio.sleep(0.02)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(errors.StoreUnavailableError):
            await store.put("k.lost", b"x")
        assert loop.time() - started < 3, "the put must fail within its timeout (1 s)"
        with pytest.raises(errors.StoreUnavailableError):
            await store.get("k.before")

        await asyncio.to_thread(server.start)
        revision = await store.put("k.after", b"2")  # waits for the reconnect
        assert await store.get("k.after") == Entry("k.after", b"2", revision)
        assert await store.get("k.lost") is None, "the failed put must not arrive late"
        assert [entry.key for entry in await store.list()] == ["k.after", "k.before"]


async def test_more_than_a_thousand_watches(url: str) -> None:
    count = 1100
    async with opened(url) as store:
        watches = [store.watch("many.") for _ in range(count)]
        try:
            async with asyncio.timeout(60), asyncio.TaskGroup() as group:
                for events in watches:
                    group.create_task(initial_values(events))
            revision = await store.put("many.k", b"v")
            loop = asyncio.get_running_loop()
            started = loop.time()
            async with asyncio.timeout(30), asyncio.TaskGroup() as group:
                seen = [group.create_task(next_event(events)) for events in watches]
            elapsed = loop.time() - started
            assert [task.result() for task in seen] == [
                WatchEvent(Op.PUT, "many.k", b"v", revision)
            ] * count
            assert elapsed < 10, f"{count} watches took {elapsed:.1f} s to see one change"
        finally:
            await asyncio.gather(*(events.aclose() for events in watches))


async def test_watches_converge_through_random_writes_and_a_restart(
    server: NatsServer, url: str
) -> None:
    """Every watch, replayed, equals ``list``; revisions only grow; a restart changes nothing."""
    rng = random.Random(7)
    prefixes = ["s.", "s.a", ""]
    async with opened(url) as writer, opened(url) as watcher:
        for i in range(10):
            await writer.put(f"s.a{i}", b"0")
        watches = [watcher.watch(prefix) for prefix in prefixes]
        states = [await initial_values(events) for events in watches]
        views = [{key: event.revision for key, event in state.items()} for state in states]
        last_seen = [max(view.values(), default=0) for view in views]

        async def follow(index: int) -> None:
            async for event in watches[index]:
                assert event.revision > last_seen[index], "revisions must grow"
                last_seen[index] = event.revision
                if event.op is Op.PUT:
                    views[index][event.key] = event.revision
                else:
                    del views[index][event.key]

        followers = [asyncio.create_task(follow(i)) for i in range(len(prefixes))]
        try:
            for step in range(300):
                if step == 150:
                    await asyncio.to_thread(server.restart)
                key = f"s.{rng.choice('ab')}{rng.randrange(10)}"
                if rng.random() < 0.25:
                    await writer.delete(key)
                else:
                    await writer.put(key, str(step).encode())
            expected = [
                {entry.key: entry.revision for entry in await writer.list(prefix)}
                for prefix in prefixes
            ]
            for _ in range(200):
                if views == expected or any(task.done() for task in followers):
                    break
                await asyncio.sleep(0.05)
        finally:
            for task in followers:
                task.cancel()
            results = await asyncio.gather(*followers, return_exceptions=True)
            await asyncio.gather(*(events.aclose() for events in watches))
        assert [r for r in results if not isinstance(r, asyncio.CancelledError)] == []
        assert views == expected
