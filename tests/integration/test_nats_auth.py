"""Per-node NATS credentials against a real nats-server (skipped, with the reason, without one).

The server runs with :func:`accord.store.nats_auth.authorization_config`; the control plane
(admin) sets the fleet up through :class:`NatsStore`, and node A connects with raw nats-py, as
an agent would, with its own user and inbox prefix.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from typer.testing import CliRunner

from accord import errors, signing
from accord.cli.nats import app as nats_cli
from accord.lifecycle.definition import Facts, default_lifecycle
from accord.lifecycle.nodes import add_node, lifecycle_key, node_key, transition
from accord.store import keys
from accord.store.nats import NatsStore
from accord.store.nats_auth import authorization_config, node_inbox_prefix
from accord.testing.nats_server import NatsServer, NatsServerError
from helpers import build_manifest, file

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
PASSWORDS = {"node-a": "pw-a", "node-b": "pw-b"}
A, B = "node-a", "node-b"
DENIED = 0.5  # seconds to wait for an answer that a permission violation swallows


class AuthNatsServer(NatsServer):
    """A :class:`NatsServer` whose configuration ends with an ``authorization`` block."""

    def __init__(self, root: Path, authorization: str) -> None:
        super().__init__(root)
        self.authorization = authorization

    def _config(self) -> str:
        return super()._config() + self.authorization


@pytest.fixture
def bucket() -> str:
    return f"a{uuid.uuid4().hex[:10]}"


@pytest.fixture
def server(tmp_path: Path, bucket: str) -> Iterator[AuthNatsServer]:
    config = authorization_config(
        PASSWORDS, admin_user=ADMIN, admin_password=ADMIN_PASSWORD, bucket=bucket
    )
    server = AuthNatsServer(tmp_path / "nats", config)
    try:
        server.start()
    except NatsServerError as exc:
        pytest.skip(f"NATS auth tests SKIPPED, no usable nats-server: {exc}")
    yield server
    server.stop()


def user_url(server: NatsServer, user: str, password: str) -> str:
    return server.url.replace("nats://", f"nats://{user}:{password}@")


@pytest.fixture
async def admin(server: AuthNatsServer, bucket: str) -> AsyncIterator[NatsStore]:
    store = await NatsStore.open(f"{user_url(server, ADMIN, ADMIN_PASSWORD)}?bucket={bucket}")
    for node in (A, B):
        await store.put(keys.desired_key(node), f"desired {node}".encode())
        await store.put(keys.status_key(node), f"status {node}".encode())
        await store.put(node_key(node), f"inventory {node}".encode())
        await store.put(keys.sequence_key(node), b"7")
    await store.put(lifecycle_key("reboot"), b"lifecycle")
    yield store
    await store.close()


class Node:
    """Node A's raw connection, and the permission violations the server reported to it."""

    def __init__(self) -> None:
        self.nc: Client = Client()
        self.violations: list[str] = []

    async def on_error(self, exc: Exception) -> None:
        self.violations.append(str(exc))

    async def connect(self, server: NatsServer, node: str) -> None:
        await self.nc.connect(
            user_url(server, node, PASSWORDS[node]),
            inbox_prefix=node_inbox_prefix(node),
            error_cb=self.on_error,
            allow_reconnect=False,
        )

    async def request(self, subject: str, payload: bytes = b"") -> Msg | None:
        """The answer, or None if none came (what a denied publish looks like)."""
        try:
            return await self.nc.request(subject, payload, timeout=DENIED)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            return None

    async def denied(self, subject: str) -> None:
        """Wait until the server reports a violation mentioning ``subject``."""
        for _ in range(100):
            # nats-py lowercases the server's -ERR text.
            if any(subject.lower() in violation.lower() for violation in self.violations):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"no permission violation for {subject!r}: {self.violations}")


@pytest.fixture
async def node_a(server: AuthNatsServer, admin: NatsStore) -> AsyncIterator[Node]:
    node = Node()
    await node.connect(server, A)
    yield node
    await node.nc.close()


async def bind(node: Node, bucket: str) -> KeyValue:
    js = node.nc.jetstream(timeout=DENIED)
    return await js.key_value(bucket)


async def test_the_config_names_only_the_nodes_own_keys(bucket: str) -> None:
    config = authorization_config(
        PASSWORDS, admin_user=ADMIN, admin_password=ADMIN_PASSWORD, bucket=bucket
    )
    assert f"fleet.desired.{A}" in config and f"fleet.status.{B}" in config
    node_a_line = next(line for line in config.splitlines() if f'"user": "{A}"' in line)
    assert B not in node_a_line
    assert "_INBOX.>" not in config  # a shared inbox would leak other nodes' replies
    assert "fleet.sequence" not in config  # the publish counters are the control plane's


async def test_a_reads_its_desired_state_and_writes_its_status(
    node_a: Node, admin: NatsStore, bucket: str
) -> None:
    kv = await bind(node_a, bucket)
    desired = await kv.get(keys.desired_key(A))
    assert desired.value == f"desired {A}".encode()
    assert (await kv.get(node_key(A))).value == f"inventory {A}".encode()
    assert (await kv.get(lifecycle_key("reboot"))).value == b"lifecycle"

    # Compare-and-set of its own status, as the agent does: read the revision, update with it.
    status = await kv.get(keys.status_key(A))
    assert status.revision is not None
    revision = await kv.update(keys.status_key(A), b"applied", last=status.revision)
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.update(keys.status_key(A), b"stale", last=status.revision)
    entry = await admin.get(keys.status_key(A))
    assert entry is not None and entry.value == b"applied" and entry.revision == revision
    assert node_a.violations == []


async def test_a_watches_its_desired_state(node_a: Node, admin: NatsStore, bucket: str) -> None:
    received: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_message(msg: Msg) -> None:
        if not msg.headers or "Status" not in msg.headers:  # skip heartbeats
            received.put_nowait(msg)

    inbox = node_a.nc.new_inbox()
    await node_a.nc.subscribe(inbox, cb=on_message)
    subject = f"$KV.{bucket}.{keys.desired_key(A)}"
    js = node_a.nc.jetstream(timeout=2)
    config = api.ConsumerConfig(
        name=f"watch{uuid.uuid4().hex[:8]}",  # with a name, the filter is in the API subject
        deliver_subject=inbox,
        filter_subject=subject,
        deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
        ack_policy=api.AckPolicy.NONE,
        flow_control=True,
        idle_heartbeat=1.0,
        inactive_threshold=5.0,
        mem_storage=True,
    )
    await js.add_consumer(f"KV_{bucket}", config=config)
    first = await asyncio.wait_for(received.get(), 5)
    assert first.subject == subject and first.data == f"desired {A}".encode()
    await admin.put(keys.desired_key(B), b"for b")  # not delivered to A
    await admin.put(keys.desired_key(A), b"new for a")
    second = await asyncio.wait_for(received.get(), 5)
    assert second.subject == subject and second.data == b"new for a"
    assert node_a.violations == []


async def test_a_cannot_read_b(node_a: Node, bucket: str) -> None:
    kv = await bind(node_a, bucket)
    for key in (keys.desired_key(B), keys.status_key(B), node_key(B)):
        with pytest.raises(nats.errors.TimeoutError):
            await kv.get(key)
        await node_a.denied(f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.{key}")
    # The other ways to read a message: the key in the body, or the stream's message API.
    body = json.dumps({"last_by_subj": f"$KV.{bucket}.{keys.desired_key(B)}"}).encode()
    for subject in (f"$JS.API.DIRECT.GET.KV_{bucket}", f"$JS.API.STREAM.MSG.GET.KV_{bucket}"):
        assert await node_a.request(subject, body) is None
        await node_a.denied(subject)


async def test_a_cannot_read_even_its_own_publish_counter(node_a: Node, bucket: str) -> None:
    # The agent needs only the sequence inside its signed envelope, never the counter.
    kv = await bind(node_a, bucket)
    with pytest.raises(nats.errors.TimeoutError):
        await kv.get(keys.sequence_key(A))
    await node_a.denied(f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.{keys.sequence_key(A)}")


async def test_a_cannot_watch_b_or_sniff_replies(node_a: Node, bucket: str) -> None:
    kv_stream = f"KV_{bucket}"
    js = node_a.nc.jetstream(timeout=DENIED)
    for name, filter_subject in [
        ("w1", f"$KV.{bucket}.{keys.desired_key(B)}"),
        ("w2", f"$KV.{bucket}.fleet.desired.>"),
        (None, f"$KV.{bucket}.{keys.desired_key(A)}"),  # the filter only in the body
    ]:
        config = api.ConsumerConfig(
            name=name, deliver_subject=node_a.nc.new_inbox(), filter_subject=filter_subject
        )
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_consumer(kv_stream, config=config)
    await node_a.denied(f"$JS.API.CONSUMER.CREATE.{kv_stream}.w1.")
    await node_a.denied(f"$JS.API.CONSUMER.CREATE.{kv_stream}.w2.")
    await node_a.denied(f'Publish to "$JS.API.CONSUMER.CREATE.{kv_stream}"')

    # A's own watch subject with a body filter for B: the server rejects the mismatch.
    name = "w3"
    own = f"$KV.{bucket}.{keys.desired_key(A)}"
    request = {
        "stream_name": kv_stream,
        "config": {
            "name": name,
            "deliver_subject": node_a.nc.new_inbox(),
            "filter_subject": f"$KV.{bucket}.{keys.desired_key(B)}",
        },
    }
    reply = await node_a.request(
        f"$JS.API.CONSUMER.CREATE.{kv_stream}.{name}.{own}", json.dumps(request).encode()
    )
    assert reply is not None and "error" in json.loads(reply.data)

    # Other clients' replies (and watch deliveries) go to their inboxes: A may not listen.
    for subject in ("_INBOX.>", "_INBOX_node-b.>", ">"):
        await node_a.nc.subscribe(subject)
        await node_a.denied(f'Subscription to "{subject}"')


async def test_a_cannot_write_b_status_nor_its_desired_state(
    node_a: Node, admin: NatsStore, bucket: str
) -> None:
    kv = await bind(node_a, bucket)
    for key in (keys.status_key(B), keys.desired_key(A), keys.desired_key(B)):
        with pytest.raises(nats.errors.TimeoutError):
            await kv.put(key, b"forged")
        await node_a.denied(f"$KV.{bucket}.{key}")
    with pytest.raises(nats.errors.TimeoutError):
        await kv.delete(keys.status_key(B))
    for node in (A, B):
        desired = await admin.get(keys.desired_key(node))
        status = await admin.get(keys.status_key(B))
        assert desired is not None and desired.value == f"desired {node}".encode()
        assert status is not None and status.value == f"status {B}".encode()
    # Nor change or delete the stream.
    assert await node_a.request(f"$JS.API.STREAM.PURGE.KV_{bucket}") is None
    assert await node_a.request(f"$JS.API.STREAM.DELETE.KV_{bucket}") is None


async def test_the_admin_can_do_everything(admin: NatsStore) -> None:
    for node in (A, B):
        revision = await admin.put(keys.desired_key(node), b"new")
        status = await admin.get(keys.status_key(node))
        assert status is not None
        await admin.update(keys.status_key(node), b"reset", expected_revision=status.revision)
        assert revision > 0
    assert {entry.key for entry in await admin.list("fleet.desired.")} == {
        keys.desired_key(A),
        keys.desired_key(B),
    }
    await admin.append("audit", b"event")
    digest = await admin.put_blob(b"artifact")
    assert await admin.has_blob(digest)


async def test_a_wrong_password_is_refused(server: AuthNatsServer) -> None:
    nc = Client()
    try:
        with pytest.raises(nats.errors.Error):
            await nc.connect(
                user_url(server, A, "wrong"), allow_reconnect=False, max_reconnect_attempts=0
            )
    finally:
        await nc.close()


async def test_the_cli_writes_a_config_the_server_enforces(tmp_path: Path) -> None:
    out = tmp_path / "auth.conf"
    args = ["config", "--node", A, "--node", B, "--bucket", "fleet", "--out", str(out)]
    result = await asyncio.to_thread(CliRunner().invoke, nats_cli, args)
    assert result.exit_code == 0, result.output
    secrets_file = tmp_path / "auth.conf.passwords.json"
    assert out.stat().st_mode & 0o777 == 0o600
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    secrets = json.loads(secrets_file.read_text())
    assert set(secrets["nodes"]) == {A, B} and secrets["admin"]["user"] == "accord"
    again = await asyncio.to_thread(CliRunner().invoke, nats_cli, args)
    assert again.exit_code != 0 and "already exists" in again.output

    server = AuthNatsServer(tmp_path / "nats", out.read_text())
    try:
        await asyncio.to_thread(server.start)
    except NatsServerError as exc:
        pytest.skip(f"NATS auth tests SKIPPED, no usable nats-server: {exc}")
    try:
        admin = secrets["admin"]
        store = await NatsStore.open(
            f"{user_url(server, admin['user'], admin['password'])}?bucket=fleet"
        )
        await store.put(keys.desired_key(B), b"for b")
        await store.close()
        node_passwords = secrets["nodes"]
        node = Node()
        await node.nc.connect(
            user_url(server, A, node_passwords[A]),
            inbox_prefix=node_inbox_prefix(A),
            error_cb=node.on_error,
            allow_reconnect=False,
        )
        try:
            kv = await bind(node, "fleet")
            with pytest.raises(KeyNotFoundError):  # allowed, but nothing there yet
                await kv.get(keys.desired_key(A))
            with pytest.raises(nats.errors.TimeoutError):
                await kv.get(keys.desired_key(B))
        finally:
            await node.nc.close()
    finally:
        await asyncio.to_thread(server.stop)


async def test_an_agent_runs_on_its_own_credentials(
    server: AuthNatsServer, bucket: str, tmp_path: Path
) -> None:
    """The real ``accord agent``, as node A's user: it watches, converges and reports."""
    admin = await NatsStore.open(f"{user_url(server, ADMIN, ADMIN_PASSWORD)}?bucket={bucket}")
    key = signing.SigningKey.generate()
    trust = tmp_path / "trust"
    trust.mkdir()
    key.verify_key.save(trust / "control-plane.pub")
    await add_node(admin, A, default_lifecycle())
    await transition(admin, default_lifecycle(), A, "provisioning", initiator="test", facts=Facts())
    await admin.put(keys.desired_key(B), b"for b: A never sees it")

    async def publish(generation: int) -> None:
        manifest = build_manifest(
            [file("motd", "etc/motd", f"v{generation}\n")], name="site", generation=generation
        )
        envelope = signing.sign(manifest, A, [key], sequence=generation)
        await admin.put(keys.desired_key(A), envelope.model_dump_json().encode())

    async def applied(generation: int) -> dict[str, Any]:
        for _ in range(300):
            entry = await admin.get(keys.status_key(A))
            status = json.loads(entry.value) if entry else {}
            if status.get("applied_generation") == generation:
                return status
            await asyncio.sleep(0.1)
        raise AssertionError(f"generation {generation} not applied; last status: {status}")

    url = f"{user_url(server, A, PASSWORDS[A])}?bucket={bucket}&inbox={node_inbox_prefix(A)}"
    root = tmp_path / "root"
    root.mkdir()
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "accord", "agent", "--node", A, "--store", url,
        "--trust", str(trust), "--root", str(root), "--state-dir", str(tmp_path / "state"),
        "--heartbeat", "0.2", stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await publish(1)
        assert (await applied(1))["state"] == "succeeded"
        assert (root / "etc/motd").read_text() == "v1\n"
        await publish(2)  # the watch (one consumer on A's own key) delivers the change
        await applied(2)
        assert (root / "etc/motd").read_text() == "v2\n"
    finally:
        agent.terminate()
        _, stderr = await asyncio.wait_for(agent.communicate(), 30)
        await admin.close()
    assert agent.returncode == 0, stderr.decode()
    assert b"Permissions Violation" not in stderr, stderr.decode()


async def test_a_node_uses_the_nats_store_with_its_own_credentials(
    server: AuthNatsServer, admin: NatsStore, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Exact watches, CAS of its status and a close whose consumer delete is denied: quietly."""
    url = f"{user_url(server, A, PASSWORDS[A])}?bucket={bucket}&inbox={node_inbox_prefix(A)}"
    store = await NatsStore.open(url)
    try:
        for _ in range(2):  # the second watch follows a close whose consumer delete was denied
            events = store.watch(keys.desired_key(A), exact=True)
            first = await anext(events)
            assert (first.key, first.value) == (keys.desired_key(A), f"desired {A}".encode())
            assert (await anext(events)).op.value == "ready"
            await admin.put(keys.desired_key(B), b"not for a")
            revision = await admin.put(keys.desired_key(A), b"next")
            change = await asyncio.wait_for(anext(events), 5)
            assert (change.key, change.value, change.revision) == (
                keys.desired_key(A), b"next", revision,
            )  # fmt: skip
            await events.aclose()  # type: ignore[attr-defined]
            await admin.put(keys.desired_key(A), f"desired {A}".encode())
        status = await store.get(keys.status_key(A))
        assert status is not None
        await store.update(keys.status_key(A), b"applied", expected_revision=status.revision)
        await asyncio.sleep(DENIED)  # let any violation reports arrive
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
        # A prefix watch would see B's key: refused at once, not after the 5 s timeout.
        started = time.monotonic()
        with pytest.raises(errors.StoreError, match="permission denied") as denied:
            await anext(store.watch("fleet.desired."))
        assert not isinstance(denied.value, errors.StoreUnavailableError)
        assert time.monotonic() - started < 2
    finally:
        await store.close()
