"""A real fleet for end-to-end tests: nats-server, ``accord server`` and agents as processes.

Everything lives under one directory (``root``), so that a ``pgrep -f root`` after teardown
shows any process that outlived the fleet::

    root/nats/          the nats-server's configuration, log and JetStream store
    root/server/        keys, admin token, state dir and log of the control plane
    root/trust/         the control plane's public key, pinned by every agent
    root/nodes/NODE/    root/ (what the agent converges), state/ and agent.log

The control plane is driven over HTTP with the admin token, as ``accord up`` drives it.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from accord.testing.nats_server import NatsServer

API = "/api/v1"
BUCKET = "fleete2e"
SELECTOR = {"fleet": "e2e"}
MANIFEST = "fleet"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def manifest(files: dict[str, str]) -> str:
    """The fleet manifest: one File resource per ``relative path -> content``.

    A resource's id is its path's (``etc/motd`` -> ``etc-motd``), so that it names the same file
    in every version: the agent prunes by id, and a path given to another id is another story
    (see ``test_renaming_a_resource_keeps_its_file``).
    """
    return document(
        {re.sub(r"[^a-z0-9]+", "-", path.lower()): (path, text) for path, text in files.items()}
    )


def document(resources: dict[str, tuple[str, str]]) -> str:
    """The fleet manifest with one File resource per ``id -> (relative path, content)``."""
    lines = ["api_version: accord/v1", f"metadata: {{name: {MANIFEST}}}", "resources:"]
    for rid, (path, content) in sorted(resources.items()):
        lines += [
            f"  - id: {rid}",
            "    kind: File",
            f"    spec: {{path: {path}, content: {json.dumps(content)}}}",  # JSON is YAML
        ]
    return "\n".join(lines) + "\n"


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Fleet:
    """A nats-server, a control plane and ``len(nodes)`` agents; see the module docstring."""

    def __init__(self, root: Path, nats: NatsServer, nodes: list[str]) -> None:
        self.root = root
        self.nats = nats
        self.nodes = nodes
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server_dir = root / "server"
        self.trust = root / "trust"
        self.server: subprocess.Popen[bytes] | None = None
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.token = ""
        self.initial = 0  # the generation bootstrap published

    @property
    def store(self) -> str:
        return f"{self.nats.url}?bucket={BUCKET}"

    def node_root(self, node: str) -> Path:
        return self.root / "nodes" / node / "root"

    # -- processes ------------------------------------------------------------------

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "accord", *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def start_server(self) -> None:
        self.server = self._spawn(
            ["server", "--store", self.store, "--keys", str(self.server_dir / "keys"),
             "--admin-token-file", str(self.server_dir / "admin-token"),
             "--port", str(self.port), "--state-dir", str(self.server_dir),
             "--stale-after", "30"],
            self.server_dir / "server.log",
        )  # fmt: skip
        token_file = self.server_dir / "admin-token"

        def ready() -> bool:
            assert self.server is not None and self.server.poll() is None, (
                "the control plane exited: " + self.log(self.server_dir / "server.log")
            )
            try:
                ok = httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False
            return ok and token_file.exists()

        wait_until("the control plane to answer", ready)
        self.token = token_file.read_text().strip()

    def stop_server(self) -> None:
        if self.server is not None:
            stop_process(self.server)

    def start_agent(self, node: str) -> None:
        home = self.root / "nodes" / node
        self.node_root(node).mkdir(parents=True, exist_ok=True)
        self.agents[node] = self._spawn(
            ["agent", "--node", node, "--store", self.store, "--trust", str(self.trust),
             "--root", str(self.node_root(node)), "--state-dir", str(home / "state"),
             "--heartbeat", "0.2", "--drift-interval", "0.5"],
            home / "agent.log",
        )  # fmt: skip

    def kill_agent(self, node: str) -> None:
        process = self.agents[node]
        process.kill()
        process.wait()

    def stop(self) -> None:
        """Stop every process (agents, control plane, nats-server), however far it got."""
        for process in self.agents.values():
            stop_process(process)
        self.stop_server()
        self.nats.stop()

    @staticmethod
    def log(path: Path) -> str:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return " (no log)"
        lines = [line for line in lines if "GET /api/v1/status" not in line]  # the polling
        return "\n" + "\n".join(lines[-30:])

    def logs(self) -> str:
        parts = [f"--- server{self.log(self.server_dir / 'server.log')}"]
        for node in self.nodes:
            parts.append(f"--- {node}{self.log(self.root / 'nodes' / node / 'agent.log')}")
        return "\n".join(parts)

    # -- the API --------------------------------------------------------------------

    def api(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.url + API, headers=headers, timeout=10)

    def bootstrap(self, files: dict[str, str]) -> int:
        """Enrol the nodes (moved to provisioning), publish ``files`` and assign them by label,
        pin the control plane's key, start the agents; returns the published generation."""
        with self.api() as api:
            for node in self.nodes:
                grant = api.post("/enrolment-tokens", json={})
                grant.raise_for_status()
                body = {"token": grant.json()["token"], "node": node, "labels": SELECTOR}
                api.post("/nodes/enrol", json=body).raise_for_status()
                moved = api.post(f"/nodes/{node}/transitions", json={"to": "provisioning"})
                moved.raise_for_status()
        generation = self.publish(files)
        with self.api() as api:
            api.put(f"/assignments/{MANIFEST}", json={"selector": SELECTOR}).raise_for_status()
        self.trust.mkdir(exist_ok=True)
        shutil.copy(self.server_dir / "keys" / "signing.pub", self.trust / "control-plane.pub")
        for node in self.nodes:
            self.start_agent(node)
        return generation

    def publish(self, files: dict[str, str]) -> int:
        """Publish the manifest with these files; returns its generation."""
        return self.publish_yaml(manifest(files))

    def publish_yaml(self, text: str) -> int:
        """Publish this manifest; returns its generation."""
        with self.api() as api:
            response = api.post(
                "/manifests",
                content=text.encode(),
                headers={"Content-Type": "application/yaml"},
            )
        assert response.status_code in (200, 201), response.text
        result = response.json()
        assert result["failed"] == {}, result
        generation: int = result["version"]["generation"]
        return generation

    def applied(self) -> dict[str, int]:
        """Each node's applied generation as the control plane reports it."""
        try:
            with self.api() as api:
                response = api.get("/status")
        except httpx.TransportError:
            return {}
        if response.status_code != 200:
            return {}
        return {
            view["node"]: view["status"]["applied_generation"]
            for view in response.json()
            if view.get("status")
        }

    def files_match(self, node: str, files: dict[str, str]) -> bool:
        for path, content in files.items():
            try:
                if (self.node_root(node) / path).read_text() != content:
                    return False
            except FileNotFoundError:
                return False
        return True

    def wait_converged(
        self, generation: int, files: dict[str, str], *, timeout: float = 30.0
    ) -> None:
        """Every node applied ``generation`` (per the API) and holds ``files`` on disk."""

        def converged() -> bool:
            applied = self.applied()
            return all(
                applied.get(node) == generation and self.files_match(node, files)
                for node in self.nodes
            )

        try:
            wait_until(f"generation {generation} on {self.nodes}", converged, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; applied={self.applied()}\n{self.logs()}") from None
