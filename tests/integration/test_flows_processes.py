"""Flows across real processes: signals sent by another process, and ``kill -9`` mid-flow.

Child processes find the test's task types the way a third-party package would: through an
``accord.tasks`` entry point of a distribution on their ``PYTHONPATH`` (written per test).

The crash trials kill ``accord flow run`` at random moments, then ``accord flow resume`` it.
A task that is not idempotent and was cut off is in doubt, so the resumed run asks an operator;
the test answers like one would, by looking at the task's side effect: ``skip`` if its line is
in the file (it completed), ``retry`` if not. Every trial must end with each such task's line
in the file exactly once, and with the crash and the resumption in the journal.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from accord.engine.flows import FlowJournal, FlowRun, FlowRunner, FlowState, TaskRegistry
from accord.engine.flows import signals as flow_signals
from accord.engine.flows.builtin import builtin_tasks
from accord.engine.flows.model import parse_flow
from accord.store import Store, open_store

pytestmark = pytest.mark.timeout(120)
TRIALS = 12
PLUGIN = '''"""Task types for the flow process tests (an accord.tasks entry point)."""
import asyncio
from pathlib import Path

from accord.engine.flows.tasks import Task


class Append(Task):
    """Not idempotent: appends its id to a file, then takes a little while."""

    name = "append"
    idempotent = False

    async def execute(self, ctx, params):
        with open(params["file"], "a") as out:
            out.write(ctx.task_id + "\\n")
        await asyncio.sleep(params.get("sleep", 0.03))
        return ctx.task_id


class Touch(Task):
    """Idempotent: writes a marker file named after the task."""

    name = "touch"
    idempotent = True

    async def execute(self, ctx, params):
        Path(params["dir"], ctx.task_id).write_text("done")
        await asyncio.sleep(params.get("sleep", 0.02))
        return None
'''


def flow_command() -> list[str]:
    """``accord flow`` as a process: the root app's group once registered, else the module."""
    from accord.cli.app import app

    names = {g.name or (g.typer_instance.info.name if g.typer_instance else None)
             for g in app.registered_groups}  # fmt: skip
    if "flow" in names:
        return [sys.executable, "-m", "accord", "flow"]
    return [sys.executable, "-m", "accord.cli.flow"]


@pytest.fixture
def child_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python finds the test task types through entry points."""
    site = tmp_path / "plugins"
    info = site / "flowtest_tasks-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "flowtest_tasks.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flowtest-tasks\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[accord.tasks]\nappend = flowtest_tasks:Append\ntouch = flowtest_tasks:Touch\n"
    )
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    (tmp_path / "state").mkdir()
    opened = await open_store(f"sqlite:///{tmp_path / 'state' / 'accord.db'}")
    yield opened
    await opened.close()


async def until(predicate: Any, seconds: float = 20.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := await predicate()):
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)
    return found


async def run_cli(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *flow_command(), *map(str, args), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


# -- signals from another process --------------------------------------------------------


async def _waiting_run(
    store: Store, tmp_path: Path, text: str
) -> tuple[asyncio.Task[FlowRun], str]:
    registry = TaskRegistry(builtin_tasks())
    runner = FlowRunner(store, registry, lock_dir=tmp_path / "state" / "flows")
    spec = parse_flow(text, source="signals.yaml", task_types=registry.names())
    running = asyncio.create_task(runner.run(spec))
    journal = FlowJournal(store)

    async def waiting() -> str | None:
        runs = await journal.runs()
        return runs[0].run_id if runs and runs[0].state is FlowState.WAITING else None

    return running, await until(waiting)


async def test_approve_sent_by_another_process_wakes_the_flow(store: Store, tmp_path: Path) -> None:
    running, run_id = await _waiting_run(store, tmp_path, (
        "name: approval\nlinear: true\ntasks:\n"
        "  - {id: approve, task: wait_signal, with: {name: approve}}\n"
        "  - {id: nap, task: sleep, with: {seconds: 0.01}}\n"))  # fmt: skip
    code, out = await run_cli("signal", run_id, "approve", "--data", '{"ticket": "CHG-42"}',
                              "--state-dir", tmp_path / "state")  # fmt: skip
    assert code == 0, out
    run = await asyncio.wait_for(running, 20)
    assert run.state is FlowState.SUCCEEDED
    found = await FlowJournal(store).events(run)
    done = next(e for e in found if e.get("task") == "approve" and e["state"] == "succeeded")
    assert done["result"] == {"signal": "approve", "data": {"ticket": "CHG-42"}}


async def test_abort_sent_by_another_process_stops_the_flow(store: Store, tmp_path: Path) -> None:
    running, run_id = await _waiting_run(store, tmp_path, (
        "name: approval\nlinear: true\ntasks:\n"
        "  - {id: approve, task: wait_signal, with: {name: approve}}\n"
        "  - {id: nap, task: sleep, with: {seconds: 0.01}}\n"))  # fmt: skip
    code, out = await run_cli("signal", run_id, "abort", "--state-dir", tmp_path / "state")
    assert code == 0, out
    run = await asyncio.wait_for(running, 20)
    assert run.state is FlowState.ABORTED
    found = await FlowJournal(store).events(run)
    assert [e["state"] for e in found if e.get("task") == "approve"] == ["waiting", "interrupted"]
    assert not [e for e in found if e.get("task") == "nap"]


# -- kill -9 -----------------------------------------------------------------------------


def crash_flow(path: Path, lines: Path, marks: Path) -> None:
    """Four appends in a chain, six in parallel, three idempotent touches, one last append."""
    tasks = [{"id": f"a{i}", "task": "append", "with": {"file": str(lines)},
              "after": [f"a{i - 1}"] if i else []} for i in range(4)]  # fmt: skip
    tasks += [{"id": f"b{i}", "task": "append", "with": {"file": str(lines)}, "after": ["a3"]}
              for i in range(6)]  # fmt: skip
    tasks += [{"id": f"t{i}", "task": "touch", "with": {"dir": str(marks)},
               "after": [f"b{j}" for j in range(6)]} for i in range(3)]  # fmt: skip
    tasks += [{"id": "z", "task": "append", "with": {"file": str(lines)},
               "after": ["t0", "t1", "t2"]}]  # fmt: skip
    path.write_text(json.dumps({"name": "crash", "concurrency": 3, "tasks": tasks}))


APPENDS = [f"a{i}" for i in range(4)] + [f"b{i}" for i in range(6)] + ["z"]


async def kill_mid_run(command: list[str], env: dict[str, str], delay: float) -> tuple[str, bool]:
    """Start ``accord flow run``, read its run id, SIGKILL it ``delay`` s later.

    Returns the run id and whether the process was still there to be killed.
    """
    proc = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert proc.stdout is not None
    async with reaped(proc):
        run_id = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        assert run_id, "the run id is the first line"
        await asyncio.sleep(delay)
        killed = proc.returncode is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        code = await proc.wait()
    assert code in (0, -signal.SIGKILL), code
    return run_id, killed and code == -signal.SIGKILL


async def resume_as_operator(
    command: list[str], env: dict[str, str], store: Store, run_id: str, lines: Path
) -> tuple[int, int]:
    """``accord flow resume``, answering its questions about tasks in doubt from the file.

    Returns the exit code and how many questions it answered.
    """
    proc = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    journal = FlowJournal(store)
    answered: set[str] = set()
    deadline = time.monotonic() + 60
    async with reaped(proc):
        while proc.returncode is None:
            assert time.monotonic() < deadline, "resume never finished"
            record = await journal.get(run_id)
            for task_id, what in record.waiting_for.items():
                if "operator" in what and task_id not in answered:
                    answered.add(task_id)
                    done = task_id in lines.read_text().split()
                    name = flow_signals.SKIP if done else flow_signals.RETRY
                    data = {"task": task_id, "result": task_id}
                    await flow_signals.send(store, run_id, name, data)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.02)
    return proc.returncode, len(answered)


@contextlib.asynccontextmanager
async def reaped(proc: asyncio.subprocess.Process) -> AsyncIterator[None]:
    """Kill the child if the test fails while it runs: no process outlives its test."""
    try:
        yield
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_kill_9_at_random_moments_then_resume(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    seed = int(os.environ.get("ACCORD_CRASH_SEED", time.time_ns()))
    rng = random.Random(seed)
    slots = asyncio.Semaphore(4)  # trials in parallel: each is two short-lived processes
    async with asyncio.timeout(100), asyncio.TaskGroup() as group:
        trials = [
            group.create_task(
                _trial(tmp_path / f"trial{n}", child_env, rng.uniform(0.0, 0.15), slots, seed)
            )
            for n in range(TRIALS)
        ]
    crashed = sum(t.result()[0] for t in trials)
    assert crashed >= 10, f"only {crashed} of {TRIALS} kills landed mid-run (seed {seed})"
    asked = sum(t.result()[1] for t in trials)
    assert asked >= 1, f"no kill left a task in doubt (seed {seed})"


async def _trial(
    where: Path, env: dict[str, str], delay: float, slots: asyncio.Semaphore, seed: int
) -> tuple[bool, int]:
    async with slots:
        where.mkdir()
        lines, marks, spec = where / "lines.txt", where / "marks", where / "crash.json"
        marks.mkdir()
        lines.touch()
        crash_flow(spec, lines, marks)
        state = where / "state"
        command = flow_command()
        run_id, killed = await kill_mid_run(
            [*command, "run", str(spec), "--root", str(where), "--state-dir", str(state)],
            env, delay,
        )  # fmt: skip
        store = await open_store(f"sqlite:///{state / 'accord.db'}")
        try:
            journal = FlowJournal(store)
            # A kill can land after the run ended, while the process was exiting.
            killed = killed and not (await journal.get(run_id)).state.terminal
            asked = 0
            if killed:
                code, asked = await resume_as_operator(
                    [*command, "resume", run_id, "--state-dir", str(state)], env, store, run_id,
                    lines,
                )  # fmt: skip
                assert code == 0, f"resume of {run_id} exited {code} (seed {seed})"
            record = await journal.get(run_id)
            assert record.state is FlowState.SUCCEEDED, (seed, record)
            counts = collections.Counter(lines.read_text().split())
            assert counts == dict.fromkeys(APPENDS, 1), (seed, delay, counts)
            assert sorted(p.name for p in marks.iterdir()) == ["t0", "t1", "t2"]
            runs = [e["event"] for e in await journal.events(record) if "event" in e]
            if killed:
                assert runs == ["started", "crashed", "resumed"], (seed, runs)
                assert record.resumed == 1
            return killed, asked
        finally:
            await store.close()


async def test_a_durable_sleep_survives_kill_9_with_only_the_remainder(
    tmp_path: Path, child_env: dict[str, str], store: Store
) -> None:
    lines = tmp_path / "lines.txt"
    spec = tmp_path / "nap.json"
    spec.write_text(json.dumps({"name": "nap", "linear": True, "tasks": [
        {"id": "before", "task": "append", "with": {"file": str(lines), "sleep": 0}},
        {"id": "nap", "task": "sleep", "with": {"seconds": 1.5}},
        {"id": "after", "task": "append", "with": {"file": str(lines), "sleep": 0}},
    ]}))  # fmt: skip
    state = tmp_path / "state"
    command = flow_command()
    proc = await asyncio.create_subprocess_exec(
        *command, "run", str(spec), "--state-dir", str(state), env=child_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    journal = FlowJournal(store)
    async with reaped(proc):
        run_id = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()

        async def sleeping() -> bool:
            return (await journal.get(run_id)).state is FlowState.WAITING

        await until(sleeping)
        await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
    resumed_at = time.time()
    code, out = await run_cli("resume", run_id, "--state-dir", state, env=child_env)
    assert code == 0, out
    record = await journal.get(run_id)
    found = await journal.events(record)
    naps = [e for e in found if e.get("task") == "nap" and e["state"] == "waiting"]
    assert len(naps) == 1  # the wake time was journaled once, and reused
    wake = naps[0]["until"]
    assert resumed_at < wake - 0.5  # resumed well before the wake time...
    after = next(e for e in found if e.get("task") == "after" and e["state"] == "succeeded")
    assert wake <= after["at"] < wake + 0.5  # ...and slept only until it, not 1.5 s more
    assert lines.read_text().split() == ["before", "after"]
