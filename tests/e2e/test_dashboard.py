"""The dashboard in a real browser: headless Chromium renders the fleet from the live API.

Chromium runs with a virtual-time budget and dumps the DOM once the page settled, so the
assertions see what a person would: the node table (ids, lifecycle states, desired vs applied
generation, Ready and Stale) and the event list (replayed from the SSE endpoint). Live updates
over the stream are covered by the HTTP tests of ``/api/v1/events``; under virtual time
Chromium does not deliver a streaming body.

Without ``/usr/bin/chromium`` the test is skipped, loudly: CI installs it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from e2e.server_harness import LiveServer, motd

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
    "--dump-dom",
]


class Page(HTMLParser):
    """The rendered page: table rows by node id, event lines, and text by element id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.events: list[str] = []
        self.text: dict[str, str] = {}
        self._row: str | None = None
        self._cell: list[str] | None = None
        self._id: str | None = None
        self._in_event = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        node, element = found.get("data-node"), found.get("id")
        if tag == "tr" and node:
            self._row = node
            self.rows[node] = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "li":
            self._in_event = True
            self.events.append("")
        if element:
            self._id = element
            self.text.setdefault(element, "")

    def handle_endtag(self, tag: str) -> None:
        self._id = None
        if tag == "td" and self._row is not None and self._cell is not None:
            self.rows[self._row].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "li":
            self._in_event = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_event:
            self.events[-1] += data
        if self._id is not None:
            self.text[self._id] += data


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"SKIPPED LOUDLY: {CHROMIUM} is missing, so the dashboard is NOT tested "
            "here (CI installs chromium; `apt-get install chromium` to run it)"
        )
    with LiveServer.start(tmp_path) as running:
        yield running


def render(server: LiveServer, tmp_path: Path, token: str) -> Page:
    result = subprocess.run(
        [
            str(CHROMIUM),
            *FLAGS,
            f"--user-data-dir={tmp_path / 'chromium'}",
            f"{server.url}/#token={token}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return Page(result.stdout)


def test_the_dashboard_shows_the_fleet(server: LiveServer, tmp_path: Path) -> None:
    agent = server.enrol("edge-1", {"site": "fab1"})
    server.enrol("edge-2", {"site": "fab2"})
    moved = server.enrol("edge-3", {"site": "fab1"})  # reassigned; still runs its old manifest
    with server.client(server.admin_token) as admin:
        admin.post("/api/v1/manifests", content=motd()).raise_for_status()
        admin.put("/api/v1/assignments/motd", json={"selector": {"site": "fab1"}})
        admin.post("/api/v1/nodes/edge-1/transitions", json={"to": "provisioning"})
    with server.client(agent) as client:
        client.put(
            "/api/v1/nodes/edge-1/status",
            json={
                "node": "edge-1",
                "observed_generation": 1,
                "applied_generation": 1,
                "heartbeat_at": datetime.now(UTC).isoformat(),
                "conditions": [{"type": "Ready", "status": "True", "reason": "Applied"}],
                "resources": [
                    {"id": "motd", "kind": "File", "phase": "applied"},
                    {
                        "id": "web",
                        "kind": "Package",
                        "phase": "applied",
                        "details": {"version": "1.22.1"},
                    },
                ],
            },
        ).raise_for_status()

    with server.client(moved) as client:
        client.put(
            "/api/v1/nodes/edge-3/status",
            json={
                "node": "edge-3",
                "applied_manifest": "old",
                "applied_generation": 1,
                "heartbeat_at": datetime.now(UTC).isoformat(),
            },
        ).raise_for_status()

    page = render(server, tmp_path, server.issue("viewer", "vera"))

    assert page.text["who"] == "vera (viewer)"
    assert page.text["summary"] == "3 nodes, 0 stale"
    node, state, labels, manifest, desired, applied, ready, stale, kept, _ = page.rows["edge-1"]
    assert (node, state, labels, manifest) == ("edge-1", "provisioning", "site=fab1", "motd")
    assert (desired, applied, ready, stale) == ("1", "1", "True", "False")
    assert kept == "motd · web version=1.22.1"  # per-kind details, as fleet status reports them
    node, state, _, manifest, desired, applied, ready, stale, kept, beat = page.rows["edge-2"]
    assert (node, state, manifest, desired, applied) == ("edge-2", "discovered", "—", "—", "—")
    assert kept == "—"
    assert (stale, beat) == ("Unknown", "never")
    # Generation 1 of another manifest is not motd's generation 1.
    _, _, _, manifest, desired, applied, *_ = page.rows["edge-3"]
    assert (manifest, desired, applied) == ("motd", "1", "old 1")
    assert any("node.transition edge-1 by admin" in line for line in page.events)
    assert any("manifest.published" in line for line in page.events)
    assert not page.text.get("error")


def test_a_bad_token_shows_an_error_instead_of_the_fleet(
    server: LiveServer, tmp_path: Path
) -> None:
    server.enrol("edge-1")
    page = render(server, tmp_path, "acc_wrong")
    assert page.rows == {}
    assert "401" in page.text["error"]
