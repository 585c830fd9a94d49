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
from e2e.server_harness import LiveServer
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


def files_manifest(name: str, path: str, content: str) -> str:
    return (
        f"metadata: {{name: {name}}}\n"
        "resources:\n"
        f"  - {{id: f, kind: File, spec: {{path: {path}, content: {json.dumps(content)}}}}}\n"
    )


def test_a_reassigned_node_takes_a_lower_generation_and_refuses_the_old_envelope(
    tmp_path: Path, root: Path, state_dir: Path
) -> None:
    """The control plane moves the node from big (generation 3) to small (generation 1); the
    agent applies small, refuses big's old envelope written back to its key, and after a
    withdrawal and a new assignment takes the same manifest again under a higher sequence."""
    with LiveServer.start(tmp_path) as server:
        server.enrol(NODE, {"role": "big"})
        trust = tmp_path / "trust"
        trust.mkdir()
        server.key.verify_key.save(trust / "control-plane.pub")

        def status() -> dict[str, Any] | None:
            entry = server.store.get(status_key(NODE))
            return json.loads(entry.value) if entry else None

        def wait_status(check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
            deadline = time.monotonic() + 20
            last = None
            while time.monotonic() < deadline:
                last = status()
                if last is not None and check(last):
                    return last
                time.sleep(0.1)
            raise AssertionError(f"timed out waiting for {what}; last status: {last}")

        def desired() -> signing.SignedManifest:
            entry = server.store.get(desired_key(NODE))
            assert entry is not None
            return signing.load_envelope(entry.value)

        with server.client(server.admin_token) as admin:
            admin.post(f"/api/v1/nodes/{NODE}/transitions", json={"to": "provisioning"})
            admin.post("/api/v1/manifests", content=files_manifest("big", "etc/big", "one\n"))
            admin.put("/api/v1/assignments/big", json={"selector": {"role": "big"}})
            for text in ("two\n", "three\n"):
                made = admin.post(
                    "/api/v1/manifests", content=files_manifest("big", "etc/big", text)
                )
                assert made.json()["published_to"] == [NODE]
            admin.post("/api/v1/manifests", content=files_manifest("small", "etc/small", "tiny\n"))
            admin.put("/api/v1/assignments/small", json={"selector": {"role": "small"}})
        big = desired()
        assert big.sequence == 3

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "accord", "agent", "--node", NODE,
                 "--store", f"sqlite:///{server.db}", "--trust", str(trust), "--root", str(root),
                 "--state-dir", str(state_dir), "--heartbeat", "0.2", "--drift-interval", "0.3"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip

        def stop(process: subprocess.Popen[bytes]) -> None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            assert process.stderr is not None
            process.stderr.close()

        process = start()
        try:
            wait_status(
                lambda s: (s["applied_manifest"], s["applied_generation"]) == ("big", 3),
                "big generation 3 applied",
            )
            with server.client(server.admin_token) as admin:
                moved = admin.put(
                    f"/api/v1/nodes/{NODE}/labels", json={"labels": {"role": "small"}}
                )
                moved.raise_for_status()
            small = desired()
            assert small.sequence == 4
            applied = wait_status(
                lambda s: (s["applied_manifest"], s["applied_generation"]) == ("small", 1),
                "small generation 1 applied after big generation 3",
            )
            assert applied["observed_sequence"] == 4 and applied["manifest"] == "small"
            assert condition(applied, "ManifestVerified") is None
            assert (root / "etc/small").read_text() == "tiny\n"

            # big's old envelope, validly signed, written back to the node's key: a replay.
            server.store.run(
                server.store.store.put(desired_key(NODE), big.model_dump_json().encode())
            )
            refused = wait_status(
                lambda s: (condition(s, "ManifestVerified") or {}).get("reason") == "Replayed",
                "big's old envelope refused",
            )
            assert refused["applied_manifest"] == "small" and refused["observed_sequence"] == 4
            assert "sequence 3" in condition(refused, "ManifestVerified")["message"]  # type: ignore[index]

            # Withdrawn, then selected again: the same manifest, a higher sequence, accepted.
            with server.client(server.admin_token) as admin:
                assert admin.delete("/api/v1/assignments/small").status_code == 204
                assert server.store.get(desired_key(NODE)) is None
                admin.put("/api/v1/assignments/small", json={"selector": {"role": "small"}})
                again = desired()
                assert again.sequence > small.sequence and again.manifest == small.manifest
                settled = wait_status(
                    lambda s: (
                        s["observed_sequence"] == again.sequence
                        and condition(s, "ManifestVerified") is None
                    ),
                    "the re-published manifest accepted",
                )
                assert (settled["applied_manifest"], settled["applied_generation"]) == ("small", 1)
                view = admin.get(f"/api/v1/status/{NODE}").json()
                assert view["desired"]["sequence"] == again.sequence
                # The converged guard compares the manifest too: small 1 is what was published.
                moved = admin.post(f"/api/v1/nodes/{NODE}/transitions", json={"to": "in_service"})
                assert moved.status_code == 201, moved.text
        finally:
            stop(process)

        # Restarted, the agent remembers the sequence from its saved envelope: the first
        # publish of small (the same manifest, an older sequence) is a replay too.
        process = start()
        try:
            wait_status(lambda s: s["observed_sequence"] == again.sequence, "the restart")
            server.store.run(
                server.store.store.put(desired_key(NODE), small.model_dump_json().encode())
            )
            refused = wait_status(
                lambda s: (condition(s, "ManifestVerified") or {}).get("reason") == "Replayed",
                "small's first envelope refused after the restart",
            )
            assert refused["observed_sequence"] == again.sequence
        finally:
            stop(process)
