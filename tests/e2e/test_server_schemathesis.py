"""Property-based API tests: schemathesis drives the live app from its own OpenAPI document.

For every operation, in both generation modes (valid requests, and requests that break the
schema), with an admin token over a small seeded fleet: no 5xx, every response matches the
documented statuses, content types and schemas, invalid requests are rejected, and a request
that is answered with an error stores nothing (no key changes, no event).

Bounded: a few examples per operation and mode, no deadline, no example database. The SSE
stream (``GET /api/v1/events``) is left out: it follows the stream until the client leaves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from e2e.server_harness import LiveServer, motd

EXAMPLES = 8
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Real names for path parameters, so that valid requests reach real records.
KNOWN = {"node_id": "n1", "name": "motd", "manifest": "motd", "generation": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer.start(tmp_path_factory.mktemp("schemathesis")) as running:
        running.enrol("n1", {"site": "a"})
        with running.client(running.admin_token) as admin:
            admin.post("/api/v1/manifests", content=motd()).raise_for_status()
            admin.put("/api/v1/assignments/motd", json={"selector": {"site": "a"}})
        yield running


def operations(server: LiveServer) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    schema = schema.exclude(path="/api/v1/events")
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) > 25
    return found


def exercise(server: LiveServer, mode: schemathesis.GenerationMode) -> None:
    auth = {"Authorization": f"Bearer {server.admin_token}"}
    exercised: list[str] = []
    with server.client() as anonymous:
        document = anonymous.get("/openapi.json").json()
    for operation in operations(server):
        headers = [h for h in operation.headers if h.name.lower() != "authorization"]
        inputs = [operation.path_parameters, operation.query, headers, operation.body]
        if mode is schemathesis.GenerationMode.NEGATIVE and not any(inputs):
            continue  # nothing to break but the token, which is fixed (GET /api/v1/whoami)
        names = {p.name for p in operation.path_parameters}
        known = {k: v for k, v in KNOWN.items() if k in names}
        strategies = [operation.as_strategy(generation_mode=mode, headers=auth)]
        if known and mode is schemathesis.GenerationMode.POSITIVE:
            strategies.append(
                operation.as_strategy(generation_mode=mode, headers=auth, path_parameters=known)
            )

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(strategies))
        def check(case: schemathesis.Case) -> None:
            before = server.store.snapshot()
            response = case.call(base_url=server.url, timeout=10)
            checks = (
                [*CHECKS, negative_data_rejection]
                if case.meta and case.meta.generation.mode is schemathesis.GenerationMode.NEGATIVE
                else CHECKS
            )
            case.validate_response(response, checks=checks)
            if response.status_code >= 400:
                assert server.store.snapshot() == before, (
                    f"{case.operation.label} answered {response.status_code} but wrote: "
                    f"{response.text[:300]}"
                )

        try:
            check()
        except Unsatisfiable:
            # Schemathesis found no request that breaks the schema and still reaches the route:
            # fine only if nothing can be wrong there (a bare string in the path).
            assert unconstrained(document, operation.path, operation.method), operation.label
        except Exception as exc:
            exc.add_note(f"operation: {operation.label}")
            raise
        else:
            exercised.append(operation.label)
    assert len(exercised) >= 15, exercised


def unconstrained(document: dict[str, Any], path: str, method: str) -> bool:
    """Whether an operation's only inputs are path strings with no constraints."""
    operation = document["paths"][path][method.lower()]
    plain = {"type", "title", "description"}
    return "requestBody" not in operation and all(
        p["in"] == "path" and set(p["schema"]) <= plain and p["schema"]["type"] == "string"
        for p in operation.get("parameters", [])
    )


def test_valid_requests_never_fail_the_server_or_the_schema(server: LiveServer) -> None:
    exercise(server, schemathesis.GenerationMode.POSITIVE)


def test_invalid_requests_are_refused_and_store_nothing(server: LiveServer) -> None:
    exercise(server, schemathesis.GenerationMode.NEGATIVE)
