"""Token auth on a live control plane: 401 without a known token, 403 below the role, hashing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.server_harness import LiveServer, motd


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer.start(tmp_path) as running:
        yield running


YAML = {"content-type": "application/yaml"}
STATUS = {"node": "n1", "heartbeat_at": "2030-01-01T00:00:00Z"}
LIFECYCLE_FILE = Path(__file__).parents[2] / "src/accord/lifecycle/default.yaml"

# (method, path, request kwargs, who may do it). Each allowed call must succeed for real.
ROUTES: list[tuple[str, str, dict[str, Any], set[str]]] = [
    ("GET", "/api/v1/status", {}, {"viewer", "operator", "admin"}),
    ("GET", "/api/v1/nodes/n1", {}, {"viewer", "operator", "admin"}),
    ("GET", "/api/v1/events?follow=false", {}, {"viewer", "operator", "admin"}),
    ("POST", "/api/v1/manifests", {"content": motd(), "headers": YAML}, {"operator", "admin"}),
    ("PUT", "/api/v1/assignments/motd", {"json": {"selector": {}}}, {"operator", "admin"}),
    ("GET", "/api/v1/nodes/n1/desired", {}, {"viewer", "operator", "admin", "agent:n1"}),
    ("PUT", "/api/v1/nodes/n1/labels", {"json": {"labels": {"a": "b"}}}, {"operator", "admin"}),
    ("POST", "/api/v1/enrolment-tokens", {"json": {}}, {"operator", "admin"}),
    ("GET", "/api/v1/tokens", {}, {"admin"}),
    ("POST", "/api/v1/tokens", {"json": {"name": "x", "role": "viewer"}}, {"admin"}),
    (
        "PUT",
        "/api/v1/lifecycles",
        {"content": LIFECYCLE_FILE.read_text(), "headers": YAML},
        {"admin"},
    ),
    ("PUT", "/api/v1/nodes/n1/status", {"json": STATUS}, {"agent:n1"}),
]


def test_every_route_checks_the_token_and_its_role(server: LiveServer) -> None:
    agents = {"agent:n1": server.enrol("n1"), "agent:n2": server.enrol("n2")}
    tokens = {role: server.issue(role) for role in ("viewer", "operator", "admin")} | agents
    with server.client(server.admin_token) as admin:  # the assignment needs its manifest
        admin.post("/api/v1/manifests", content=motd(), headers=YAML).raise_for_status()
    for method, path, kwargs, allowed in ROUTES:
        with server.client() as anonymous:
            assert anonymous.request(method, path, **kwargs).status_code == 401, path
        with server.client("acc_not-a-token-the-store-knows") as unknown:
            response = unknown.request(method, path, **kwargs)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
        for who, token in tokens.items():
            with server.client(token) as client:
                response = client.request(method, path, **kwargs)
            if who in allowed:
                assert response.status_code < 300, (method, path, who, response.text)
                if method == "PUT" and path.endswith("/status"):  # create-once w/o If-Match
                    kwargs = {"json": STATUS, "headers": {"If-Match": response.headers["etag"]}}
            else:
                assert response.status_code == 403, (method, path, who, response.text)


def test_tokens_are_stored_hashed_and_the_plaintext_is_shown_once(server: LiveServer) -> None:
    with server.client(server.admin_token) as admin:
        issued = admin.post("/api/v1/tokens", json={"name": "alice", "role": "operator"}).json()
        listed = admin.get("/api/v1/tokens").json()
    agent = server.enrol("n1")
    token, digest = issued["token"], hashlib.sha256(issued["token"].encode()).hexdigest()
    assert issued["id"] == digest
    assert server.store.get(f"tokens.{digest}") is not None
    assert token not in str(listed)
    for secret in (token, agent, server.admin_token):
        assert all(
            secret.encode() not in e.value and secret not in e.key for e in server.store.entries()
        )
        events = server.store.run(server.store.store.read("events"))
        assert all(secret.encode() not in r.data for r in events)
        for path in server.db.parent.glob(server.db.name + "*"):  # the file, its WAL and SHM
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    with server.client(token) as alice:
        assert alice.get("/api/v1/whoami").json() == {
            "name": "alice",
            "role": "operator",
            "node": None,
        }


def test_a_revoked_token_stops_working_and_revoking_is_audited(server: LiveServer) -> None:
    with server.client(server.admin_token) as admin:
        issued = admin.post("/api/v1/tokens", json={"name": "bob", "role": "viewer"}).json()
        with server.client(issued["token"]) as bob:
            assert bob.get("/api/v1/status").status_code == 200
            assert admin.delete(f"/api/v1/tokens/{issued['id']}").status_code == 204
            assert bob.get("/api/v1/status").status_code == 401
        assert admin.delete(f"/api/v1/tokens/{issued['id']}").status_code == 404
        replay = admin.get("/api/v1/events", params={"follow": "false"}).text
    assert "event: token.created" in replay and "event: token.revoked" in replay
    assert '"initiator": "admin"' in replay


def test_only_people_roles_can_be_issued(server: LiveServer) -> None:
    with server.client(server.admin_token) as admin:
        response = admin.post("/api/v1/tokens", json={"name": "sneaky", "role": "agent"})
    assert response.status_code == 422
    assert response.json()["error"] == "RequestValidationError"
