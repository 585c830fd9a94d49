"""Nodes on a live control plane: enrolment, the agent's narrow credential, status CAS,
transitions with their initiator, conflicts and refusals."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from accord.store import keys
from e2e.server_harness import LiveServer, motd


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer.start(tmp_path) as running:
        yield running


def status(node: str, **fields: Any) -> dict[str, Any]:
    return {"node": node, "heartbeat_at": datetime.now(UTC).isoformat(), **fields}


def grant(server: LiveServer, **body: Any) -> str:
    with server.client(server.admin_token) as admin:
        response = admin.post("/api/v1/enrolment-tokens", json=body)
        assert response.status_code == 201
        token: str = response.json()["token"]
        return token


def test_an_enrolment_token_works_once_and_yields_an_agent_credential(server: LiveServer) -> None:
    token = grant(server, labels={"site": "fab1"})
    with server.client() as anonymous:
        enrolled = anonymous.post(
            "/api/v1/nodes/enrol",
            json={"token": token, "node": "edge-1", "labels": {"site": "mine", "rack": "r2"}},
        )
        again = anonymous.post("/api/v1/nodes/enrol", json={"token": token, "node": "edge-2"})
    assert enrolled.status_code == 201, enrolled.text
    body = enrolled.json()
    assert body["state"] == "discovered" and body["lifecycle"] == "default"
    assert body["labels"] == {"site": "fab1", "rack": "r2"}  # the operator's labels win
    assert body["signing_keys"][0]["key_id"] == server.key.key_id
    assert again.status_code == 401
    assert server.store.get("nodes.edge-2") is None
    assert not server.store.entries("enrol.")  # consumed
    with server.client(body["token"]) as agent:
        assert agent.get("/api/v1/whoami").json() == {
            "name": "agent:edge-1",
            "role": "agent",
            "node": "edge-1",
        }


def test_concurrent_uses_of_one_enrolment_token_enrol_exactly_one_node(
    server: LiveServer,
) -> None:
    token = grant(server)
    codes: dict[str, int] = {}

    def use(node: str) -> None:
        with server.client() as client:
            codes[node] = client.post(
                "/api/v1/nodes/enrol", json={"token": token, "node": node}
            ).status_code

    threads = [threading.Thread(target=use, args=(f"race-{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes.values()) == [201] + [401] * 5
    assert len(server.store.entries("nodes.")) == 1


def test_enrolment_refusals(server: LiveServer) -> None:
    pinned = grant(server, node="only-me")
    with server.client() as client:
        wrong = client.post("/api/v1/nodes/enrol", json={"token": pinned, "node": "not-me"})
        assert wrong.status_code == 403
        bad_id = client.post("/api/v1/nodes/enrol", json={"token": pinned, "node": "../etc"})
        assert bad_id.status_code == 422
        unknown = client.post(
            "/api/v1/nodes/enrol", json={"token": grant(server), "node": "x", "lifecycle": "nope"}
        )
        assert unknown.status_code == 422 and "unknown lifecycle" in unknown.json()["detail"]
        right = client.post("/api/v1/nodes/enrol", json={"token": pinned, "node": "only-me"})
        assert right.status_code == 201
    server.enrol("taken")
    with server.client() as client:
        taken = client.post("/api/v1/nodes/enrol", json={"token": grant(server), "node": "taken"})
    assert taken.status_code == 409
    assert server.store.get("nodes.not-me") is None and server.store.get("nodes.x") is None


def test_an_agent_reads_only_its_own_desired_state_and_writes_only_its_own_status(
    server: LiveServer,
) -> None:
    mine, theirs = server.enrol("n1", {"site": "a"}), server.enrol("n2", {"site": "a"})
    with server.client(server.admin_token) as admin:
        admin.post("/api/v1/manifests", content=motd()).raise_for_status()
        admin.put("/api/v1/assignments/motd", json={"selector": {"site": "a"}}).raise_for_status()
    with server.client(mine) as agent:
        assert agent.get("/api/v1/nodes/n1/desired").status_code == 200
        assert agent.get("/api/v1/nodes/n2/desired").status_code == 403
        assert agent.put("/api/v1/nodes/n2/status", json=status("n2")).status_code == 403
        assert agent.put("/api/v1/nodes/n1/status", json=status("n2")).status_code == 422
        assert agent.get("/api/v1/status").status_code == 403
        assert agent.get("/api/v1/nodes").status_code == 403
        assert agent.post("/api/v1/manifests", content=motd("x")).status_code == 403
        assert agent.put("/api/v1/nodes/n1/status", json=status("n1")).status_code == 200
    with server.client(server.admin_token) as admin:  # nobody else writes status, not even admin
        assert admin.put("/api/v1/nodes/n1/status", json=status("n1")).status_code == 403
    assert server.store.get(keys.status_key("n2")) is None
    with server.client(theirs) as other:
        assert other.get("/api/v1/nodes/n1/status").status_code == 403


def test_status_writes_are_compare_and_set(server: LiveServer) -> None:
    with server.client(server.enrol("n1")) as agent:
        assert agent.get("/api/v1/nodes/n1/status").status_code == 404
        first = agent.put("/api/v1/nodes/n1/status", json=status("n1", state="running"))
        assert first.status_code == 200
        etag = first.headers["etag"]
        assert etag == f'"{first.json()["revision"]}"'
        again = agent.put("/api/v1/nodes/n1/status", json=status("n1"))
        assert again.status_code == 428  # it exists: say which revision you replace
        second = agent.put(
            "/api/v1/nodes/n1/status",
            json=status("n1", applied_generation=1),
            headers={"If-Match": etag},
        )
        assert second.status_code == 200
        stale = agent.put(
            "/api/v1/nodes/n1/status",
            json=status("n1", applied_generation=9),
            headers={"If-Match": etag},
        )
        assert stale.status_code == 412
        bad = agent.put(
            "/api/v1/nodes/n1/status", json=status("n1"), headers={"If-Match": "yesterday"}
        )
        assert bad.status_code == 400
        naive = agent.put(
            "/api/v1/nodes/n1/status",
            headers={"If-Match": second.headers["etag"]},
            json={"node": "n1", "heartbeat_at": "2030-01-01T00:00:00"},
        )
        assert naive.status_code == 422
        current = agent.get("/api/v1/nodes/n1/status")
    assert current.headers["etag"] == second.headers["etag"]
    assert current.json()["applied_generation"] == 1


def transition(client: httpx.Client, node: str, **body: Any) -> httpx.Response:
    return client.post(f"/api/v1/nodes/{node}/transitions", json=body)


def test_transitions_record_the_caller_and_refuse_what_the_lifecycle_refuses(
    server: LiveServer,
) -> None:
    server.enrol("n1")
    alice, viewer = server.issue("operator", "alice"), server.issue("viewer", "val")
    with server.client(alice) as client:
        moved = transition(client, "n1", to="provisioning", reason="first boot")
        assert moved.status_code == 201, moved.text
        assert moved.json()["initiator"] == "alice" and moved.json()["from"] == "discovered"
        stale = transition(client, "n1", to="in_service", expect="discovered")
        assert stale.status_code == 409 and stale.json()["error"] == "StaleStateError"
        refused = transition(client, "n1", to="retired")
        assert refused.status_code == 422 and "not allowed" in refused.json()["detail"]
        guarded = transition(client, "n1", to="in_service")  # guard: converged, no status yet
        assert guarded.status_code == 422 and "converged" in guarded.json()["detail"]
        unknown = transition(client, "n1", to="on_the_moon")
        assert unknown.status_code == 422
        forced = transition(client, "n1", to="retired", force=True, reason="scrap")
        assert forced.status_code == 403  # force is the admin's
        assert transition(client, "ghost", to="provisioning").status_code == 404
    with server.client(viewer) as client:
        assert transition(client, "n1", to="rma", reason="x").status_code == 403
    with server.client(server.admin_token) as admin:
        forced = transition(admin, "n1", to="retired", force=True, reason="scrap")
        assert forced.status_code == 201 and forced.json()["forced"] is True
        history = admin.get("/api/v1/nodes/n1/history").json()
        detail = admin.get("/api/v1/nodes/n1").json()
    assert [(h["to"], h["initiator"]) for h in history] == [
        ("provisioning", "alice"),
        ("retired", "admin"),
    ]
    assert detail["node"]["state"] == "retired" and detail["next"] == []


def test_the_converged_guard_reads_the_agents_status(server: LiveServer) -> None:
    agent = server.enrol("n1", {"site": "a"})
    with server.client(server.admin_token) as admin:
        admin.post("/api/v1/manifests", content=motd()).raise_for_status()
        admin.put("/api/v1/assignments/motd", json={"selector": {"site": "a"}}).raise_for_status()
        transition(admin, "n1", to="provisioning").raise_for_status()
        ready = {"type": "Ready", "status": "True", "reason": "Applied"}
        with server.client(agent) as client:
            etag = None

            def report(**fields: Any) -> None:
                nonlocal etag
                headers = {"If-Match": etag} if etag else {}
                written = client.put(
                    "/api/v1/nodes/n1/status",
                    headers=headers,
                    json=status("n1", conditions=[ready], **fields),
                )
                written.raise_for_status()
                etag = written.headers["etag"]

            report(applied_manifest="motd", applied_generation=0)
            behind = transition(admin, "n1", to="in_service")
            assert behind.status_code == 422  # Ready, but generation 1 is not applied yet
            # Generation 1 of another manifest (the node's previous assignment) is not motd's.
            report(applied_manifest="previous", applied_generation=1)
            assert transition(admin, "n1", to="in_service").status_code == 422
            report(applied_manifest="motd", applied_generation=1)
        assert transition(admin, "n1", to="in_service").status_code == 201


def test_relabelling_is_audited_with_its_initiator(server: LiveServer) -> None:
    server.enrol("n1", {"site": "a"})
    with server.client(server.issue("operator", "olga")) as olga:
        changed = olga.put("/api/v1/nodes/n1/labels", json={"labels": {"site": "b"}})
        assert changed.status_code == 200 and changed.json()["labels"] == {"site": "b"}
        bad = olga.put("/api/v1/nodes/n1/labels", json={"labels": {"bad key!": "x"}})
        assert bad.status_code == 422
        assert olga.put("/api/v1/nodes/ghost/labels", json={"labels": {}}).status_code == 404
        replay = olga.get("/api/v1/events", params={"follow": "false"}).text
    assert "event: node.labels_changed" in replay and '"initiator": "olga"' in replay
