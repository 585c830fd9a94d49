"""The API's contract: ``/openapi.json`` of the live app equals the committed snapshot.

A change to the API shows up in review as a diff of ``tests/snapshots/openapi.json``.
Regenerate it after an intended change with::

    ACCORD_UPDATE_SNAPSHOTS=1 uv run --frozen pytest tests/integration/test_server_openapi.py
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

from e2e.server_harness import LiveServer

SNAPSHOT = Path(__file__).parents[1] / "snapshots" / "openapi.json"
UPDATE = "ACCORD_UPDATE_SNAPSHOTS"
HERE = "tests/integration/test_server_openapi.py"


def render(document: object) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_the_openapi_document_matches_the_snapshot(tmp_path: Path) -> None:
    with LiveServer.start(tmp_path) as server, server.client() as anonymous:
        response = anonymous.get("/openapi.json")
    assert response.status_code == 200
    current = render(response.json())
    if os.environ.get(UPDATE) == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(current)
    committed = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    if current != committed:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    current.splitlines(keepends=True),
                    fromfile=str(SNAPSHOT),
                    tofile="GET /openapi.json",
                )
            )[:200]
        )
        raise AssertionError(
            f"the API changed: /openapi.json differs from {SNAPSHOT}.\n"
            f"If the change is intended, regenerate the snapshot and commit it:\n"
            f"    {UPDATE}=1 uv run --frozen pytest {HERE}\n\n"
            f"{diff}"
        )


def test_every_operation_is_documented_and_named(tmp_path: Path) -> None:
    with LiveServer.start(tmp_path) as server, server.client() as anonymous:
        document = anonymous.get("/openapi.json").json()
    operations = [(path, op) for path, ops in document["paths"].items() for op in ops.values()]
    ids = [op["operationId"] for _, op in operations]
    assert len(ids) == len(set(ids))
    for path, op in operations:
        assert op.get("description"), f"{op['operationId']} has no docstring"
        if path.startswith("/api/v1/") and path != "/api/v1/nodes/enrol":
            assert op.get("security") == [{"HTTPBearer": []}], path
            assert {"401", "403", "422"} <= set(op["responses"]), path
