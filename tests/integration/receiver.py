"""A real webhook receiver on 127.0.0.1 for tests: records, verifies and misbehaves on cue.

Usage::

    with Receiver({"/hook": SECRET}) as receiver:
        receiver.script.extend([Reply(500), Reply(500), Reply(delay=1.0), Reply(429, "0")])
        receiver.by_event["node.transition:n1:3"] = deque([Reply(410)])
        ... POST to receiver.url("/hook") ...
        assert [r.event_id for r in receiver.accepted()] == [...]

Every request is recorded on arrival (headers, body, whether its signature verifies) and then
answered with the first reply queued for its event id in ``by_event``, else the next one in
``script``, else ``default``. A request whose signature does not verify is answered 401.
A ``delay`` sleeps before answering (to outlast a client's timeout); ``hold`` waits for a
``threading.Event`` (at most ``HOLD_LIMIT`` seconds) to keep a request in flight.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from local_http import ServedInThread

from accord.lifecycle.webhooks import verify_signature

HOLD_LIMIT = 10.0


@dataclass(frozen=True)
class Reply:
    """How to answer one request."""

    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0
    hold: threading.Event | None = None


@dataclass(frozen=True)
class Received:
    """One request, as it arrived, and the status it was answered with."""

    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    status: int

    @property
    def event_id(self) -> str:
        return self.headers.get("x-accord-event-id", "")


@dataclass
class Receiver(ServedInThread):
    """A threaded HTTP/1.1 server; ``secrets`` maps each path to its signing secret."""

    secrets: dict[str, str]
    script: deque[Reply] = field(default_factory=deque)
    by_event: dict[str, deque[Reply]] = field(default_factory=dict)
    default: Reply = field(default_factory=Reply)
    requests: list[Received] = field(default_factory=list)
    tolerance_s: float = 300

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def fail(self, times: int, status: int = 500) -> None:
        """Answer the next ``times`` requests with ``status``."""
        self.script.extend(Reply(status) for _ in range(times))

    def accepted(self, path: str | None = None) -> list[Received]:
        """Requests answered 2xx (in arrival order), optionally only those to ``path``."""
        with self._lock:
            return [
                r for r in self.requests
                if 200 <= r.status < 300 and (path is None or r.path == path)
            ]  # fmt: skip

    def seen(self, event_id: str) -> int:
        """How many requests carried ``event_id``."""
        with self._lock:
            return sum(r.event_id == event_id for r in self.requests)

    async def wait_until(self, condition: Callable[[], bool], within: float = 10.0) -> None:
        """Until ``condition`` holds, checked on each request; ``TimeoutError`` after ``within``."""
        changed = asyncio.Event()
        waiter = (asyncio.get_running_loop(), changed)
        with self._lock:
            self._waiters.append(waiter)
        try:
            async with asyncio.timeout(within):
                while True:
                    changed.clear()  # before the check, so that a request after it still wakes us
                    if condition():
                        return
                    await changed.wait()
        finally:
            with self._lock:
                self._waiters.remove(waiter)

    def _reply_for(self, event_id: str) -> Reply:
        with self._lock:
            queued = self.by_event.get(event_id)
            if queued:
                return queued.popleft()
            return self.script.popleft() if self.script else self.default

    def _record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)
            for loop, changed in self._waiters:
                loop.call_soon_threadsafe(changed.set)

    def __enter__(self) -> Receiver:
        self._serve(_handler_for(self))
        return self


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            secret = receiver.secrets.get(self.path)
            valid = secret is not None and verify_signature(
                secret,
                headers.get("x-accord-timestamp", ""),
                body,
                headers.get("x-accord-signature", ""),
                tolerance_s=receiver.tolerance_s,
            )
            reply = receiver._reply_for(headers.get("x-accord-event-id", ""))
            status = reply.status if valid else 401
            receiver._record(Received(self.path, headers, body, valid, status))
            if reply.delay:
                time.sleep(reply.delay)
            if reply.hold is not None:
                reply.hold.wait(HOLD_LIMIT)
            try:
                self.send_response(status)
                if reply.retry_after is not None:
                    self.send_header("Retry-After", reply.retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up waiting; nothing to answer

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: tests assert on ``requests`` instead of reading a log."""

    return Handler
