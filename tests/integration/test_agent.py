"""A real agent process against a real SQLite fleet store, with real ed25519 signatures."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from accord import signing
from accord.lifecycle.definition import Facts, default_lifecycle
from accord.lifecycle.nodes import add_node, transition
from accord.store import open_store
from accord.store.keys import desired_key, status_key
from helpers import build_manifest, file

NODE = "edge-1"


class Fleet:
    """The control plane's side, done by hand: sign and publish, read status."""

    def __init__(self, tmp: Path) -> None:
        self.db = tmp / "fleet.db"
        self.url = f"sqlite:///{self.db}"
        self.key = signing.SigningKey.generate()
        self.trust = tmp / "trust"
        self.trust.mkdir()
        self.key.verify_key.save(self.trust / "control-plane.pub")

    def run(self, work: Callable[[Any], Any]) -> Any:
        async def go() -> Any:
            store = await open_store(self.url)
            try:
                return await work(store)
            finally:
                await store.close()

        return asyncio.run(go())

    def envelope(
        self, generation: int, resources: list[dict[str, Any]], *, sequence: int | None = None
    ) -> bytes:
        """Signed as publish ``sequence`` (by default the generation: one manifest here)."""
        manifest = build_manifest(resources, name="site", generation=generation)
        signed = signing.sign(manifest, NODE, [self.key], sequence=sequence or generation)
        return signed.model_dump_json().encode()

    def publish(self, data: bytes) -> None:
        self.run(lambda store: store.put(desired_key(NODE), data))

    def status(self) -> dict[str, Any] | None:
        entry = self.run(lambda store: store.get(status_key(NODE)))
        return json.loads(entry.value) if entry else None

    def wait_status(
        self, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 20
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.status()
            if last is not None and check(last):
                return last
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; last status: {last}")


def condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status["conditions"] if c["type"] == kind), None)


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    made = Fleet(tmp_path)

    async def enrol(store: Any) -> None:
        await add_node(store, NODE, default_lifecycle())
        await transition(store, default_lifecycle(), NODE, "provisioning", initiator="test",
                         facts=Facts())  # fmt: skip

    made.run(enrol)
    return made


def start_agent(fleet: Fleet, root: Path, state: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "accord", "agent", "--node", NODE, "--store", fleet.url,
         "--trust", str(fleet.trust), "--root", str(root), "--state-dir", str(state),
         "--heartbeat", "0.2", "--drift-interval", "0.3", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


@pytest.fixture
def agent(fleet: Fleet, root: Path, state_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = start_agent(fleet, root, state_dir)
    yield process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.stderr is not None
    process.stderr.close()


def test_the_agent_converges_corrects_drift_and_refuses_bad_manifests(
    fleet: Fleet, root: Path, agent: subprocess.Popen[bytes]
) -> None:
    first = fleet.envelope(1, [file("motd", "etc/motd", "hello v1\n")])
    fleet.publish(first)
    status = fleet.wait_status(lambda s: s["applied_generation"] == 1, "generation 1 applied")
    assert (root / "etc/motd").read_text() == "hello v1\n"
    assert status["state"] == "succeeded" and status["observed_generation"] == 1

    (root / "etc/motd").write_text("edited by hand\n")  # drift, corrected within an interval
    deadline = time.monotonic() + 20
    while (root / "etc/motd").read_text() != "hello v1\n":
        assert time.monotonic() < deadline, "drift was not corrected"
        time.sleep(0.1)

    tampered = json.loads(fleet.envelope(2, [file("motd", "etc/motd", "hello v2\n")]))
    tampered["manifest"] = tampered["manifest"].replace("hello v2", "pwned v2")
    fleet.publish(json.dumps(tampered).encode())
    status = fleet.wait_status(
        lambda s: (condition(s, "ManifestVerified") or {}).get("reason") == "BadSignature",
        "the tampered manifest refused",
    )
    assert (root / "etc/motd").read_text() == "hello v1\n"  # the previous manifest still holds

    fleet.publish(fleet.envelope(2, [file("motd", "etc/motd", "hello v2\n")]))
    fleet.wait_status(lambda s: s["applied_generation"] == 2, "generation 2 applied")
    assert (root / "etc/motd").read_text() == "hello v2\n"
    assert condition(fleet.status() or {}, "ManifestVerified") is None  # refusal cleared

    fleet.publish(first)  # a replay of generation 1
    fleet.wait_status(
        lambda s: (condition(s, "ManifestVerified") or {}).get("reason") == "Replayed",
        "the replay refused",
    )
    command = {"id": "cmd", "kind": "Command", "spec": {"argv": ["true"]}}
    fleet.publish(fleet.envelope(3, [file("motd", "etc/motd", "hello v2\n"), command]))
    fleet.wait_status(
        lambda s: (condition(s, "ManifestVerified") or {}).get("reason") == "KindNotAllowed",
        "Command refused by the kind allow-list",
    )
    assert (root / "etc/motd").read_text() == "hello v2\n"


def test_a_restarted_agent_enforces_its_last_manifest_without_the_store(
    fleet: Fleet, root: Path, state_dir: Path
) -> None:
    process = start_agent(fleet, root, state_dir)
    try:
        fleet.publish(fleet.envelope(1, [file("motd", "etc/motd", "hello\n")]))
        fleet.wait_status(lambda s: s["applied_generation"] == 1, "generation 1 applied")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert process.stderr is not None
        process.stderr.close()

    (root / "etc/motd").write_text("changed while the agent was down\n")
    # The fleet store is unreachable now (no NATS server listens there); the agent still
    # enforces the manifest it verified and saved to its state dir.
    process = subprocess.Popen(
        [sys.executable, "-m", "accord", "agent", "--node", NODE, "--store",
         "nats://127.0.0.1:9?connect_timeout=0.2", "--trust", str(fleet.trust), "--root",
         str(root), "--state-dir", str(state_dir), "--heartbeat", "0.2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while (root / "etc/motd").read_text() != "hello\n":
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the saved manifest was not enforced"
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()
