"""The SSE event stream on a live control plane: replay, live events, resuming by id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.server_harness import LiveServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer.start(tmp_path) as running:
        yield running


def messages(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse SSE messages off a streaming response as they arrive (comments skipped)."""
    fields: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in fields:
                yield {**fields, "data": json.loads(fields["data"])}
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def take(stream: Iterator[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    return [next(stream) for _ in range(count)]


def test_the_stream_replays_then_follows_and_resumes_after_last_event_id(
    server: LiveServer,
) -> None:
    server.enrol("n1")
    server.enrol("n2")
    with server.client(server.admin_token) as admin:
        with admin.stream("GET", "/api/v1/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = messages(response)
            replayed = take(stream, 2)
            # A change made while the stream is open arrives on it.
            admin.post("/api/v1/nodes/n1/transitions", json={"to": "provisioning"})
            (live,) = take(stream, 1)
        assert [m["event"] for m in replayed] == ["node.enrolled", "node.enrolled"]
        assert [m["data"]["node"] for m in replayed] == ["n1", "n2"]
        assert live["event"] == "node.transition"
        assert live["data"]["data"]["initiator"] == "admin"
        ids = [int(m["id"]) for m in [*replayed, live]]
        assert ids == sorted(ids) and len(set(ids)) == 3

        admin.post("/api/v1/nodes/n2/transitions", json={"to": "provisioning"})
        resume = {"Last-Event-ID": live["id"]}
        with admin.stream("GET", "/api/v1/events", headers=resume) as response:
            (missed,) = take(messages(response), 1)
        assert missed["data"]["node"] == "n2" and int(missed["id"]) > int(live["id"])

        after = admin.get("/api/v1/events", params={"after": replayed[0]["id"], "follow": False})
        assert [m["id"] for m in messages(after)] == [replayed[1]["id"], live["id"], missed["id"]]


def test_a_bad_cursor_is_a_400_and_viewers_may_stream_but_agents_may_not(
    server: LiveServer,
) -> None:
    agent = server.enrol("n1")
    with server.client(server.issue("viewer")) as viewer:
        bad = viewer.get("/api/v1/events", headers={"Last-Event-ID": "soon"})
        assert bad.status_code == 400
        assert viewer.get("/api/v1/events", params={"after": -1}).status_code == 422
        replay = viewer.get("/api/v1/events", params={"follow": False})
        assert replay.status_code == 200 and "node.enrolled" in replay.text
    with server.client(agent) as client:
        assert client.get("/api/v1/events", params={"follow": False}).status_code == 403
