"""The flow runner on a real SQLite store: order, results, retries, reverts, waits, resume."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from accord import errors
from accord.engine.flows import FlowJournal, FlowRun, FlowRunner, FlowState, TaskRegistry
from accord.engine.flows import signals as flow_signals
from accord.engine.flows.builtin import builtin_tasks
from accord.engine.flows.context import FlowContext
from accord.engine.flows.lock import RunLock
from accord.engine.flows.model import FlowSpec, InvalidFlowError, parse_flow
from accord.engine.flows.tasks import Task
from accord.store import Store, open_store

pytestmark = pytest.mark.timeout(30)


class Step(Task):
    """Idempotent: records the call, may sleep or fail, returns what it saw."""

    name = "step"
    idempotent = True

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        self.calls.append(ctx.task_id)
        if params.get("sleep"):
            await asyncio.sleep(params["sleep"])
        if params.get("fail"):
            raise errors.PermanentError(f"{ctx.task_id} broke")
        return {"id": ctx.task_id, "seen": sorted(ctx.results)}


class Undoable(Step):
    """Reversible: ``revert`` records what it was given."""

    name = "undoable"

    def __init__(self) -> None:
        super().__init__()
        self.undone: list[tuple[str, Any, str | None]] = []

    async def revert(self, ctx: FlowContext, params: dict[str, Any], result: Any) -> None:
        self.undone.append((ctx.task_id, result, ctx.failure.type if ctx.failure else None))


class Flaky(Task):
    """Fails transiently ``times`` times per task, then succeeds."""

    name = "flaky"
    idempotent = True

    def __init__(self) -> None:
        self.attempts: dict[str, list[int]] = {}

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        self.attempts.setdefault(ctx.task_id, []).append(ctx.attempt)
        if params.get("hang"):
            await asyncio.sleep(10)
        if len(self.attempts[ctx.task_id]) <= params.get("times", 0):
            raise errors.TransientError("busy")
        if params.get("permanent"):
            raise errors.PermanentError("no")
        if params.get("unjsonable"):
            return object()
        return ctx.attempt


class Once(Task):
    """Not idempotent: counts its runs; blocks until ``release`` is set if ``block``."""

    name = "once"
    idempotent = False

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        self.runs[ctx.task_id] = self.runs.get(ctx.task_id, 0) + 1
        self.started.set()
        if params.get("block"):
            await self.release.wait()
        return self.runs[ctx.task_id]


class FakeTransition(Task):
    """Stands in for the lifecycle ``transition`` task (written elsewhere)."""

    name = "transition"
    idempotent = True

    def __init__(self) -> None:
        self.moves: list[tuple[str | None, dict[str, Any]]] = []

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        self.moves.append((ctx.services.get("node"), params))
        return {"to": params["to"]}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'flows.db'}")
    yield opened
    await opened.close()


@pytest.fixture
def fakes() -> dict[str, Any]:
    return {t.name: t for t in (Step(), Undoable(), Flaky(), Once(), FakeTransition())}


@pytest.fixture
def registry(fakes: dict[str, Task]) -> TaskRegistry:
    found = TaskRegistry(builtin_tasks())
    for fake in fakes.values():
        found.replace(fake)  # the fake transition records moves instead of needing a node
    return found


@pytest.fixture
def runner(store: Store, registry: TaskRegistry, tmp_path: Path) -> FlowRunner:
    return FlowRunner(store, registry, lock_dir=tmp_path / "locks")


def flow(registry: TaskRegistry, text: str) -> FlowSpec:
    return parse_flow(text, source="test.yaml", task_types=registry.names())


async def events(store: Store, run: FlowRun) -> list[dict[str, Any]]:
    return await FlowJournal(store).events(run)


def task_events(found: list[dict[str, Any]], task: str) -> list[str]:
    return [e["state"] for e in found if e.get("task") == task]


async def until(predicate: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not await predicate():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.005)


# -- running -----------------------------------------------------------------------------


async def test_a_linear_flow_runs_in_order_with_one_write_per_idempotent_task(
    runner: FlowRunner, registry: TaskRegistry, fakes: dict[str, Any], store: Store
) -> None:
    spec = flow(registry, "name: line\nlinear: true\ntasks:\n"
                + "".join(f"  - {{id: t{i}, task: step}}\n" for i in range(5)))  # fmt: skip
    run = await runner.run(spec)
    assert run.state is FlowState.SUCCEEDED
    assert fakes["step"].calls == ["t0", "t1", "t2", "t3", "t4"]
    found = await events(store, run)
    assert [task_events(found, f"t{i}") for i in range(5)] == [["succeeded"]] * 5
    assert found[-1]["result"] == {"id": "t4", "seen": ["t0", "t1", "t2", "t3"]}
    assert run.counts == {"succeeded": 5} and run.finished_at is not None
    stored = await FlowJournal(store).get(run.run_id)
    assert stored.state is FlowState.SUCCEEDED
    assert not RunLock.held(runner.lock_dir, run.run_id)
    assert not list(runner.lock_dir.iterdir())  # a finished run's lock file is gone
    stored_flow = await FlowJournal(store).definition(stored)
    assert stored_flow.model_dump() == spec.model_dump()  # resumes run exactly this
    entry = await store.get(f"flowdefs.{run.run_id}")
    assert entry is not None and b'"on_failure":"revert"' in entry.value  # never a default


async def test_a_graph_runs_branches_at_once_and_joins(
    runner: FlowRunner, registry: TaskRegistry, fakes: dict[str, Any]
) -> None:
    spec = flow(registry, "name: g\nconcurrency: 4\ntasks:\n  - {id: root, task: step}\n"
                + "".join(f"  - {{id: b{i}, task: step, after: [root], with: {{sleep: 0.1}}}}\n"
                          for i in range(4))
                + "  - {id: join, task: step, after: [b0, b1, b2, b3]}\n")  # fmt: skip
    started = time.monotonic()
    run = await runner.run(spec)
    assert run.state is FlowState.SUCCEEDED
    assert time.monotonic() - started < 0.35  # four 0.1 s branches ran together
    assert fakes["step"].calls[0] == "root" and fakes["step"].calls[-1] == "join"


async def test_tasks_that_are_not_idempotent_journal_running_first(
    runner: FlowRunner, registry: TaskRegistry, store: Store
) -> None:
    run = await runner.run(flow(registry, "name: f\ntasks: [{id: a, task: once}]\n"))
    found = await events(store, run)
    assert task_events(found, "a") == ["running", "succeeded"]
    running = next(e for e in found if e.get("task") == "a")
    assert running["attempt"] == 1


async def test_transient_failures_are_retried_with_backoff(
    runner: FlowRunner, registry: TaskRegistry, fakes: dict[str, Any], store: Store
) -> None:
    spec = flow(registry, "name: r\ntasks:\n"
                "  - {id: a, task: flaky, with: {times: 2}, retry: {attempts: 3, base: 0.001}}\n"
                "  - {id: b, task: flaky, with: {times: 5}, retry: {attempts: 2, base: 0.001},"
                " after: [a]}\n"
                "on_failure: none\n")  # fmt: skip
    run = await runner.run(spec)
    assert fakes["flaky"].attempts == {"a": [1, 2, 3], "b": [1, 2]}
    found = await events(store, run)
    a = [e for e in found if e.get("task") == "a"]
    assert [(e["state"], e.get("attempt")) for e in a] == [
        ("retrying", 2), ("retrying", 3), ("succeeded", 3)
    ]  # fmt: skip
    assert all(e["pause"] <= 0.004 for e in a if e["state"] == "retrying")
    assert a[-1]["result"] == 3
    b = [e for e in found if e.get("task") == "b"]
    assert [(e["state"], e.get("attempt")) for e in b] == [("retrying", 2), ("failed", 2)]
    assert b[-1]["error"] == {"type": "TransientError", "message": "busy", "transient": True}
    assert run.state is FlowState.FAILED and run.failed_task == "b"


async def test_permanent_errors_and_bad_results_are_not_retried(
    runner: FlowRunner, registry: TaskRegistry, fakes: dict[str, Any]
) -> None:
    spec = flow(registry, "name: p\non_failure: none\ntasks:\n"
                "  - {id: a, task: flaky, with: {permanent: true}, retry: {attempts: 5, base: 0}}\n"
                "  - {id: b, task: flaky, with: {unjsonable: true}}\n")  # fmt: skip
    run = await runner.run(spec)
    assert fakes["flaky"].attempts == {"a": [1], "b": [1]}
    assert run.state is FlowState.FAILED
    assert run.counts == {"failed": 2}


async def test_a_timeout_is_transient(
    runner: FlowRunner, registry: TaskRegistry, fakes: dict[str, Any]
) -> None:
    spec = flow(registry, "name: t\ntasks:\n  - {id: a, task: flaky, with: {hang: true},"
                " timeout: 0.05, retry: {attempts: 2, base: 0}}\n")  # fmt: skip
    run = await runner.run(spec)
    assert fakes["flaky"].attempts == {"a": [1, 2]}
    assert run.error is not None and run.error.message == "timed out after 0.05 s"
    assert run.error.transient


async def test_bad_parameters_fail_before_anything_is_written(
    runner: FlowRunner, registry: TaskRegistry, store: Store
) -> None:
    spec = flow(registry, "name: b\ntasks:\n  - id: nap\n    task: sleep\n"
                "    with: {seconds: soon}\n")  # fmt: skip
    with pytest.raises(InvalidFlowError) as caught:
        await runner.run(spec)
    assert caught.value.problems[0].startswith("test.yaml:5: task 'nap' (sleep): with.seconds:")
    assert await store.list("flows") == []
    assert await store.read("flow-journal") == []


async def test_start_records_the_run_and_go_drives_it_once(
    runner: FlowRunner, registry: TaskRegistry, store: Store, fakes: dict[str, Any], tmp_path: Path
) -> None:
    spec = flow(registry, "name: s\ntasks:\n  - {id: a, task: step}\n")
    started = await runner.start(spec, node="edge-1", context={"who": "test"})
    run_id = started.record.run_id
    stored = await FlowJournal(store).get(run_id)
    assert stored.state is FlowState.RUNNING and stored.context == {"who": "test"}
    assert fakes["step"].calls == []  # nothing executed yet
    with pytest.raises(errors.AccordError, match="live process"):
        RunLock.take(tmp_path / "locks", run_id)  # held from start until go ends
    run = await started.go()
    assert run.state is FlowState.SUCCEEDED and fakes["step"].calls == ["a"]
    RunLock.take(tmp_path / "locks", run_id).release(finished=True)
    with pytest.raises(RuntimeError, match="driven already"):
        await started.go()


async def test_a_definition_too_large_to_store_is_refused_before_anything_is_written(
    runner: FlowRunner, registry: TaskRegistry, store: Store
) -> None:
    spec = flow(registry, "name: big\ntasks:\n  - id: a\n    task: step\n"
                f"    with: {{pad: {'x' * 1_100_000}}}\n")  # fmt: skip
    with pytest.raises(errors.InputError, match="KV limit"):
        await runner.start(spec)
    assert await store.list("") == []
    assert await store.read("flow-journal") == []


# -- failure policies --------------------------------------------------------------------


async def test_a_failure_reverts_what_ran_in_reverse_completion_order(
    runner: FlowRunner, registry: TaskRegistry, fakes: dict[str, Any], store: Store
) -> None:
    spec = flow(registry, "name: rv\ntasks:\n"
                "  - {id: a, task: undoable}\n"
                "  - {id: b, task: undoable, after: [a], with: {sleep: 0.05}}\n"
                "  - {id: c, task: undoable, after: [a], with: {sleep: 0.01}}\n"
                "  - {id: plain, task: step, after: [a]}\n"
                "  - {id: d, task: undoable, after: [b, c], with: {fail: true}}\n"
                "  - {id: never, task: undoable, after: [d]}\n")  # fmt: skip
    run = await runner.run(spec)
    assert run.state is FlowState.REVERTED
    found = await events(store, run)
    completed = [e["task"] for e in found if e.get("state") in ("succeeded", "failed")]
    reversible = [t for t in completed if t != "plain"]
    undone = fakes["undoable"].undone
    assert [u[0] for u in undone] == list(reversed(reversible)) == ["d", "b", "c", "a"]
    assert undone[0] == ("d", None, "PermanentError")  # the failed task is reverted too
    assert undone[-1] == ("a", {"id": "a", "seen": []}, None)
    assert task_events(found, "b") == ["running", "succeeded", "reverting", "reverted"]
    assert task_events(found, "never") == [] and task_events(found, "plain") == ["succeeded"]
    assert run.counts == {"reverted": 4, "succeeded": 1, "pending": 1}
    assert run.failed_task == "d"


async def test_a_failure_stops_waits_elsewhere_under_revert(
    runner: FlowRunner, registry: TaskRegistry, store: Store
) -> None:
    spec = flow(registry, "name: s\ntasks:\n"
                "  - {id: approve, task: wait_signal, with: {name: approve}}\n"
                "  - {id: bad, task: step, with: {fail: true, sleep: 0.05}}\n")  # fmt: skip
    run = await runner.run(spec)
    assert run.state is FlowState.REVERTED
    found = await events(store, run)
    assert task_events(found, "approve") == ["waiting", "interrupted"]
    assert next(e for e in found if e.get("state") == "interrupted")["reason"] == "failed"


async def test_on_failure_none_lets_the_rest_of_the_graph_finish(
    runner: FlowRunner, registry: TaskRegistry, fakes: dict[str, Any]
) -> None:
    spec = flow(registry, "name: n\non_failure: none\ntasks:\n"
                "  - {id: bad, task: step, with: {fail: true}}\n"
                "  - {id: after-bad, task: step, after: [bad]}\n"
                "  - {id: slow, task: undoable, with: {sleep: 0.05}}\n")  # fmt: skip
    run = await runner.run(spec)
    assert run.state is FlowState.FAILED
    assert sorted(fakes["step"].calls + fakes["undoable"].calls) == ["bad", "slow"]
    assert fakes["undoable"].undone == []
    assert run.counts == {"failed": 1, "pending": 1, "succeeded": 1}


async def test_on_failure_transition_runs_the_transition_task(
    store: Store, registry: TaskRegistry, fakes: dict[str, Any], tmp_path: Path
) -> None:
    runner = FlowRunner(store, registry, lock_dir=tmp_path / "locks")
    spec = flow(registry, "name: fw\non_failure: {transition: rma}\nlinear: true\ntasks:\n"
                "  - {id: flash, task: step, with: {fail: true}}\n"
                "  - {id: done, task: transition, with: {to: maintenance}}\n")  # fmt: skip
    run = await runner.run(spec, node="n7")
    assert run.state is FlowState.FAILED
    assert fakes["transition"].moves == [
        ("n7", {"to": "rma", "reason": f"flow fw run {run.run_id} failed at task flash: "
                                       "flash broke"})
    ]  # fmt: skip
    found = await events(store, run)
    assert task_events(found, "on_failure") == ["succeeded"]
    assert [e["event"] for e in found if "event" in e] == ["started", "failing"]


# -- waits and signals -------------------------------------------------------------------


async def test_a_signal_wakes_a_waiting_task(
    runner: FlowRunner, registry: TaskRegistry, store: Store
) -> None:
    spec = flow(registry, "name: ap\nlinear: true\ntasks:\n"
                "  - {id: approve, task: wait_signal, with: {name: approve}}\n"
                "  - {id: next, task: step}\n")  # fmt: skip
    running = asyncio.create_task(runner.run(spec))
    journal = FlowJournal(store)

    async def waiting() -> bool:
        runs = await journal.runs()
        return bool(runs) and runs[0].state is FlowState.WAITING

    await until(waiting)
    record = (await journal.runs())[0]
    assert record.waiting_for == {"approve": "signal approve"}
    await flow_signals.send(store, record.run_id, "approve", {"by": "ops"}, by="olga")
    run = await running
    assert run.state is FlowState.SUCCEEDED
    found = await events(store, run)
    receipt = next(e for e in found if e.get("task") == "approve" and e["state"] == "running")
    assert receipt["data"] == {"by": "ops"} and receipt["signal"] == "approve"
    assert receipt["by"] == "olga"  # the sender, journaled with the receipt
    assert next(e for e in found if e.get("task") == "approve" and e["state"] == "succeeded")[
        "result"
    ] == {"signal": "approve", "data": {"by": "ops"}}
    assert await store.list(f"flows.{run.run_id}.signals.approve") == []  # consumed


async def test_abort_reverts_and_ends_aborted(
    runner: FlowRunner, registry: TaskRegistry, fakes: dict[str, Any], store: Store
) -> None:
    spec = flow(registry, "name: ab\nlinear: true\ntasks:\n  - {id: prep, task: undoable}\n"
                "  - {id: approve, task: wait_signal, with: {name: approve}}\n"
                "  - {id: go, task: step}\n")  # fmt: skip
    running = asyncio.create_task(runner.run(spec))
    journal = FlowJournal(store)

    async def waiting() -> bool:
        runs = await journal.runs()
        return bool(runs) and runs[0].state is FlowState.WAITING

    await until(waiting)
    await flow_signals.send(store, (await journal.runs())[0].run_id, "abort")
    run = await running
    assert run.state is FlowState.ABORTED
    assert [u[0] for u in fakes["undoable"].undone] == ["prep"]
    assert fakes["step"].calls == []
    assert len(await store.list(f"flows.{run.run_id}.signals.abort")) == 1  # never consumed


async def test_a_failing_revert_ends_the_run_failed(
    store: Store, registry: TaskRegistry, tmp_path: Path
) -> None:
    class Stuck(Undoable):
        name = "stuck"

        async def revert(self, ctx: FlowContext, params: dict[str, Any], result: Any) -> None:
            raise errors.PermanentError("cannot put it back")

    registry.register(Stuck())
    runner = FlowRunner(store, registry, lock_dir=tmp_path / "locks")
    spec = flow(
        registry,
        "name: rf\nlinear: true\ntasks:\n  - {id: a, task: undoable}\n"
        "  - {id: b, task: stuck}\n  - {id: c, task: step, with: {fail: true}}\n",
    )
    run = await runner.run(spec)
    assert run.state is FlowState.FAILED
    assert run.counts == {"reverted": 1, "revert_failed": 1, "failed": 1}
    found = await events(store, run)
    assert task_events(found, "b") == ["running", "succeeded", "reverting", "revert_failed"]
    assert task_events(found, "a")[-1] == "reverted"  # the others are still reverted


async def test_abort_under_on_failure_none_reverts_nothing(
    runner: FlowRunner, registry: TaskRegistry, fakes: dict[str, Any], store: Store
) -> None:
    spec = flow(registry, "name: an\non_failure: none\nlinear: true\ntasks:\n"
                "  - {id: prep, task: undoable}\n"
                "  - {id: approve, task: wait_signal, with: {name: approve}}\n")  # fmt: skip
    running = asyncio.create_task(runner.run(spec))
    journal = FlowJournal(store)

    async def waiting() -> bool:
        runs = await journal.runs()
        return bool(runs) and runs[0].state is FlowState.WAITING

    await until(waiting)
    await flow_signals.send(store, (await journal.runs())[0].run_id, "abort")
    run = await running
    assert run.state is FlowState.ABORTED
    assert fakes["undoable"].undone == []


async def test_tasks_cannot_wait_for_reserved_signals(
    runner: FlowRunner, registry: TaskRegistry
) -> None:
    spec = flow(registry, "name: r\ntasks: [{id: w, task: wait_signal, with: {name: abort}}]\n")
    run = await runner.run(spec)
    assert run.state is FlowState.REVERTED
    assert run.error is not None and "reserved" in run.error.message


async def test_a_signal_wait_can_time_out(runner: FlowRunner, registry: TaskRegistry) -> None:
    spec = flow(
        registry,
        "name: t\ntasks:\n  - {id: w, task: wait_signal, with: {name: approve, timeout: 0.05}}\n",
    )
    run = await runner.run(spec)
    assert run.state is FlowState.REVERTED
    assert run.error is not None and run.error.message == "no 'approve' signal came in time"


async def test_wait_condition_polls_until_it_holds(
    store: Store, registry: TaskRegistry, tmp_path: Path
) -> None:
    polls: list[dict[str, Any]] = []

    async def ready(ctx: FlowContext, args: dict[str, Any]) -> bool:
        polls.append(args)
        if len(polls) == 2:
            raise errors.TransientError("cannot tell yet")
        return len(polls) >= 4

    runner = FlowRunner(store, registry, lock_dir=tmp_path / "l",
                        services={"conditions": {"ready": ready}})  # fmt: skip
    spec = flow(registry, "name: c\ntasks:\n  - {id: w, task: wait_condition, with: "
                "{condition: ready, args: {x: 1}, interval: 0.01, timeout: 5}}\n")  # fmt: skip
    run = await runner.run(spec)
    assert run.state is FlowState.SUCCEEDED
    assert polls == [{"x": 1}] * 4
    spec = flow(registry, "name: c\ntasks:\n  - {id: w, task: wait_condition, with: "
                "{condition: never, interval: 0.01, timeout: 0.05}}\n")  # fmt: skip
    runner.services["conditions"] = {"never": _never}
    run = await runner.run(spec)
    assert run.error is not None
    assert run.error.message == "condition never did not hold within 0.05 s"
    spec = flow(registry, "name: c\ntasks: [{id: w, task: wait_condition, with: {condition: x}}]\n")
    run = await runner.run(spec)
    assert run.error is not None
    assert run.error.message == "unknown condition 'x'; known: converged, never"


async def _never(ctx: FlowContext, args: dict[str, Any]) -> bool:
    return False


# -- stopping and resuming ---------------------------------------------------------------


async def test_a_durable_sleep_resumes_with_only_the_remainder(
    runner: FlowRunner, registry: TaskRegistry, store: Store
) -> None:
    spec = flow(
        registry,
        "name: nap\nlinear: true\ntasks:\n"
        "  - {id: nap, task: sleep, with: {seconds: 0.6}}\n  - {id: up, task: step}\n",
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    first = await runner.run(spec, stop=stop)
    assert first.state is FlowState.INTERRUPTED
    resumed_at = time.monotonic()
    run = await runner.resume(first.run_id)
    elapsed = time.monotonic() - resumed_at
    assert run.state is FlowState.SUCCEEDED
    assert 0.25 < elapsed < 0.55, elapsed  # 0.6 s minus the 0.2 s slept before the stop
    found = await events(store, run)
    assert task_events(found, "nap") == ["waiting", "interrupted", "succeeded"]
    assert [e["event"] for e in found if "event" in e] == ["started", "resumed"]
    assert run.resumed == 1


async def test_resume_does_not_redo_finished_tasks(
    runner: FlowRunner, registry: TaskRegistry, fakes: dict[str, Any]
) -> None:
    spec = flow(
        registry,
        "name: r\nlinear: true\ntasks:\n  - {id: a, task: step}\n"
        "  - {id: b, task: once, with: {block: true}}\n  - {id: c, task: step}\n",
    )
    stop = asyncio.Event()
    once = fakes["once"]
    running = asyncio.create_task(runner.run(spec, stop=stop))
    await once.started.wait()
    stop.set()  # Ctrl-C: b finishes, nothing new starts
    once.release.set()
    first = await running
    assert first.state is FlowState.INTERRUPTED
    assert fakes["step"].calls == ["a"]
    run = await runner.resume(first.run_id)
    assert run.state is FlowState.SUCCEEDED
    assert fakes["step"].calls == ["a", "c"] and once.runs == {"b": 1}
    with pytest.raises(errors.InputError, match="has ended"):
        await runner.resume(run.run_id)


async def test_a_task_in_doubt_waits_for_an_operator(
    runner: FlowRunner, registry: TaskRegistry, fakes: dict[str, Any], store: Store
) -> None:
    spec = flow(
        registry,
        "name: d\nlinear: true\ntasks:\n"
        "  - {id: flash, task: once, with: {block: true}}\n  - {id: next, task: step}\n",
    )
    once = fakes["once"]
    running = asyncio.create_task(runner.run(spec))
    await once.started.wait()
    running.cancel()  # the second Ctrl-C: the task is cut off, in doubt
    with pytest.raises(asyncio.CancelledError):
        await running
    journal = FlowJournal(store)
    record = (await journal.runs())[0]
    assert record.state is FlowState.INTERRUPTED
    resuming = asyncio.create_task(runner.resume(record.run_id))

    async def asking() -> bool:
        return bool((await journal.get(record.run_id)).conditions)

    await until(asking)
    asked = await journal.get(record.run_id)
    assert asked.state is FlowState.WAITING
    assert asked.conditions[0].type == "OperatorDecision"
    assert "task 'flash' was interrupted" in asked.conditions[0].message
    await flow_signals.send(store, record.run_id, "skip", {"task": "other"})  # not for flash
    await asyncio.sleep(0.1)
    assert not resuming.done()
    await flow_signals.send(store, record.run_id, "skip", {"task": "flash", "result": "v2"})
    run = await resuming
    assert run.state is FlowState.SUCCEEDED
    assert once.runs == {"flash": 1}  # not run again
    found = await events(store, run)
    skipped = [e for e in found if e.get("task") == "flash"][-1]
    assert skipped["state"] == "succeeded" and skipped["result"] == "v2" and skipped["skipped"]
    assert fakes["step"].calls == ["next"]


async def test_retry_runs_a_task_in_doubt_again(
    runner: FlowRunner, registry: TaskRegistry, fakes: dict[str, Any], store: Store
) -> None:
    spec = flow(registry, "name: d\ntasks: [{id: flash, task: once, with: {block: true}}]\n")
    once = fakes["once"]
    running = asyncio.create_task(runner.run(spec))
    await once.started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    run_id = (await FlowJournal(store).runs())[0].run_id
    await flow_signals.send(store, run_id, "retry")  # sent before resume: still counts
    once.release.set()
    run = await runner.resume(run_id)
    assert run.state is FlowState.SUCCEEDED
    assert once.runs == {"flash": 2}


async def test_resume_marks_a_dead_run_crashed_and_refuses_a_live_one(
    runner: FlowRunner, registry: TaskRegistry, store: Store
) -> None:
    spec = flow(registry, "name: c\ntasks: [{id: a, task: step}]\n")
    journal = FlowJournal(store)
    first = await runner.run(spec, stop=_set())
    assert first.state is FlowState.INTERRUPTED
    first.state = FlowState.RUNNING  # as a process killed mid-run leaves it
    await journal.save(first)
    held = RunLock.take(runner.lock_dir, first.run_id)
    with pytest.raises(errors.AccordError, match="being run by a live process"):
        await runner.resume(first.run_id)
    held.release(finished=False)
    run = await runner.resume(first.run_id)
    assert run.state is FlowState.SUCCEEDED
    found = await events(store, run)
    assert [e["event"] for e in found if "event" in e] == ["started", "crashed", "resumed"]
    crashed = next(e for e in found if e.get("event") == "crashed")
    assert crashed["state"] == "running"


async def test_replay_refuses_an_impossible_journal(
    runner: FlowRunner, registry: TaskRegistry, store: Store
) -> None:
    run = await runner.run(flow(registry, "name: x\ntasks: [{id: a, task: step}]\n"))
    journal = FlowJournal(store)
    await journal.task(run.run_id, "a", flow_signals_state("pending"))
    with pytest.raises(errors.StoreError, match="impossible"):
        await journal.replay(run)


def flow_signals_state(value: str) -> Any:
    from accord.engine.flows.states import TaskState

    return TaskState(value)


def _set() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event
