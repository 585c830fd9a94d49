"""``accord node`` and ``accord lifecycle`` through Typer's runner, on a real SQLite store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accord.cli.app import app
from accord.engine.converge import Options
from accord.engine.local import LocalSession
from helpers import build_manifest

runner = CliRunner()


def accord(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def where(state_dir: Path) -> list[str]:
    return ["--state-dir", str(state_dir)]


async def converge_here(root: Path, state_dir: Path, content: str) -> None:
    manifest = build_manifest(
        [{"id": "f", "kind": "File", "spec": {"path": "f", "content": content}}]
    )
    async with LocalSession(roots=[root], state_dir=state_dir) as session:
        await session.converge(manifest, base_dir=root, options=Options())


def test_a_node_through_its_lifecycle(root: Path, state_dir: Path, where: list[str]) -> None:
    assert accord("node", "add", "edge-1", "--label", "site=plant-a", *where)[0] == 0
    assert accord("node", "transition", "edge-1", "provisioning", "--as", "alice", *where)[0] == 0

    # provisioning → in_service needs a converged machine: nothing was applied here yet
    code, _, err = accord("node", "transition", "edge-1", "in_service", *where)
    assert code == 2 and "has not converged" in err
    asyncio.run(converge_here(root, state_dir, "ok"))
    code, out, _ = accord("node", "transition", "edge-1", "in_service", "--json", *where)
    assert code == 0 and json.loads(out)["to"] == "in_service"

    code, _, err = accord("node", "transition", "edge-1", "maintenance", *where)
    assert code == 2 and "a reason is required" in err
    code, _, err = accord("node", "transition", "edge-1", "maintenance", "-m", "fan swap",
                          "--expect", "maintenance", *where)  # fmt: skip
    assert code == 2 and "is in_service, not maintenance" in err
    assert accord("node", "transition", "edge-1", "maintenance", "-m", "fan swap", *where)[0] == 0

    code, out, _ = accord("node", "history", "edge-1", "--json", *where)
    entries = json.loads(out)
    assert [(e["from"], e["to"]) for e in entries] == [
        ("discovered", "provisioning"), ("provisioning", "in_service"),
        ("in_service", "maintenance"),
    ]  # fmt: skip
    assert entries[0]["initiator"] == "alice" and entries[2]["reason"] == "fan swap"

    code, out, _ = accord("node", "show", "edge-1", "--json", *where)
    shown = json.loads(out)
    assert shown["state"] == "maintenance" and "firmware_update" in shown["next"]
    code, out, _ = accord("node", "list", "--json", *where)
    assert [(n["id"], n["labels"]) for n in json.loads(out)] == [("edge-1", {"site": "plant-a"})]


def test_force_needs_admin_and_is_recorded(where: list[str]) -> None:
    accord("node", "add", "n", *where)
    code, _, err = accord("node", "transition", "n", "retired", "--force", "-m", "eol", *where)
    assert code == 2 and "only an admin" in err
    code, out, _ = accord("node", "transition", "n", "retired", "--force", "-m", "eol",
                          "--role", "admin", "--json", *where)  # fmt: skip
    assert code == 0 and json.loads(out)["forced"] is True


def test_bad_input_names_what_is_wrong(where: list[str], tmp_path: Path) -> None:
    assert accord("node", "transition", "ghost", "maintenance", *where)[0] == 2
    accord("node", "add", "n", *where)
    code, _, err = accord("node", "add", "n", *where)
    assert code == 2 and "already exists" in err
    code, _, err = accord("node", "add", "m", "--label", "nolabel", *where)
    assert code == 2 and "'nolabel' is not k=v" in err
    bad = tmp_path / "site.yaml"
    bad.write_text("name: site\ninitial: a\nstates: {a: {}}\ntransitions:\n  - {from: a, to: b}\n")
    code, _, err = accord("lifecycle", "validate", bad)
    assert code == 2 and f"{bad}:5: transitions[0]: unknown state 'b'" in err
    code, _, err = accord("node", "add", "m", "--lifecycle", bad, *where)
    assert code == 2 and "unknown state 'b'" in err


def test_lifecycle_validate_and_render() -> None:
    code, out, _ = accord("lifecycle", "validate", "--json")
    assert code == 0 and json.loads(out)["states"][0] == "discovered"
    code, out, _ = accord("lifecycle", "render")
    assert code == 0 and out.startswith("stateDiagram-v2")
    code, out, _ = accord("lifecycle", "render", "--format", "dot")
    assert code == 0 and out.startswith('digraph "default"')


def test_apply_waits_for_the_window_and_force_overrides(
    tmp_path: Path, root: Path, where: list[str]
) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "metadata: {name: m}\nresources:\n  - {id: f, kind: File, spec: {path: f, content: x}}\n"
    )
    windows = tmp_path / "windows.yaml"
    windows.write_text("windows: [{name: leap, cron: '0 3 29 2 *', duration: 1h, timezone: UTC}]\n")
    apply = ["apply", manifest, "--root", root, *where, "--windows", windows]
    code, out, _ = accord(*apply)
    assert code == 0 and "waiting: outside maintenance windows" in out
    assert "applies at 2028-02-29 03:00:00 UTC" in out and not (root / "f").exists()
    code, out, _ = accord(*apply, "--force", "--json")
    assert code == 0 and json.loads(out)["run"]["state"] == "succeeded"
    assert (root / "f").read_text() == "x"


def test_apply_follows_the_node_lifecycle(tmp_path: Path, root: Path, where: list[str]) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "metadata: {name: m}\nresources:\n  - {id: f, kind: File, spec: {path: f, content: x}}\n"
    )
    accord("node", "add", "me", *where)
    code, out, _ = accord("apply", manifest, "--root", root, *where, "--node", "me", "--json")
    run = json.loads(out)["run"]
    assert (
        code == 0 and run["state"] == "waiting" and "discovered does not allow apply" in run["gate"]
    )
    accord("node", "transition", "me", "provisioning", *where)
    code, out, _ = accord("apply", manifest, "--root", root, *where, "--node", "me", "--json")
    assert code == 0 and json.loads(out)["run"]["state"] == "succeeded"


def test_entering_a_state_runs_its_on_enter_flow(
    tmp_path: Path, root: Path, where: list[str]
) -> None:
    (tmp_path / "greeting.yaml").write_text(
        "metadata: {name: greeting}\nresources:\n"
        "  - {id: hello, kind: File, spec: {path: hello, content: entered}}\n"
    )
    (tmp_path / "on-service.yaml").write_text(
        "name: on-service\nparams: {node: null}\nlinear: true\ntasks:\n"
        "  - {id: greet, task: converge, with: {manifest: greeting.yaml}}\n"
    )
    lifecycle = tmp_path / "site.yaml"
    lifecycle.write_text(
        "name: site\ninitial: new\nstates:\n  new: {}\n"
        "  live: {apply: true, on_enter: on-service.yaml}\n"
        "transitions:\n  - {from: new, to: live}\n  - {from: live, to: new}\n"
    )
    accord("node", "add", "n", "--lifecycle", lifecycle, *where)
    move = ["node", "transition", "n", "live", "--flows", tmp_path, "--root", root, *where]
    code, out, err = accord(*move)
    assert code == 0, err
    assert "entering live runs" in out and (root / "hello").read_text() == "entered"
    accord("node", "transition", "n", "new", *where)
    (root / "hello").unlink()
    code, _, _ = accord(*move, "--no-workflow")
    assert code == 0 and not (root / "hello").exists()
