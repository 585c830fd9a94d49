"""Manifests, assignments and fleet status on a live control plane: versions, signed
publishing, re-publishing on change, and Stale when heartbeats stop."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from accord import signing
from accord.providers import registry
from accord.store import keys
from accord.testing.nats_server import NatsServer, start_or_skip
from e2e.server_harness import LiveServer, motd


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer.start(tmp_path) as running:
        yield running


def verified(server: LiveServer, node: str) -> signing.Verified:
    """What ``node``'s agent would accept from its desired key (the signature checked)."""
    entry = server.store.get(keys.desired_key(node))
    assert entry is not None, f"nothing published to {node}"
    envelope = signing.load_envelope(entry.value)
    return server.trust().verify(envelope, node=node, kinds=registry.default().kinds())


def test_a_bad_manifest_is_refused_naming_its_line_and_nothing_is_stored(
    server: LiveServer,
) -> None:
    operator = server.issue("operator")
    before = server.store.snapshot()
    bad = motd().replace("      path: /etc/motd\n", "      path: /etc/motd\n      mode: 99999\n")
    with server.client(operator) as client:
        refused = client.post("/api/v1/manifests", content=bad)
        unknown = client.post("/api/v1/manifests", content=bad.replace("kind: File", "kind: Nope"))
        garbled = client.post("/api/v1/manifests", content="metadata: [unclosed\n")
        binary = client.post("/api/v1/manifests", content=b"\xff\xfe")
        empty_json = client.post("/api/v1/manifests", json={})
    assert refused.status_code == 422
    assert refused.json()["problems"] == [
        "body:8: resource 'motd' (File): spec.mode: Input should be less than or equal to 4095"
    ]
    assert "unknown kind 'Nope'" in unknown.json()["problems"][0]
    assert unknown.json()["problems"][0].startswith("body:5:")
    assert garbled.status_code == 422 and garbled.json()["problems"][0].startswith("body:2:")
    assert binary.status_code == 400
    assert empty_json.status_code == 422
    assert server.store.snapshot() == before  # no key written, no event


def test_the_generation_bumps_only_when_the_content_changes(server: LiveServer) -> None:
    with server.client(server.issue("operator", "olga")) as client:
        first = client.post("/api/v1/manifests", content=motd("one"))
        same = client.post("/api/v1/manifests", content=motd("one"))
        # The same content as JSON, with a generation of its own: still the same version.
        document = {
            "metadata": {"name": "motd", "generation": 41},
            "resources": [
                {"id": "motd", "kind": "File", "spec": {"path": "/etc/motd", "content": "one\n"}}
            ],
        }
        as_json = client.post("/api/v1/manifests", content=json.dumps(document))
        changed = client.post("/api/v1/manifests", content=motd("two"))
        versions = client.get("/api/v1/manifests/motd/versions").json()
        latest = client.get("/api/v1/manifests/motd").json()
        one = client.get("/api/v1/manifests/motd/versions/1").json()
        assert client.get("/api/v1/manifests/motd/versions/3").status_code == 404
        assert client.get("/api/v1/manifests/nothing").status_code == 404
        listed = client.get("/api/v1/manifests").json()
    assert (first.status_code, first.json()["version"]["generation"]) == (201, 1)
    assert (same.status_code, same.json()["version"]["generation"]) == (200, 1)
    assert same.json()["reason"] == "unchanged: the content equals generation 1"
    assert (as_json.status_code, as_json.json()["version"]["generation"]) == (200, 1)
    assert (changed.status_code, changed.json()["version"]["generation"]) == (201, 2)
    assert [v["generation"] for v in versions] == [1, 2]
    assert {v["published_by"] for v in versions} == {"olga"}
    assert latest["manifest"]["metadata"]["generation"] == 2
    assert one["manifest"]["resources"][0]["spec"]["content"] == "one\n"
    assert [(m["name"], m["generation"]) for m in listed] == [("motd", 2)]


def test_assigned_nodes_get_a_signed_envelope_and_follow_new_versions(
    server: LiveServer,
) -> None:
    for node, site in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        server.enrol(node, {"site": site})
    with server.client(server.issue("operator", "olga")) as client:
        client.post("/api/v1/manifests", content=motd("v1")).raise_for_status()
        assigned = client.put("/api/v1/assignments/motd", json={"selector": {"site": "a"}})
        assert assigned.status_code == 200
        assert sorted(assigned.json()["published_to"]) == ["a1", "a2"]
        assert assigned.json()["assignment"]["assigned_by"] == "olga"
        for node in ("a1", "a2"):
            accepted = verified(server, node)
            assert accepted.manifest.metadata.generation == 1
            assert accepted.key_ids == (server.key.key_id,)
        assert server.store.get(keys.desired_key("b1")) is None
        revision = server.store.get(keys.desired_key("a1"))
        again = client.put("/api/v1/assignments/motd", json={"selector": {"site": "a"}})
        assert again.json()["published_to"] == [] and again.json()["unchanged"] == 3
        assert again.json()["changed"] is False and again.json()["reason"].startswith("unchanged")
        assert server.store.get(keys.desired_key("a1")) == revision  # not rewritten
        bumped = client.post("/api/v1/manifests", content=motd("v2"))
        assert sorted(bumped.json()["published_to"]) == ["a1", "a2"]
        assert verified(server, "a1").manifest.resources[0].spec.model_dump()["content"] == "v2\n"
        listed = client.get("/api/v1/assignments").json()
        desired = client.get("/api/v1/nodes/a2/desired").json()
    assert listed == [assigned.json()["assignment"]]
    assert desired["node"] == "a2" and desired["signatures"][0]["key_id"] == server.key.key_id


def test_an_envelope_for_one_node_does_not_verify_for_another(server: LiveServer) -> None:
    server.enrol("a1", {"site": "a"})
    with server.client(server.admin_token) as client:
        client.post("/api/v1/manifests", content=motd()).raise_for_status()
        client.put("/api/v1/assignments/motd", json={"selector": {}}).raise_for_status()
    entry = server.store.get(keys.desired_key("a1"))
    assert entry is not None
    with pytest.raises(signing.SignatureError) as refused:
        server.trust().verify(
            signing.load_envelope(entry.value), node="a2", kinds=registry.default().kinds()
        )
    assert refused.value.reason is signing.Reason.WRONG_NODE


def test_label_changes_and_unassigning_republish(server: LiveServer) -> None:
    server.enrol("n1", {"site": "a"})
    with server.client(server.admin_token) as client:
        client.post("/api/v1/manifests", content=motd("a", name="site-a")).raise_for_status()
        client.post("/api/v1/manifests", content=motd("b", name="site-b")).raise_for_status()
        client.put("/api/v1/assignments/site-a", json={"selector": {"site": "a"}})
        client.put("/api/v1/assignments/site-b", json={"selector": {"site": "b"}})
        assert verified(server, "n1").manifest.metadata.name == "site-a"
        client.put("/api/v1/nodes/n1/labels", json={"labels": {"site": "b"}}).raise_for_status()
        assert verified(server, "n1").manifest.metadata.name == "site-b"
        # The more specific selector wins when two match.
        client.put("/api/v1/assignments/site-a", json={"selector": {}}).raise_for_status()
        assert verified(server, "n1").manifest.metadata.name == "site-b"
        assert client.delete("/api/v1/assignments/site-b").status_code == 204
        assert verified(server, "n1").manifest.metadata.name == "site-a"
        assert client.delete("/api/v1/assignments/site-a").status_code == 204
        assert server.store.get(keys.desired_key("n1")) is None  # withdrawn
        assert client.delete("/api/v1/assignments/site-a").status_code == 404
        assert client.put("/api/v1/assignments/ghost", json={"selector": {}}).status_code == 404
        replay = client.get("/api/v1/events", params={"follow": "false"}).text
    for kind in (
        "assignment.changed",
        "assignment.deleted",
        "desired.published",
        "desired.withdrawn",
        "manifest.published",
    ):
        assert f"event: {kind}" in replay


def test_a_node_enrolled_later_gets_its_desired_state_at_once(server: LiveServer) -> None:
    with server.client(server.admin_token) as client:
        client.post("/api/v1/manifests", content=motd()).raise_for_status()
        client.put("/api/v1/assignments/motd", json={"selector": {"site": "a"}})
    server.enrol("late", {"site": "a"})
    assert verified(server, "late").manifest.metadata.name == "motd"


def test_fleet_status_shows_generations_and_marks_silent_nodes_stale(tmp_path: Path) -> None:
    with LiveServer.start(tmp_path, stale_after=0.4) as server:
        agent = server.enrol("n1", {"site": "a"})
        server.enrol("quiet")
        with server.client(server.admin_token) as admin:
            admin.post("/api/v1/manifests", content=motd()).raise_for_status()
            admin.put("/api/v1/assignments/motd", json={"selector": {"site": "a"}})
            with server.client(agent) as client:
                beat = {
                    "node": "n1",
                    "observed_generation": 1,
                    "staged_generation": 1,
                    "applied_generation": 1,
                    "state": "succeeded",
                    "heartbeat_at": datetime.now(UTC).isoformat(),
                    "resources": [{"id": "motd", "kind": "File", "phase": "applied"}],
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "Applied",
                            "observed_generation": 1,
                        }
                    ],
                }
                written = client.put("/api/v1/nodes/n1/status", json=beat)
                fresh = admin.get("/api/v1/status/n1").json()
                time.sleep(0.6)
                silent = admin.get("/api/v1/status/n1").json()
                beat["heartbeat_at"] = datetime.now(UTC).isoformat()
                client.put(
                    "/api/v1/nodes/n1/status",
                    json=beat,
                    headers={"If-Match": written.headers["etag"]},
                )
                back = admin.get("/api/v1/status/n1").json()
            fleet = admin.get("/api/v1/status").json()
            assert admin.get("/api/v1/status/ghost").status_code == 404

    def stale(view: dict[str, object]) -> tuple[str, str]:
        found = [c for c in view["conditions"] if c["type"] == "Stale"]  # type: ignore[attr-defined]
        return found[0]["status"], found[0]["reason"]

    assert fresh["desired"]["generation"] == 1 and fresh["status"]["applied_generation"] == 1
    assert fresh["status"]["resources"][0]["phase"] == "applied"
    assert stale(fresh) == ("False", "HeartbeatsCurrent") and fresh["stale"] is False
    assert stale(silent) == ("True", "HeartbeatsStopped") and silent["stale"] is True
    assert stale(back) == ("False", "HeartbeatsCurrent")
    assert [c["type"] for c in back["conditions"]] == ["Ready", "Stale"]
    assert [v["node"] for v in fleet] == ["n1", "quiet"]
    assert stale(fleet[1]) == ("Unknown", "NeverReported") and fleet[1]["desired"] is None


def test_the_control_plane_runs_the_same_over_nats(tmp_path: Path) -> None:
    nats = start_or_skip(NatsServer(tmp_path / "nats"))
    try:
        with LiveServer.start(tmp_path, store_url=nats.url) as server:
            server.enrol("n1", {"site": "a"})
            with server.client(server.admin_token) as client:
                client.post("/api/v1/manifests", content=motd()).raise_for_status()
                assigned = client.put("/api/v1/assignments/motd", json={"selector": {"site": "a"}})
                assert assigned.json()["published_to"] == ["n1"]
                moved = client.post("/api/v1/nodes/n1/transitions", json={"to": "provisioning"})
                assert moved.status_code == 201
                replay = client.get("/api/v1/events", params={"follow": False}).text
            assert verified(server, "n1").manifest.metadata.generation == 1
            assert "event: node.transition" in replay
    finally:
        nats.stop()
