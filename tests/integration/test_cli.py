"""The CLI through Typer's runner and as a real process: output, --json and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accord.cli.app import app

EXAMPLE = Path(__file__).parents[2] / "examples" / "site.yaml"
runner = CliRunner()


def accord(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def where(root: Path, state_dir: Path) -> list[str]:
    return ["--root", str(root), "--state-dir", str(state_dir)]


def test_apply_the_example_then_everything_is_converged(root: Path, where: list[str]) -> None:
    code, out, _ = accord("apply", EXAMPLE, *where)
    assert code == 0, out
    assert "line-7 generation 1: succeeded" in out and "5 changed" in out
    assert (root / "opt/inspector/models/current").resolve().read_bytes().startswith(b"weights")
    code, out, _ = accord("apply", EXAMPLE, *where, "--json")
    assert code == 0
    document = json.loads(out)
    assert document["run"]["changed"] == 0 and document["run"]["state"] == "succeeded"
    assert {s["change"]["action"] for s in document["plan"]["steps"]} == {"noop"}


def test_plan_shows_changes_and_dry_run_changes_nothing(root: Path, where: list[str]) -> None:
    code, out, _ = accord("plan", EXAMPLE, *where)
    assert code == 0 and "5 to create" in out and "config" in out
    code, out, _ = accord("apply", EXAMPLE, *where, "--dry-run", "--json")
    assert code == 0 and "run" not in json.loads(out)
    assert list(root.iterdir()) == []


def test_status_and_history(where: list[str]) -> None:
    state = where[3]
    code, out, _ = accord("status", "--state-dir", state)
    assert code == 0 and "no runs recorded yet" in out
    accord("apply", EXAMPLE, *where)
    code, out, _ = accord("status", "--state-dir", state, "--json")
    records = json.loads(out)
    assert code == 0 and [r["manifest"] for r in records] == ["line-7"]
    ready = next(c for c in records[0]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["observed_generation"] == 1
    code, out, _ = accord("history", "--state-dir", state, "--json")
    runs = json.loads(out)
    assert code == 0 and len(runs) == 1
    code, out, _ = accord("history", "--state-dir", state, "--run", runs[0]["run_id"], "--json")
    events = [e["event"] for e in json.loads(out)]
    assert events[0] == "run_started" and events[-1] == "run_finished"
    assert events.count("applied") == 5 and events.count("staged") == 1


def test_a_bad_manifest_exits_2_naming_the_line_and_changes_nothing(
    tmp_path: Path, root: Path, where: list[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace('mode: "0640"', 'mode: "0x40"'))
    code, _, err = accord("apply", bad, *where)
    assert code == 2
    assert f"{bad}:18: resource 'config' (File): spec.mode:" in err
    assert list(root.iterdir()) == []


def test_a_missing_file_exits_2(where: list[str], tmp_path: Path) -> None:
    code, _, err = accord("apply", tmp_path / "nope.yaml", *where)
    assert code == 2 and "nope.yaml: No such file or directory" in err


def test_commands_need_allow_commands(tmp_path: Path, root: Path, where: list[str]) -> None:
    manifest = tmp_path / "cmd.yaml"
    manifest.write_text(
        "metadata: {name: cmd}\nresources:\n"
        "  - id: hello\n    kind: Command\n"
        f'    spec: {{argv: [{sys.executable}, -c, \'open("hello", "w").write("hi")\'],'
        " creates: hello}\n"
    )
    code, _, err = accord("apply", manifest, *where)
    assert code == 2 and "--allow-commands" in err
    assert not (root / "hello").exists()
    code, out, _ = accord("apply", manifest, *where, "--allow-commands", "--json")
    assert code == 0, out
    assert (root / "hello").read_text() == "hi"
    code, out, _ = accord("apply", manifest, *where, "--allow-commands", "--json")
    assert code == 0 and json.loads(out)["run"]["changed"] == 0  # the creates guard holds


def test_a_failed_resource_exits_1(tmp_path: Path, root: Path, where: list[str]) -> None:
    (root / "blocker").mkdir()
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "metadata: {name: m}\nresources:\n"
        "  - {id: f, kind: File, spec: {path: blocker, content: x}}\n"
        "  - {id: g, kind: File, spec: {path: g, content: y}, depends_on: [f]}\n"
    )
    code, out, _ = accord("apply", manifest, *where)
    assert code == 1
    assert "is a directory; refusing to replace it" in out and "blocked" in out


def test_schema_is_json_schema_of_manifests() -> None:
    code, out, _ = accord("schema")
    schema = json.loads(out)
    assert code == 0 and schema["title"] == "Manifest"
    assert {"FileSpec", "DirectorySpec", "SymlinkSpec", "ArtifactSpec", "CommandSpec"} <= set(
        schema["$defs"]
    )


def test_the_real_command_runs_as_a_process(root: Path, where: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "accord", "apply", str(EXAMPLE), *where, "--json"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["run"]["changed"] == 5


def test_a_json_apply_loads_no_module_it_does_not_need(tmp_path: Path, where: list[str]) -> None:
    """Start-up is part of every run's cost: croniter, httpx and rich load only when used."""
    manifest = tmp_path / "m.json"
    manifest.write_text('{"metadata": {"name": "m"}, "resources": [{"id": "f", "kind": "File",'
                        ' "spec": {"path": "f", "content": "x"}}]}')  # fmt: skip
    code = (
        "import sys\n"
        "from accord.cli.app import app\n"
        f"app(['apply', {str(manifest)!r}, *{where!r}, '--json'], standalone_mode=False)\n"
        "print(sorted(m for m in ('croniter', 'httpx', 'rich') if m in sys.modules),"
        " file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]"
