"""``accord server`` as a person runs it: a real process, real files, signals.

The command module is run through ``typer.run`` (registering it in ``accord``'s root app is
the CLI's business); everything else is what ``accord server`` does.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from accord import signing

RUN = "import typer; from accord.cli.server import serve; typer.run(serve)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_server(tmp_path: Path) -> tuple[str, str]:
    """Start the server, check it answers, stop it with SIGTERM; returns (stderr, token)."""
    port = free_port()
    command = [
        sys.executable,
        "-c",
        RUN,
        "--store",
        f"sqlite:///{tmp_path / 'fleet.db'}",
        "--port",
        str(port),
        "--keys",
        str(tmp_path / "keys"),
        "--admin-token-file",
        str(tmp_path / "admin-token"),
    ]
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "accord server did not start"
                time.sleep(0.05)
        token = (tmp_path / "admin-token").read_text().strip()
        who = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}
        )
        assert who.json() == {"name": "admin", "role": "admin", "node": None}
        page = httpx.get(f"http://127.0.0.1:{port}/")
        assert page.status_code == 200 and "accord fleet" in page.text
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    # uvicorn shuts down cleanly, then re-raises the signal so that the exit status says why.
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr
    return stderr, token


def test_the_server_makes_its_keys_and_admin_token_once_and_keeps_them(tmp_path: Path) -> None:
    first, token = run_server(tmp_path)
    key = signing.SigningKey.load(tmp_path / "keys" / "signing.key")
    assert (tmp_path / "keys" / "signing.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "admin-token").stat().st_mode & 0o777 == 0o600
    assert signing.VerifyKey.load(tmp_path / "keys" / "signing.pub") == key.verify_key
    assert f"signing keys: {key.key_id} (new)" in first
    assert f"admin token (new) in {tmp_path / 'admin-token'}" in first
    assert "http://127.0.0.1:" in first
    assert token not in first  # the token is never printed

    second, same = run_server(tmp_path)
    assert same == token
    assert f"signing keys: {key.key_id}\n" in second
    assert f"admin token in {tmp_path / 'admin-token'}" in second
