"""The task registry: explicit registration, the ``accord.tasks`` entry points, the contract."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from accord import errors
from accord.engine.flows import FlowRunner, FlowState, TaskRegistry, parse_flow
from accord.engine.flows import signals as flow_signals
from accord.engine.flows.builtin import SleepTask, builtin_tasks
from accord.engine.flows.context import FlowContext
from accord.engine.flows.tasks import Task
from accord.store import open_store


class Plain(Task):
    name = "plain"

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        return None


class Undo(Plain):
    name = "undo"

    async def revert(self, ctx: FlowContext, params: dict[str, Any], result: Any) -> None:
        return None


class Impostor(Plain):
    name = "sleep"


def test_registration_and_lookup() -> None:
    registry = TaskRegistry([*builtin_tasks(), Plain()])
    assert registry.names() == [
        "call_webhook", "converge", "plain", "sleep", "transition", "wait_condition",
        "wait_signal", "wait_window",
    ]  # fmt: skip
    assert "plain" in registry and "teleport" not in registry
    with pytest.raises(errors.InputError, match="unknown task type 'teleport'; known: call_"):
        registry.get("teleport")
    registry.register(SleepTask())  # the same class again: fine
    with pytest.raises(errors.AccordError, match="registered twice"):
        registry.register(Impostor())
    registry.replace(Impostor())
    assert isinstance(registry.get("sleep"), Impostor)


def test_the_contract_defaults() -> None:
    assert not Plain().reversible and Undo().reversible
    assert not Plain.idempotent and Plain.retry is None and Plain.params_model is None
    assert repr(Plain()) == "<task type 'plain' (Plain)>"


def _distribution(site: Path, entry: str) -> None:
    info = site / "flowtasks_demo-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flowtasks-demo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[accord.tasks]\n{entry}\n")
    (site / "flowtasks_demo.py").write_text(
        "from accord.engine.flows.tasks import Task\n\n"
        "class Hello(Task):\n    name = 'hello'\n    idempotent = True\n\n"
        "    async def execute(self, ctx, params):\n        return 'hello ' + params['who']\n"
    )


async def test_entry_points_add_task_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _distribution(tmp_path / "site", "hello = flowtasks_demo:Hello")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    registry = TaskRegistry.from_entry_points(builtin_tasks())
    assert "hello" in registry and "converge" in registry
    store = await open_store("memory://")  # the runner holds to every store's contract
    try:
        runner = FlowRunner(store, registry, lock_dir=tmp_path / "locks")
        spec = parse_flow(
            "name: hi\nparams: {who: null}\n"
            "tasks: [{id: greet, task: hello, with: {who: '${who}'}}]",
            source="hi.yaml", task_types=registry.names(),
        )  # fmt: skip
        run = await runner.run(spec, params={"who": "world"})
        assert run.state is FlowState.SUCCEEDED
        assert (await runner.journal.replay(run)).tasks["greet"].result == "hello world"
    finally:
        await store.close()


def test_an_entry_point_must_match_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _distribution(tmp_path / "site", "howdy = flowtasks_demo:Hello")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(errors.AccordError, match="entry point 'howdy' loads Hello"):
        TaskRegistry.from_entry_points()


async def test_signals_work_on_the_memory_store(tmp_path: Path) -> None:
    store = await open_store("memory://")
    try:
        registry = TaskRegistry(builtin_tasks())
        runner = FlowRunner(store, registry, lock_dir=tmp_path / "locks")
        spec = parse_flow(
            "name: m\ntasks: [{id: w, task: wait_signal, with: {name: go}}]",
            source="m.yaml", task_types=registry.names(),
        )  # fmt: skip
        run_id = ""
        sends: list[asyncio.Task[int]] = []

        class Sender:
            def run(self, record: Any) -> None:
                nonlocal run_id
                run_id = record.run_id

            def task(self, run_id: str, task_id: str, state: Any, detail: str) -> None:
                if state.value == "waiting":
                    sends.append(asyncio.create_task(flow_signals.send(store, run_id, "go", 1)))

        runner.observer = Sender()
        run = await runner.run(spec)
        assert run.state is FlowState.SUCCEEDED and run.run_id == run_id and len(sends) == 1
        with pytest.raises(errors.NotFoundError):
            await flow_signals.send(store, "nosuch", "go")
        with pytest.raises(errors.InputError, match="invalid signal name"):
            await flow_signals.send(store, run_id, "Go Now")
    finally:
        await store.close()
