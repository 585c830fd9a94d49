"""A real HTTP server on 127.0.0.1 for tests: in-memory blobs, byte ranges, scripted faults.

Usage::

    with BlobServer() as server:
        url = server.add("/a.bin", data)
        server.faults.drop_after, server.faults.drop_times = 1 << 20, 1
        ...
        assert server.requests[-1].range == "bytes=1048576-"

Faults apply to every path and are read per request, so a test may change them between fetches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from local_http import ServedInThread


@dataclass
class Faults:
    """How the server misbehaves. The defaults serve correctly."""

    drop_after: int | None = None  # close the connection after this many body bytes…
    drop_times: int = 0  # …for this many requests, then serve whole
    status: int | None = None  # answer every request with this status and no body
    retry_after: str | None = None  # Retry-After header sent with ``status``
    ignore_range: bool = False  # always answer 200 with the whole blob


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    path: str
    range: str | None


@dataclass
class BlobServer(ServedInThread):
    """A threaded HTTP/1.1 server serving ``blobs`` by path. Start it with ``with``."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    requests: list[Request] = field(default_factory=list)

    def add(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``path``; return its URL."""
        self.blobs[path] = data
        return self.url(path)

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def __enter__(self) -> BlobServer:
        self._serve(_handler_for(self))
        return self


def _handler_for(server: BlobServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            wanted = self.headers.get("Range")
            server.requests.append(Request(self.path, wanted))
            faults = server.faults
            if faults.status is not None:
                self.send_response(faults.status)
                if faults.retry_after is not None:
                    self.send_header("Retry-After", faults.retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = server.blobs.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = 0
            if wanted and not faults.ignore_range:
                start = int(wanted.removeprefix("bytes=").partition("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if faults.drop_after is not None and faults.drop_times > 0:
                faults.drop_times -= 1
                # Send part of the promised body, then hang up: the client sees a short body.
                body = body[: faults.drop_after]
                self.close_connection = True
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up; nothing left to serve

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: tests assert on ``requests`` instead of reading a log."""

    return Handler
