"""A real control plane for tests: uvicorn on 127.0.0.1 in a thread, over a real SQLite file.

The app opens the store itself (from its URL, inside the server's event loop: a SQLite
connection belongs to the thread that opened it); the test reads the same file through its
own store object (:class:`StoreView`), as a second process would. The listening socket is bound
before uvicorn starts (port 0, then handed over), so there is no free-port race.

Usage::

    with LiveServer.start(tmp_path) as server:
        admin = server.client(server.admin_token)
        admin.get("/api/v1/status")
        server.store.get("fleet.desired.n1")
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from accord import signing
from accord.server.app import create_app
from accord.store import Entry, Store, open_store

T = TypeVar("T")
ADMIN_TOKEN = "acc_test-admin-token-0123456789abcdef"

MOTD = """\
metadata:
  name: motd
resources:
  - id: motd
    kind: File
    spec:
      path: /etc/motd
      content: "{content}\\n"
"""


def motd(content: str = "hello", name: str = "motd") -> str:
    return MOTD.format(content=content).replace("name: motd", f"name: {name}")


class StoreView:
    """The test's own synchronous view of the server's store (its own connection and loop)."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self.store: Store = self._loop.run_until_complete(open_store(url))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def get(self, key: str) -> Entry | None:
        return self.run(self.store.get(key))

    def entries(self, prefix: str = "") -> list[Entry]:
        return self.run(self.store.list(prefix))

    def snapshot(self) -> tuple[list[tuple[str, int]], int]:
        """Every key with its revision, and the number of events: equal snapshots, no writes."""
        entries = [(e.key, e.revision) for e in self.entries()]
        events = self.run(self.store.read("events"))
        return entries, len(events)

    def close(self) -> None:
        self.run(self.store.close())
        self._loop.close()


@dataclass
class LiveServer:
    """A running control plane: its URL, admin token, signing key and a view of its store."""

    url: str
    admin_token: str
    key: signing.SigningKey
    store: StoreView
    db: Path

    @classmethod
    @contextmanager
    def start(
        cls, tmp_path: Path, *, store_url: str | None = None, **settings: Any
    ) -> Iterator[LiveServer]:
        """Serve ``create_app(**settings)`` until the block ends.

        The store is ``store_url``, by default a new SQLite file ``tmp_path/accord.db``; the
        control plane's flow run locks are in ``tmp_path/flows`` unless ``flows_dir`` is given.
        """
        db = tmp_path / "accord.db"
        url = store_url or f"sqlite:///{db}"
        settings.setdefault("flows_dir", tmp_path / "flows")
        key = signing.SigningKey.generate()
        app = create_app(
            store=url,
            signing_keys=[key],
            admin_token=ADMIN_TOKEN,
            event_poll_interval=0.05,
            **settings,
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_level="warning", timeout_graceful_shutdown=1, lifespan="on"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the control plane did not start")
            time.sleep(0.01)
        view = StoreView(url)
        try:
            yield cls(
                url=f"http://127.0.0.1:{port}", admin_token=ADMIN_TOKEN, key=key, store=view, db=db
            )
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            view.close()
            sock.close()
            if thread.is_alive():
                raise RuntimeError("the control plane did not stop")

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def issue(self, role: str, name: str | None = None) -> str:
        """A new person's token of ``role``."""
        with self.client(self.admin_token) as admin:
            response = admin.post("/api/v1/tokens", json={"name": name or role, "role": role})
            response.raise_for_status()
            token: str = response.json()["token"]
            return token

    def enrol(self, node: str, labels: dict[str, str] | None = None) -> str:
        """Enrol ``node`` through an enrolment token; returns its agent token."""
        with self.client(self.admin_token) as admin:
            grant = admin.post("/api/v1/enrolment-tokens", json={})
            grant.raise_for_status()
            response = admin.post(
                "/api/v1/nodes/enrol",
                json={"token": grant.json()["token"], "node": node, "labels": labels or {}},
            )
            response.raise_for_status()
            token: str = response.json()["token"]
            return token

    def trust(self) -> signing.TrustStore:
        return signing.TrustStore([self.key.verify_key])
