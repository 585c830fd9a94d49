"""Flow runs over a live control plane: start, read, signal, refuse, resume after a restart.

The store is a real SQLite file; the control plane is uvicorn in a thread (``LiveServer``).
``test_server_flows_process.py`` signals a flow that runs in another process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.server_harness import LiveServer

pytestmark = pytest.mark.timeout(60)

APPROVAL = """\
name: approval
params: {ticket: null}
linear: true
tasks:
  - {id: approve, task: wait_signal, with: {name: approve}}
  - {id: nap, task: sleep, with: {seconds: 0.01}}
"""
ONBOARD = """\
name: onboard
params: {node: null}
tasks:
  - {id: provision, task: transition, with: {to: provisioning, reason: "flow ${run}"}}
"""
DEVICE = """\
name: device
linear: true
tasks:
  - {id: nap, task: sleep, with: {seconds: 1}}
  - {id: stage, task: converge, with: {manifest: firmware.yaml, goal: stage}}
  - {id: window, task: wait_window, with: {windows: windows.yaml}}
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer.start(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for tests that must leave it as they found it."""
    with LiveServer.start(tmp_path_factory.mktemp("flows")) as running:
        yield running


def until(read: Callable[[], Any], seconds: float = 20.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := read()):
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.02)
    return found


def state_of(client: httpx.Client, run_id: str, state: str) -> Callable[[], dict[str, Any] | None]:
    def read() -> dict[str, Any] | None:
        detail: dict[str, Any] = client.get(f"/api/v1/flows/{run_id}").json()
        return detail if detail["run"]["state"] == state else None

    return read


def start(client: httpx.Client, definition: Any, **body: Any) -> httpx.Response:
    return client.post("/api/v1/flows", json={"definition": definition, **body})


def events(server: LiveServer, kind: str) -> list[dict[str, Any]]:
    found = server.store.run(server.store.store.read("events"))
    return [e for e in (json.loads(r.data) for r in found) if e["type"] == kind]


def test_a_flow_started_over_the_api_waits_for_a_signal_and_finishes(server: LiveServer) -> None:
    with server.client(server.issue("operator", "olga")) as olga:
        started = start(olga, APPROVAL, params={"ticket": "CHG-1"})
        assert started.status_code == 201, started.text
        run = started.json()
        assert run["flow"] == "approval" and run["params"] == {"ticket": "CHG-1"}
        assert run["context"] == {"runner": "control-plane", "started_by": "olga",
                                  "roles": ["operator", "viewer"]}  # fmt: skip
        run_id = run["run_id"]
        waiting = until(state_of(olga, run_id, "waiting"))
        assert waiting["running_here"] is True
        assert waiting["run"]["waiting_for"] == {"approve": "signal approve"}
        assert [(t["id"], t["task"], t["state"]) for t in waiting["tasks"]] == [
            ("approve", "wait_signal", "waiting"),
            ("nap", "sleep", "pending"),
        ]
        sent = olga.post(
            f"/api/v1/flows/{run_id}/signals", json={"name": "approve", "data": {"ok": 1}}
        )
        assert sent.status_code == 201, sent.text
        assert sent.json()["run_id"] == run_id and sent.json()["name"] == "approve"
        done = until(state_of(olga, run_id, "succeeded"))
        assert done["running_here"] is False
        assert done["tasks"][0]["result"] == {"signal": "approve", "data": {"ok": 1}}
        assert [t["state"] for t in done["tasks"]] == ["succeeded", "succeeded"]
        journal = olga.get(f"/api/v1/flows/{run_id}/journal").json()
        again = olga.post(f"/api/v1/flows/{run_id}/signals", json={"name": "approve"})
    assert journal[0]["event"] == "started" and journal[0]["run"] == run_id
    receipt = next(e for e in journal if e.get("revision") is not None)
    assert receipt["by"] == "olga" and receipt["data"] == {"ok": 1}
    assert [e["seq"] for e in journal] == sorted(e["seq"] for e in journal)
    assert again.status_code == 409 and "has ended" in again.json()["detail"]
    assert [e["data"]["initiator"] for e in events(server, "flow.started")] == ["olga"]
    assert [e["data"]["signal"] for e in events(server, "flow.signalled")] == ["approve"]


def test_a_flow_moves_its_node_with_the_guards_of_the_api(server: LiveServer) -> None:
    server.enrol("edge-1")
    with server.client(server.admin_token) as admin:
        started = start(admin, ONBOARD, node="edge-1")
        assert started.status_code == 201, started.text
        assert started.json()["params"] == {"node": "edge-1"}  # from `node`
        run_id = started.json()["run_id"]
        until(state_of(admin, run_id, "succeeded"))
        node = admin.get("/api/v1/nodes/edge-1").json()["node"]
        history = admin.get("/api/v1/nodes/edge-1/history").json()
        # provisioning → in_service needs `converged`: the node never reported, so it fails.
        guarded = start(admin, ONBOARD.replace("provisioning", "in_service"), node="edge-1")
        failed = until(state_of(admin, guarded.json()["run_id"], "reverted"))
    assert node["state"] == "provisioning"
    assert history[-1]["workflow"] == run_id and history[-1]["initiator"] == "flow:onboard"
    assert "converged" in failed["tasks"][0]["error"]["message"]


def test_listing_filters_by_node_and_state_newest_first_in_pages(server: LiveServer) -> None:
    server.enrol("edge-1")
    with server.client(server.admin_token) as admin:
        ids = [start(admin, APPROVAL, params={"ticket": str(i)}).json()["run_id"] for i in range(3)]
        onboard = start(admin, ONBOARD, node="edge-1").json()["run_id"]
        until(state_of(admin, onboard, "succeeded"))
        for run_id in ids:
            until(state_of(admin, run_id, "waiting"))
        listed = admin.get("/api/v1/flows").json()
        of_node = admin.get("/api/v1/flows", params={"node": "edge-1"}).json()
        waiting = admin.get("/api/v1/flows", params={"state": "waiting", "limit": 2}).json()
        rest = admin.get(
            "/api/v1/flows", params={"state": "waiting", "before": waiting[-1]["run_id"]}
        ).json()
        bad = admin.get("/api/v1/flows", params={"state": "asleep", "limit": 0})
    assert [r["run_id"] for r in listed] == [onboard, *reversed(ids)]
    assert [r["run_id"] for r in of_node] == [onboard]
    assert [r["run_id"] for r in waiting + rest] == list(reversed(ids))
    assert bad.status_code == 422
    assert {p.split(":")[0] for p in bad.json()["problems"]} == {"query.state", "query.limit"}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"definition": DEVICE}, ["definition:5: task 'stage' (converge)",
                                  "definition:6: task 'window' (wait_window)"]),
        ({"definition": "name: x\ntasks:\n  - {id: a, task: nope}\n"},
         ["definition:3: task 'a': unknown task type 'nope'"]),
        ({"definition": {"name": "x", "tasks": [{"id": "a", "task": "sleep", "wat": 1}]}},
         ["task 'a': wat: Extra inputs are not permitted"]),
        ({"definition": "name: x\ntasks: [\n"}, ["definition:3:"]),
        ({"definition": APPROVAL}, ["parameter 'ticket' is required"]),
        ({"definition": APPROVAL, "params": {"ticket": 1, "other": 2}},
         ["unknown parameter 'other'"]),
        ({"definition": APPROVAL.replace("{name: approve}", "{name: Nope!}"),
          "params": {"ticket": 1}}, ["task 'approve' (wait_signal): with.name"]),
        ({"definition": APPROVAL, "params": {"ticket": 1}, "node": "ghost"},
         ["node: no node 'ghost'"]),
        ({"definition": APPROVAL, "nodes": "x"}, ["body.nodes: Extra inputs"]),
        ({"definition": 7}, ["body.definition", "valid string", "valid dictionary"]),
    ],
)  # fmt: skip
def test_bad_flows_are_refused_naming_what_is_wrong_and_store_nothing(
    shared: LiveServer, body: dict[str, Any], named: list[str]
) -> None:
    server = shared
    before = server.store.snapshot()
    with server.client(server.admin_token) as admin:
        refused = admin.post("/api/v1/flows", json=body)
    assert refused.status_code == 422, refused.text
    text = "\n".join([refused.json()["detail"], *(refused.json().get("problems") or [])])
    for part in named:
        assert part in text
    assert server.store.snapshot() == before
    assert not server.store.entries("flows") and not server.store.entries("flowdefs")
    assert not server.store.run(server.store.store.read("flow-journal"))


def test_signals_need_an_operator_a_known_run_and_a_good_name(server: LiveServer) -> None:
    agent = server.enrol("edge-9")
    viewer = server.issue("viewer", "vic")
    with server.client(server.admin_token) as admin:
        run_id = start(admin, APPROVAL, params={"ticket": "t"}).json()["run_id"]
        until(state_of(admin, run_id, "waiting"))
    before = server.store.snapshot()
    with server.client(viewer) as vic, server.client(agent) as bot:
        assert vic.get("/api/v1/flows").status_code == 200
        assert vic.get(f"/api/v1/flows/{run_id}").status_code == 200
        assert vic.get(f"/api/v1/flows/{run_id}/journal").status_code == 200
        assert vic.post(f"/api/v1/flows/{run_id}/signals", json={"name": "go"}).status_code == 403
        assert start(vic, APPROVAL).status_code == 403
        assert bot.get("/api/v1/flows").status_code == 403
    with server.client(server.admin_token) as admin:
        unknown = admin.post("/api/v1/flows/nosuch/signals", json={"name": "approve"})
        missing = admin.get("/api/v1/flows/nosuch/journal")
        bad = admin.post(f"/api/v1/flows/{run_id}/signals", json={"name": "Approve!"})
        assert server.store.snapshot() == before
        aborted = admin.post(f"/api/v1/flows/{run_id}/signals", json={"name": "abort"})
        assert aborted.status_code == 201
        until(state_of(admin, run_id, "aborted"))
    assert unknown.status_code == 404 and missing.status_code == 404
    assert bad.status_code == 422 and bad.json()["problems"][0].startswith("body.name:")


def test_the_control_plane_resumes_its_runs_after_a_restart(tmp_path: Path) -> None:
    with LiveServer.start(tmp_path) as first, first.client(first.admin_token) as admin:
        run_id = start(admin, APPROVAL, params={"ticket": "t"}).json()["run_id"]
        until(state_of(admin, run_id, "waiting"))
    with LiveServer.start(tmp_path) as second, second.client(second.admin_token) as admin:
        waiting = until(state_of(admin, run_id, "waiting"))
        assert waiting["run"]["resumed"] == 1 and waiting["running_here"]
        admin.post(f"/api/v1/flows/{run_id}/signals", json={"name": "approve"})
        done = until(state_of(admin, run_id, "succeeded"))
        journal = admin.get(f"/api/v1/flows/{run_id}/journal").json()
    assert [t["state"] for t in done["tasks"]] == ["succeeded", "succeeded"]
    # Stopped with the first server (interrupted, not crashed), resumed by the second.
    assert [(e["event"], e.get("was")) for e in journal if e.get("event")] == [
        ("started", None),
        ("resumed", "interrupted"),
    ]


def test_a_control_plane_without_a_flows_directory_reads_runs_but_starts_none(
    tmp_path: Path,
) -> None:
    with (
        LiveServer.start(tmp_path, flows_dir=None) as server,
        server.client(server.admin_token) as admin,
    ):
        refused = start(admin, APPROVAL, params={"ticket": "t"})
        listed = admin.get("/api/v1/flows")
    assert refused.status_code == 501 and "without flows" in refused.json()["detail"]
    assert listed.status_code == 200 and listed.json() == []
