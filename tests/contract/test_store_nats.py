"""The store contract over nats:// against a real nats-server, plus what only NATS promises.

One server per module (started with :func:`accord.testing.nats_server.start_or_skip`, which skips
these tests with the reason when there is no usable binary); each test gets a fresh bucket, and
deletes it afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from accord import errors
from accord.store import open_store
from accord.store.base import Entry, Op, Store, WatchEvent
from accord.store.nats import NatsStore
from accord.testing.nats_server import (
    NatsServer,
    NatsServerError,
    find_usable_binary,
    start_or_skip,
)
from accord.testing.store_contract import StoreContract, initial_values, next_event, watching


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = start_or_skip(NatsServer(tmp_path_factory.mktemp("nats")))
    yield server
    server.stop()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    return f"{nats_server.url}?bucket=t{uuid.uuid4().hex[:12]}"


class TestNatsStore(StoreContract):
    @pytest.fixture
    async def store(self, nats_url: str) -> AsyncIterator[Store]:
        store = await open_store(nats_url)
        yield store
        await store.close()
        cleanup = await NatsStore.open(nats_url)
        await cleanup.destroy()


# NATS only


@pytest.fixture
async def opened(nats_url: str) -> AsyncIterator[NatsStore]:
    store = await NatsStore.open(nats_url)
    yield store
    await store.destroy()


async def test_two_store_objects_share_one_bucket(opened: NatsStore, nats_url: str) -> None:
    other = await NatsStore.open(nats_url)
    try:
        async with watching(other, "shared.") as events:
            await initial_values(events)
            revision = await opened.create("shared.k", b"1")
            with pytest.raises(errors.ConflictError):
                await other.create("shared.k", b"2")
            second = await other.update("shared.k", b"2", expected_revision=revision)
            with pytest.raises(errors.ConflictError):
                await opened.update("shared.k", b"3", expected_revision=revision)
            assert await opened.get("shared.k") == Entry("shared.k", b"2", second)
            assert await next_event(events) == WatchEvent(Op.PUT, "shared.k", b"1", revision)
            assert await next_event(events) == WatchEvent(Op.PUT, "shared.k", b"2", second)
        seq = await opened.append("journal", b"x")
        assert [r.seq for r in await other.read("journal")] == [seq]
    finally:
        await other.close()


async def test_cas_against_a_delete_marker_revision_conflicts(opened: NatsStore) -> None:
    """JetStream alone would accept a write expecting the delete marker's sequence."""
    await opened.put("k", b"1")
    async with watching(opened, "k") as events:
        await initial_values(events)
        await opened.delete("k")
        deleted = await next_event(events)
    assert deleted.op is Op.DELETE
    with pytest.raises(errors.ConflictError):
        await opened.update("k", b"2", expected_revision=deleted.revision)
    with pytest.raises(errors.ConflictError):
        await opened.delete("k", expected_revision=deleted.revision)
    assert await opened.get("k") is None


async def test_deleting_a_missing_key_writes_no_marker(opened: NatsStore) -> None:
    async with watching(opened, "k.") as events:
        await initial_values(events)
        await opened.delete("k.never")
        revision = await opened.put("k.later", b"v")
        assert await next_event(events) == WatchEvent(Op.PUT, "k.later", b"v", revision)


async def test_subject_prefixes_and_partial_prefixes(opened: NatsStore) -> None:
    for key in ["a.b.c", "a.b.d.e", "a.bc", "a.b", "a.x", "ab.c", "b"]:
        await opened.put(key, b"")
    assert [e.key for e in await opened.list("a.b.")] == ["a.b.c", "a.b.d.e"]
    assert [e.key for e in await opened.list("a.b")] == ["a.b", "a.b.c", "a.b.d.e", "a.bc"]
    assert [e.key for e in await opened.list("a")] == [
        "a.b",
        "a.b.c",
        "a.b.d.e",
        "a.bc",
        "a.x",
        "ab.c",
    ]
    assert await opened.list("a..") == []
    assert await opened.list("a.*.") == []
    assert await opened.list("a.>") == []


async def test_keys_with_an_empty_level_are_rejected(opened: NatsStore) -> None:
    with pytest.raises(errors.InputError):
        await opened.put("a..b", b"v")


async def test_a_closed_watch_frees_its_consumer(opened: NatsStore) -> None:
    async def consumers() -> int:
        info = await opened._call(
            f"$JS.API.STREAM.INFO.KV_{opened.bucket}", b"", None, "stream info"
        )
        return int(info["state"]["consumer_count"])

    assert await consumers() == 0
    async with watching(opened, "a.") as events:
        await initial_values(events)
        assert await consumers() == 1
    await opened.list("a.")
    for _ in range(100):
        if await consumers() == 0:
            break
        await asyncio.sleep(0.02)
    assert await consumers() == 0


async def test_blobs_are_objects_named_by_digest(opened: NatsStore, tmp_path: Path) -> None:
    digest = await opened.put_blob(b"payload")
    info = await opened._object_store().get_info(digest)
    assert info.size == len(b"payload")


async def test_a_blob_under_the_wrong_name_is_refused(opened: NatsStore, tmp_path: Path) -> None:
    digest = hashlib.sha256(b"expected").hexdigest()
    await opened._object_store().put(digest, b"something else")
    destination = tmp_path / "out"
    destination.write_bytes(b"previous")
    with pytest.raises(errors.StoreError, match="corrupt"):
        await opened.get_blob(digest, destination)
    assert destination.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "no temporary file left behind"


async def test_large_blobs_stream_in_batches(opened: NatsStore, tmp_path: Path) -> None:
    data = os.urandom(20 * 1024 * 1024 + 12345)  # many chunks and several direct-get batches
    source = tmp_path / "source"
    source.write_bytes(data)
    digest = await opened.put_blob(source)
    await opened.get_blob(digest, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == data


async def test_the_url_hides_secrets() -> None:
    with pytest.raises(errors.StoreUnavailableError) as caught:
        await NatsStore.open("nats://alice:s3cret@127.0.0.1:1?connect_timeout=0.3")
    assert "s3cret" not in str(caught.value)
    assert "nats://alice:***@127.0.0.1:1" in str(caught.value)


async def test_user_and_password_from_the_url(tmp_path: Path) -> None:
    server = start_or_skip(NatsServer(tmp_path, user="node-1", password="p@ss:w/rd"))
    try:
        url = f"nats://node-1:p%40ss%3Aw%2Frd@127.0.0.1:{server.port}?bucket=auth"
        store = await NatsStore.open(url)
        assert store.url == f"nats://node-1:***@127.0.0.1:{server.port}?bucket=auth"
        assert await store.get("k") is None
        await store.destroy()
        wrong = f"nats://node-1:nope@127.0.0.1:{server.port}?connect_timeout=1"
        with pytest.raises(errors.StoreError, match="refused") as refused:
            await NatsStore.open(wrong)
        assert not isinstance(refused.value, errors.StoreUnavailableError)
        assert "nope" not in str(refused.value)
    finally:
        server.stop()


async def test_a_custom_inbox_prefix(nats_url: str) -> None:
    store = await NatsStore.open(f"{nats_url}&inbox=_INBOX_node-1")
    try:
        assert store._nc.new_inbox().startswith("_INBOX_node-1.")
        revision = await store.put("k.a", b"v")
        assert await store.list("k.") == [Entry("k.a", b"v", revision)]
        assert [r.data for r in await store.read("s", after=await store.append("s", b"x") - 1)]
    finally:
        await store.destroy()


async def test_the_watch_heartbeat_comes_from_the_url(nats_url: str) -> None:
    store = await NatsStore.open(f"{nats_url}&heartbeat=2.5")
    try:
        async with watching(store, "k.a", exact=True) as events:
            await initial_values(events)
            consumers = await store._nc.jetstream().consumers_info(f"KV_{store.bucket}")
            assert [c.config.idle_heartbeat for c in consumers] == [2.5]
    finally:
        await store.destroy()


async def test_credentials_files(nats_url: str, tmp_path: Path) -> None:
    with pytest.raises(errors.InputError, match="no credentials file"):
        await NatsStore.open(f"{nats_url}&creds={tmp_path}/missing.creds")
    creds = tmp_path / "node.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\n...\n------END NATS USER JWT------\n")
    if importlib.util.find_spec("nkeys") is not None:
        pytest.skip("nkeys is installed: this checks the message for when it is not")
    with pytest.raises(errors.InputError, match="nkeys"):
        await NatsStore.open(f"{nats_url}&creds={creds}")


async def test_no_server_is_unavailable_after_the_connect_timeout() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(errors.StoreUnavailableError):
        await open_store("nats://127.0.0.1:1?connect_timeout=0.5")
    assert loop.time() - started < 3


@pytest.mark.parametrize(
    "bad",
    [
        "nats://",
        "nats://host/path",
        "nats://host?bucket=a.b",
        "nats://host?bucket=",
        "nats://host?timeout=0",
        "nats://host?timeout=x",
        "nats://host?connect_timeout=-1",
        "nats://host?history=0",
        "nats://host?heartbeat=0",
        "nats://host?history=65",
        "nats://host?sync=always",
        "nats://host?bucket",
        "nats://host?inbox=a.*",
        "nats://host?inbox=",
        "nats://host:99999",
    ],
)
async def test_bad_urls_are_input_errors(bad: str) -> None:
    with pytest.raises(errors.InputError):
        await NatsStore.open(bad)


async def test_a_server_with_a_small_max_payload_is_refused(tmp_path: Path) -> None:
    server = start_or_skip(NatsServer(tmp_path, max_payload=1024 * 1024))  # nats-server's default
    try:
        with pytest.raises(errors.StoreError, match="max_payload"):
            await NatsStore.open(server.url)
    finally:
        server.stop()


# The server helper


def test_a_missing_binary_skips_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> Path:
        raise NatsServerError("nats-server not found (simulated)")

    monkeypatch.setattr("accord.store.nats_server.find_binary", missing)
    with pytest.raises(pytest.skip.Exception, match=r"SKIPPED.*not found \(simulated\)"):
        start_or_skip(NatsServer(tmp_path))


def test_a_binary_that_will_not_start_is_reported(tmp_path: Path) -> None:
    fake = tmp_path / "nats-server"
    fake.write_text("#!/bin/sh\necho 'nats-server: v2.15.1'\nexit 3\n")
    fake.chmod(0o755)
    server = NatsServer(tmp_path / "root", binary=fake)
    with pytest.raises(NatsServerError, match="exited with 3"):
        server.start()
    assert not server.running


def test_an_old_binary_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "nats-server"
    fake.write_text("#!/bin/sh\necho 'nats-server: v2.9.25'\n")
    fake.chmod(0o755)
    with pytest.raises(NatsServerError, match=r"version 2\.9\.25; accord needs 2\.11\.0 or later"):
        NatsServer(tmp_path / "root", binary=fake).start()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_supervised_server_dies_with_its_owner_even_on_sigkill(tmp_path: Path) -> None:
    find_or_skip()
    with subprocess.Popen(
        [sys.executable, "-c", SUPERVISING_OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as owner:
        try:
            line = owner.stdout.readline() if owner.stdout else ""
            assert line.startswith("pid "), f"the owner did not start a server: {line!r}"
            pid = int(line.split()[1])
            assert os.getpgid(pid) == pid  # its own group: a Ctrl-C at the terminal misses it
        finally:
            owner.kill()
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the supervised nats-server outlived its owner"


SUPERVISING_OWNER = """
import sys, time
from pathlib import Path
from accord.store.nats_server import NatsServer
server = NatsServer(Path(sys.argv[1]), supervised=True).start()
print("pid", server.pid, flush=True)
time.sleep(60)
"""


def find_or_skip() -> None:
    try:
        find_usable_binary()
    except NatsServerError as exc:
        pytest.skip(f"NATS tests SKIPPED, no usable nats-server: {exc}")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
