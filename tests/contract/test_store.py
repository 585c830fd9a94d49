"""The store contract over memory:// and sqlite:///, plus what only SQLite promises.

SQLite's extra promises are the ones that involve more than one connection: compare-and-set and
watch across OS processes, durability across close and reopen, a locked database reported as
unavailable, and the on-disk blob layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from accord import errors
from accord.store import open_store
from accord.store.base import Entry, Op, Store, WatchEvent
from accord.store.sqlite import SqliteStore
from accord.testing.store_contract import StoreContract, initial_values, next_event, watching


class TestMemoryStore(StoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        store = await open_store("memory://")
        yield store
        await store.close()


class TestSqliteStore(StoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        store = await open_store(f"sqlite:///{tmp_path}/accord.db")
        yield store
        await store.close()


# SQLite only


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/state/accord.db"  # tmp_path is absolute: sqlite:////tmp/...


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(url)
    try:
        yield store
    finally:
        await store.close()


_INCREMENT = """
import asyncio, sys
from accord import errors
from accord.store import open_store

async def main(url, count):
    store = await open_store(url)
    print("ready", flush=True)
    sys.stdin.readline()  # start together, so that the processes really contend
    conflicts = 0
    for _ in range(count):
        while True:
            entry = await store.get("counter")
            value = str(int(entry.value) + 1).encode()
            await asyncio.sleep(0.0002)  # widen the read-modify-write window, as real work would
            try:
                await store.update("counter", value, expected_revision=entry.revision)
                break
            except errors.ConflictError:
                conflicts += 1
    await store.close()
    print(conflicts, flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_compare_and_set_holds_across_processes(url: str) -> None:
    processes, increments = 4, 200
    async with opened(url) as store:
        await store.create("counter", b"0")
    children = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", _INCREMENT, url, str(increments)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    for child in children:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"ready\n"
    # Release them all at once, then wait for all.
    results = await asyncio.wait_for(
        asyncio.gather(*(child.communicate(b"go\n") for child in children)), 60
    )
    assert [child.returncode for child in children] == [0] * processes
    conflicts = sum(int(out) for out, _ in results)
    async with opened(url) as store:
        entry = await store.get("counter")
    assert entry is not None and int(entry.value) == processes * increments
    # Without contention the test would prove nothing about lost updates.
    assert conflicts > 0


_WRITER = """
import asyncio, sys
from accord.store import open_store

async def main(url):
    store = await open_store(url)
    await store.put("shared/a", b"1")
    await store.put("elsewhere", b"x")
    await store.put("shared/b", b"2")
    await store.delete("shared/a")
    await store.close()

asyncio.run(main(sys.argv[1]))
"""


async def test_watch_sees_writes_of_another_process(url: str) -> None:
    async with opened(url) as store, watching(store, "shared/") as events:
        await initial_values(events)
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", _WRITER, url)
        assert await child.wait() == 0
        seen = [await next_event(events) for _ in range(3)]
        b = await store.get("shared/b")
    assert [(e.op, e.key, e.value) for e in seen] == [
        (Op.PUT, "shared/a", b"1"),
        (Op.PUT, "shared/b", b"2"),
        (Op.DELETE, "shared/a", None),
    ]
    assert b is not None and seen[1].revision == b.revision < seen[2].revision


async def test_two_store_objects_share_one_file(url: str) -> None:
    async with opened(url) as first, opened(url) as second:
        revision = await first.create("k", b"1")
        with pytest.raises(errors.ConflictError):
            await second.create("k", b"2")
        await second.update("k", b"2", expected_revision=revision)
        with pytest.raises(errors.ConflictError):
            await first.update("k", b"3", expected_revision=revision)
        assert (await first.get("k")) == (await second.get("k"))


async def test_everything_survives_reopening(url: str, tmp_path: Path) -> None:
    async with opened(url) as store:
        revision = await store.put("k", b"v")
        first = [await store.append("journal", b"1"), await store.append("audit", b"a")]
        first.append(await store.append("journal", b"2"))
        digest = await store.put_blob(b"blob")
    async with opened(url) as store:
        assert await store.get("k") == Entry("k", b"v", revision)
        assert await store.put("k2", b"v2") > revision
        later = await store.append("journal", b"3")
        assert later > max(first)
        records = await store.read("journal")
        assert [(r.seq, r.data) for r in records] == [
            (first[0], b"1"),
            (first[2], b"2"),
            (later, b"3"),
        ]
        await store.get_blob(digest, tmp_path / "blob")
        assert (tmp_path / "blob").read_bytes() == b"blob"


async def test_watch_resumes_with_a_consistent_snapshot_after_reopen(url: str) -> None:
    async with opened(url) as store:
        kept = await store.put("a/kept", b"1")
        await store.put("a/gone", b"2")
        await store.delete("a/gone")
    async with opened(url) as store, watching(store, "a/") as events:
        assert await initial_values(events) == {"a/kept": WatchEvent(Op.PUT, "a/kept", b"1", kept)}


async def test_a_locked_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "accord.db"
    store = await SqliteStore.open(f"sqlite:///{path}", busy_timeout=0.1)
    try:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            with pytest.raises(errors.StoreUnavailableError):
                await store.put("k", b"v")
            assert await store.get("k") is None, "readers are not blocked by a writer"
            other.execute("ROLLBACK")
        assert await store.put("k", b"v") > 0
    finally:
        await store.close()


def _pragma(store: SqliteStore, name: str) -> object:
    return store._conn.execute(f"PRAGMA {name}").fetchone()[0]


async def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with opened("sqlite:///relative/dir/accord.db") as store:
        assert store.path == Path("relative/dir/accord.db")
        assert (tmp_path / "relative/dir/accord.db").is_file()
        assert _pragma(store, "journal_mode") == "wal"
        assert _pragma(store, "synchronous") == 1  # NORMAL
    async with opened(f"sqlite:///{tmp_path}/abs.db?synchronous=full") as store:
        assert store.path == tmp_path / "abs.db" and store.path.is_absolute()
        assert _pragma(store, "synchronous") == 2  # FULL


@pytest.mark.parametrize(
    "bad",
    [
        "sqlite://accord.db",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:///a.db?synchronous=off",
        "sqlite:///a.db?journal=delete",
        "sqlite:///a.db?synchronous",
    ],
)
async def test_bad_urls_are_input_errors(bad: str) -> None:
    with pytest.raises(errors.InputError):
        await SqliteStore.open(bad)


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "accord.db"
    with contextlib.closing(sqlite3.connect(path)) as other:
        other.execute("PRAGMA user_version = 99")
    with pytest.raises(errors.StoreError, match="schema version 99"):
        await SqliteStore.open(f"sqlite:///{path}")


async def test_blob_layout_and_corruption(url: str, tmp_path: Path) -> None:
    async with opened(url) as store:
        digest = await store.put_blob(b"payload")
        source = tmp_path / "source"
        source.write_bytes(b"streamed")
        streamed = await store.put_blob(source)
        blobs = Path(f"{store.path}.blobs")
        blob = blobs / "sha256" / digest[:2] / digest
        assert blob.read_bytes() == b"payload"
        assert (blobs / "sha256" / streamed[:2] / streamed).read_bytes() == b"streamed"
        assert list((blobs / "tmp").iterdir()) == [], "no temporary files left behind"

        blob.write_bytes(b"rotten")
        destination = tmp_path / "out"
        destination.write_bytes(b"previous")
        with pytest.raises(errors.StoreError, match="corrupt"):
            await store.get_blob(digest, destination)
        assert destination.read_bytes() == b"previous"
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
