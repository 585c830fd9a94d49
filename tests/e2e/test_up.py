"""``accord up`` as a user runs it: a real control plane, real agents, one command."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_up_starts_a_fleet_that_converges_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    port = free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "accord", "up", "--dir", str(tmp_path), "--port", str(port),
         "--agents", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        token_file = tmp_path / "admin-token"
        deadline = time.monotonic() + 90
        applied: dict[str, int] = {}
        while time.monotonic() < deadline and sorted(applied) != ["node-1", "node-2"]:
            assert up.poll() is None, up.communicate()[1].decode()
            time.sleep(0.5)
            if not token_file.exists():
                continue
            headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
            try:
                fleet = httpx.get(f"http://127.0.0.1:{port}/api/v1/status", headers=headers).json()
            except httpx.TransportError:
                continue
            applied = {
                n["node"]: n["status"]["applied_generation"]
                for n in fleet
                if n.get("status") and n["status"]["applied_generation"] >= 1
            }
        assert sorted(applied) == ["node-1", "node-2"], f"not converged: {applied}"
        for node in ("node-1", "node-2"):
            motd = tmp_path / "nodes" / node / "root" / "etc" / "motd"
            assert motd.read_text() == "This node is managed by accord.\n"
    finally:
        up.send_signal(signal.SIGINT)
        out, err = up.communicate(timeout=60)
    assert up.returncode == 0, err.decode()
    assert b"dashboard" in out and b"acc_" not in out  # the URL is shown, the token is not
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "agents or the server outlived `accord up`"
