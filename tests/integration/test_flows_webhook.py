"""The ``call_webhook`` task against a real HTTP server on 127.0.0.1: signed, retried."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from accord.engine.flows import FlowRunner, FlowState, TaskRegistry, parse_flow
from accord.engine.flows.builtin import builtin_tasks
from accord.server.flows import FlowHost
from accord.store import Store, open_store

pytestmark = pytest.mark.timeout(30)
SECRET = "hook-secret"


class Receiver(ThreadingHTTPServer):
    """Records every POST; answers with the scripted statuses, then 200."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.statuses: list[int] = []
        self.seen: list[tuple[dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((dict(self.headers), body))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        reply = json.dumps({"ok": status == 200}).encode()
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'hooks.db'}")
    yield opened
    await opened.close()


def hook_flow(
    registry: TaskRegistry, url: str, *, secret_env: str = "ACCORD_TEST_HOOK_SECRET", **extra: Any
) -> Any:
    task = {"id": "notify", "task": "call_webhook",
            "with": {"url": url, "secret_env": secret_env,
                     "body": {"node": "n1", "event": "firmware updated"}},
            **extra}  # fmt: skip
    return parse_flow(json.dumps({"name": "hooks", "tasks": [task]}), source="hooks.json",
                      task_types=registry.names())  # fmt: skip


async def test_a_signed_delivery_retried_through_a_503(
    store: Store, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCORD_TEST_HOOK_SECRET", SECRET)
    receiver.statuses = [503, 503]
    registry = TaskRegistry(builtin_tasks())
    runner = FlowRunner(store, registry, lock_dir=tmp_path / "locks")
    run = await runner.run(hook_flow(registry, receiver.url, retry={"attempts": 3, "base": 0}))
    assert run.state is FlowState.SUCCEEDED, run.error
    assert len(receiver.seen) == 3
    for headers, body in receiver.seen:  # what a receiver checks
        stamp = headers["X-Accord-Timestamp"]
        expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
        assert headers["X-Accord-Signature"] == f"sha256={expected.hexdigest()}"
        assert headers["X-Accord-Delivery"] == f"{run.run_id}.notify"
        assert headers["Content-Type"] == "application/json"
    assert json.loads(receiver.seen[0][1]) == {
        "flow": "hooks", "run": run.run_id, "task": "notify",
        "data": {"node": "n1", "event": "firmware updated"},
    }  # fmt: skip
    replay = await runner.journal.replay(run)
    assert replay.tasks["notify"].result == {"status": 200, "response": {"ok": True}}
    assert replay.tasks["notify"].attempt == 3


async def test_a_4xx_is_permanent_and_a_missing_secret_fails(
    store: Store, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCORD_TEST_HOOK_SECRET", SECRET)
    receiver.statuses = [403]
    registry = TaskRegistry(builtin_tasks())
    runner = FlowRunner(store, registry, lock_dir=tmp_path / "locks")
    run = await runner.run(hook_flow(registry, receiver.url))
    assert run.state is FlowState.REVERTED
    assert run.error is not None and "HTTP 403" in run.error.message
    assert len(receiver.seen) == 1  # the task's default policy retries transient errors only
    monkeypatch.delenv("ACCORD_TEST_HOOK_SECRET")
    run = await runner.run(hook_flow(registry, receiver.url))
    assert run.error is not None
    assert run.error.message == "the webhook secret variable ACCORD_TEST_HOOK_SECRET is not set"
    assert len(receiver.seen) == 1


async def test_an_unreachable_receiver_is_transient(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCORD_TEST_HOOK_SECRET", SECRET)
    registry = TaskRegistry(builtin_tasks())
    runner = FlowRunner(store, registry, lock_dir=tmp_path / "locks")
    closed = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens there now
    run = await runner.run(
        hook_flow(registry, f"http://127.0.0.1:{port}/", retry={"attempts": 2, "base": 0})
    )
    assert run.error is not None and run.error.transient
    assert run.error.message.startswith(f"POST http://127.0.0.1:{port}/: ConnectError")


async def test_the_control_planes_webhooks_keep_no_response_and_only_webhook_secrets(
    store: Store, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the server, an operator's flow must not read URLs only the server reaches, nor sign
    with the server's own secrets."""
    monkeypatch.setenv("ACCORD_TEST_HOOK_SECRET", SECRET)
    monkeypatch.setenv("ACCORD_WEBHOOK_SITE", SECRET)
    host = FlowHost(store, lock_dir=tmp_path / "locks", stale_after=90)
    runner = host.runner
    refused = await runner.run(hook_flow(host.registry, receiver.url))
    assert refused.error is not None
    assert "must start with 'ACCORD_WEBHOOK_'" in refused.error.message
    assert receiver.seen == []
    run = await runner.run(hook_flow(host.registry, receiver.url, secret_env="ACCORD_WEBHOOK_SITE"))
    assert run.state is FlowState.SUCCEEDED, run.error
    assert len(receiver.seen) == 1
    replay = await runner.journal.replay(run)
    assert replay.tasks["notify"].result == {"status": 200}  # the body is not kept
