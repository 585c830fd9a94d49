"""The app factory's seams: an injected store, a replaced context, refused settings."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from accord import errors, signing
from accord.model.status import utcnow
from accord.providers import registry
from accord.server.app import create_app
from accord.server.context import ServerContext, context
from accord.store.memory import MemoryStore

ADMIN = "acc_app-test-admin-token-000000"


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process: its lifespan around an httpx client over ASGI."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://accord") as client:
            yield client


async def test_a_test_can_inject_the_store_and_override_the_clock() -> None:
    store = MemoryStore()  # the caller's: the app uses it and leaves it open
    app = create_app(store=store, signing_keys=[signing.SigningKey.generate()], admin_token=ADMIN)
    auth = {"Authorization": f"Bearer {ADMIN}"}
    async with served(app) as client:
        grant = (await client.post("/api/v1/enrolment-tokens", json={}, headers=auth)).json()
        enrolled = await client.post(
            "/api/v1/nodes/enrol", json={"token": grant["token"], "node": "n1"}
        )
        agent = {"Authorization": f"Bearer {enrolled.json()['token']}"}
        beat = {"node": "n1", "heartbeat_at": utcnow().isoformat()}
        written = await client.put("/api/v1/nodes/n1/status", json=beat, headers=agent)
        assert written.status_code == 200
        assert (await client.get("/api/v1/status/n1", headers=auth)).json()["stale"] is False

        current: ServerContext = app.state.accord
        tomorrow = dataclasses.replace(current, clock=lambda: utcnow() + timedelta(days=1))
        app.dependency_overrides[context] = lambda: tomorrow
        assert (await client.get("/api/v1/status/n1", headers=auth)).json()["stale"] is True
    assert await store.get("nodes.n1") is not None  # the app wrote to the injected store
    assert await store.list()  # and it is still open: closing it is the caller's job


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"signing_keys": []}, "at least one signing key"),
        ({"stale_after": 0}, "must be positive"),
    ],
)
def test_the_factory_refuses_bad_settings(settings: dict[str, object], problem: str) -> None:
    arguments: dict[str, object] = {
        "store": "memory://",
        "signing_keys": [signing.SigningKey.generate()],
        **settings,
    }
    with pytest.raises(errors.InputError, match=problem):
        create_app(**arguments)  # type: ignore[arg-type]


async def test_a_short_bootstrap_token_is_refused_at_startup() -> None:
    app = create_app(
        store="memory://", signing_keys=[signing.SigningKey.generate()], admin_token="short"
    )
    with pytest.raises(errors.InputError, match="at least 16"):
        async with served(app):
            pass


async def test_a_version_the_server_cannot_sign_any_more_leaves_the_node_as_it_was() -> None:
    store, key = MemoryStore(), signing.SigningKey.generate()
    auth = {"Authorization": f"Bearer {ADMIN}"}
    full = create_app(store=store, signing_keys=[key], admin_token=ADMIN)
    async with served(full) as client:
        grant = (await client.post("/api/v1/enrolment-tokens", json={}, headers=auth)).json()
        await client.post("/api/v1/nodes/enrol", json={"token": grant["token"], "node": "n1"})
        body = (
            "metadata: {name: motd}\nresources: [{id: m, kind: File, spec: {path: /m, content: x}}]"
        )
        (await client.post("/api/v1/manifests", content=body, headers=auth)).raise_for_status()
        await client.put("/api/v1/assignments/motd", json={"selector": {}}, headers=auth)
    before = await store.get("fleet.desired.n1")
    assert before is not None
    # The same store behind a server that no longer serves File, and a rotated key.
    kinds = {k: v for k, v in registry.default().kinds().items() if k != "File"}
    narrow = create_app(store=store, signing_keys=[signing.SigningKey.generate()], kinds=kinds)
    async with served(narrow) as client:
        relabel = await client.put(
            "/api/v1/nodes/n1/labels", json={"labels": {"a": "b"}}, headers=auth
        )
        assert relabel.status_code == 200
        result = await client.put(
            "/api/v1/assignments/motd", json={"selector": {"a": "b"}}, headers=auth
        )
    assert result.status_code == 200
    assert result.json()["published_to"] == []
    assert "unknown kind 'File'" in result.json()["failed"]["n1"]
    assert await store.get("fleet.desired.n1") == before
