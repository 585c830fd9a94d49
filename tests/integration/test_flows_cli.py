"""``accord flow`` through Typer's runner: the example flows end to end, output, exit codes.

The lifecycle task types the examples use (``transition``, ``wait_window``) are written
elsewhere; here fakes stand in for them, registered in the default registry.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from accord import errors
from accord.cli.flow import app
from accord.engine.flows import FlowRunner, FlowState, TaskRegistry, load_flow
from accord.engine.flows import tasks as tasks_module
from accord.engine.flows.builtin import builtin_tasks
from accord.engine.flows.context import FlowContext
from accord.engine.flows.tasks import Task
from accord.store import open_store

EXAMPLES = Path(__file__).parents[2] / "examples" / "flows"
FIRMWARE = EXAMPLES / "firmware-update.yaml"
RETURN = EXAMPLES / "return-to-service.yaml"
cli = CliRunner()
pytestmark = pytest.mark.timeout(60)


class FakeTransition(Task):
    name = "transition"
    idempotent = True

    def __init__(self) -> None:
        self.moves: list[tuple[str, str]] = []
        self.refuse: set[str] = set()

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        if params["to"] in self.refuse:
            raise errors.PermanentError(f"the table refuses {params['to']}")
        self.moves.append((ctx.services["node"], params["to"]))
        return {"to": params["to"]}


class FakeWindow(Task):
    name = "wait_window"
    idempotent = True

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        return {"window": "open now"}


@pytest.fixture
def transition(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTransition]:
    fake = FakeTransition()
    registry = TaskRegistry(builtin_tasks())
    registry.replace(fake)  # the CLI's mechanics, not the lifecycle (test_flows_examples has it)
    registry.replace(FakeWindow())
    monkeypatch.setattr(tasks_module, "_default", registry)
    yield fake


def flow(*args: str | Path) -> tuple[int, str, str]:
    result = cli.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def where(root: Path, state_dir: Path) -> list[str]:
    return ["--root", str(root), "--state-dir", str(state_dir)]


def status(state_dir: Path, run_id: str | None = None) -> dict[str, Any]:
    _, out, _ = flow("status", *([run_id] if run_id else []), "--state-dir", state_dir, "--json")
    document: dict[str, Any] = json.loads(out)
    return document


def test_the_firmware_update_example_runs_end_to_end(
    transition: FakeTransition, root: Path, state_dir: Path, where: list[str]
) -> None:
    code, out, err = flow("run", FIRMWARE, "--node", "n1", *where)
    assert code == 0, out + err
    run_id = out.splitlines()[0]
    assert out.splitlines()[-1] == f"{run_id} succeeded"
    assert (root / "firmware/VERSION").read_text() == "2.4.1\n"
    assert transition.moves == [("n1", "firmware_update"), ("n1", "maintenance")]
    assert "stage-firmware" in err and "back-to-maintenance" in err  # progress per task
    document = status(state_dir)
    assert document["run"]["run_id"] == run_id and document["run"]["node"] == "n1"
    assert [(t["id"], t["state"]) for t in document["tasks"]] == [
        ("stage-firmware", "succeeded"), ("wait-for-window", "succeeded"),
        ("enter-firmware-update", "succeeded"), ("apply-firmware", "succeeded"),
        ("verify", "succeeded"), ("verified", "succeeded"), ("back-to-maintenance", "succeeded"),
    ]  # fmt: skip
    assert document["tasks"][3]["result"]["changed"] == 3
    assert document["tasks"][4]["result"]["changed"] == 0  # verify: converging again, no change
    code, out, _ = flow("list", "--state-dir", state_dir, "--json")
    assert code == 0 and [r["state"] for r in json.loads(out)] == ["succeeded"]


def test_a_failed_firmware_update_sends_the_node_to_rma(
    transition: FakeTransition, root: Path, state_dir: Path, where: list[str]
) -> None:
    transition.refuse.add("firmware_update")
    code, out, _ = flow("run", FIRMWARE, "--node", "n2", *where)
    assert code == 1
    assert "failed: task enter-firmware-update: PermanentError: the table refuses" in out
    assert transition.moves == [("n2", "rma")]
    assert not (root / "firmware/VERSION").exists()  # staged only; never applied
    tasks = {t["id"]: t for t in status(state_dir)["tasks"]}
    assert tasks["on_failure"]["state"] == "succeeded"
    assert tasks["apply-firmware"]["state"] == "pending"


def test_return_to_service_checks_first(
    transition: FakeTransition, root: Path, state_dir: Path, where: list[str]
) -> None:
    code, out, _ = flow("run", RETURN, "--node", "n3", *where)
    assert code == 1  # no firmware yet: the diagnostics fail, nothing is converged
    assert "diagnostics" in out and "2 resource(s) differ" in out
    assert transition.moves == [] and not (root / "etc").exists()
    assert flow("run", FIRMWARE, "--node", "n3", *where)[0] == 0
    code, out, _ = flow("run", RETURN, "--node", "n3", *where)
    assert code == 0, out
    assert transition.moves[-1] == ("n3", "in_service")
    assert (root / "etc/node/role.conf").read_text().startswith("role: compute")


def test_bad_input_exits_2_and_names_the_line(
    transition: FakeTransition, tmp_path: Path, where: list[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntasks:\n  - id: a\n    task: teleport\n")
    code, _, err = flow("run", bad, *where)
    assert code == 2
    assert f"{bad}:4: task 'a': unknown task type 'teleport'" in err
    code, _, err = flow("run", FIRMWARE, *where)
    assert code == 2 and "parameter 'node' is required" in err
    code, _, err = flow("run", FIRMWARE, "--param", "novalue", *where)
    assert code == 2 and "use KEY=VALUE" in err
    code, _, err = flow("run", tmp_path / "missing.yaml", *where)
    assert code == 2 and "No such file" in err


def test_signal_status_and_resume_refuse_what_makes_no_sense(
    transition: FakeTransition, state_dir: Path, where: list[str]
) -> None:
    code, out, _ = flow("status", "--state-dir", state_dir)
    assert code == 0 and "no flow runs recorded yet" in out
    code, _, err = flow("signal", "nosuch", "approve", "--state-dir", state_dir)
    assert code == 1 and "no flow run 'nosuch'" in err
    _, out, _ = flow("run", FIRMWARE, "--node", "n1", *where)
    run_id = out.splitlines()[0]
    code, _, err = flow("signal", run_id, "approve", "--state-dir", state_dir)
    assert code == 2 and "has ended (succeeded)" in err
    code, _, err = flow("resume", run_id, "--state-dir", state_dir)
    assert code == 2 and "nothing to resume" in err
    code, _, err = flow("signal", run_id, "approve", "--data", "{oops", "--state-dir", state_dir)
    assert code == 2 and "--data is not JSON" in err
    code, _, err = flow("status", "nosuch", "--state-dir", state_dir)
    assert code == 1


def test_resume_continues_an_interrupted_run_with_its_roots(
    transition: FakeTransition, root: Path, state_dir: Path, where: list[str]
) -> None:
    stop = asyncio.Event()
    stop.set()  # as if Ctrl-C came at once: nothing runs, the run is resumable

    async def start() -> str:
        store = await open_store(f"sqlite:///{state_dir / 'accord.db'}")
        try:
            runner = FlowRunner(store, tasks_module.default(), lock_dir=state_dir / "flows")
            spec = load_flow(FIRMWARE, tasks_module.default().names())
            run = await runner.run(
                spec, params={"node": "n4"}, node="n4", base_dir=FIRMWARE.parent, stop=stop,
                context={"roots": [str(root)], "allow_commands": False},
            )  # fmt: skip
            assert run.state is FlowState.INTERRUPTED
            return run.run_id
        finally:
            await store.close()

    state_dir.mkdir()
    run_id = asyncio.run(start())
    code, out, _ = flow("status", run_id, "--state-dir", state_dir)
    assert code == 1 and "interrupted" in out
    asyncio.run(_pretend_running(state_dir, run_id))  # as a process killed mid-run leaves it
    code, out, _ = flow("status", run_id, "--state-dir", state_dir)
    assert code == 1 and f"its process is gone: accord flow resume {run_id}" in out
    code, out, err = flow("resume", run_id, "--state-dir", state_dir)  # roots from the record
    assert code == 0, out + err
    assert out.splitlines()[0] == run_id
    assert (root / "firmware/VERSION").exists()
    document = status(state_dir, run_id)
    assert document["run"]["resumed"] == 1 and document["run"]["state"] == "succeeded"


async def _pretend_running(state_dir: Path, run_id: str) -> None:
    from accord.engine.flows import FlowJournal

    store = await open_store(f"sqlite:///{state_dir / 'accord.db'}")
    try:
        journal = FlowJournal(store)
        record = await journal.get(run_id)
        record.state = FlowState.RUNNING
        await journal.save(record)
    finally:
        await store.close()
