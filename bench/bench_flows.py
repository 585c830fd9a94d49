"""Durable flows with persistence on: accord's FlowRunner against OpenStack TaskFlow 6.x.

Two graphs of trivial tasks, N = 1,000 each, every task transition persisted to SQLite:

* ``chain``:  N tasks, each after the one before (accord ``linear: true``; TaskFlow
  ``linear_flow``);
* ``fanout``: N independent tasks (accord: no ``after``, concurrency 8; TaskFlow
  ``unordered_flow``, which the serial engine runs one at a time).

accord runs in this process: ``FlowRunner.run`` on a real SQLite store in a temporary
directory, timed from building the flow definition to the run's end (record written, lock
released). Tasks are idempotent without a revert (one journal commit per task: its end), or
not idempotent (two: ``running`` first, then the end), each at the store's default
``synchronous=normal`` (a commit is durable against ``kill -9``, not against power loss) and at
``synchronous=full`` (an fsync per commit: durable against power loss too).

TaskFlow runs in its own virtual environment (``bench/.venv-taskflow``, created with ``uv`` on
first use: ``taskflow>=6,<7``, ``SQLAlchemy<2.1``, ``alembic``), in a child process: the same
graphs, its SQLAlchemy persistence backend on ``sqlite:///<tmp>/tf.db`` (schema upgraded, a
logbook and flow detail saved first), ``taskflow.engines.load(flow, book=…, backend=…,
engine="serial")``, timed from building the flow to the end of ``engine.run()``. The child
counts the backend's commits, so commits per task are measured, not assumed.

Every accord figure is the best of ``--repeat`` runs, each on a fresh database file; TaskFlow
runs once per graph by default (about 70 ms per task: ~2.5 minutes for both graphs at 1,000).
Target (from the flows issue): accord ≥ 100x TaskFlow's throughput on the persisted chain.

Run: ``uv run --frozen python bench/bench_flows.py [--tasks N] [--taskflow-tasks N] [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
from accord.engine.flows import FlowRunner, FlowSpec, FlowState, TaskRegistry
from accord.engine.flows.context import FlowContext
from accord.engine.flows.tasks import Task
from accord.store import open_store

TARGET = 100.0
VENV = common.BENCH_DIR / ".venv-taskflow"
REQUIREMENTS = ("taskflow>=6,<7", "SQLAlchemy<2.1", "alembic")
SHAPES = ("chain", "fanout")


class Noop(Task):
    """Idempotent, no revert: the runner journals only its end (one commit)."""

    name = "noop"
    idempotent = True

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        return None


class NoopOnce(Noop):
    """Not idempotent: the runner journals ``running`` before it too (two commits)."""

    name = "noop_once"
    idempotent = False


REGISTRY = TaskRegistry([Noop(), NoopOnce()])
VARIANTS = (("noop", 1), ("noop_once", 2))


def flow_spec(shape: str, n: int, task: str) -> FlowSpec:
    return FlowSpec.model_validate(
        {
            "name": f"bench-{shape}",
            "linear": shape == "chain",
            "concurrency": 8,
            "on_failure": "none",
            "tasks": [{"id": f"t{i}", "task": task} for i in range(n)],
        }
    )


async def accord_once(directory: Path, shape: str, n: int, task: str, sync: str) -> dict[str, Any]:
    url = f"sqlite:///{directory / 'accord.db'}" + ("?synchronous=full" if sync == "full" else "")
    store = await open_store(url)
    try:
        runner = FlowRunner(store, REGISTRY, lock_dir=directory / "locks")
        started = time.perf_counter()
        run = await runner.run(flow_spec(shape, n, task))
        seconds = time.perf_counter() - started
        if run.state is not FlowState.SUCCEEDED:
            raise RuntimeError(f"the benchmark flow ended {run.state}")
        task_events = sum(1 for r in await store.read("flow-journal") if b'"task"' in r.data)
    finally:
        await store.close()
    return {"seconds": seconds, "commits_per_task": task_events / n}


def accord_rows(n: int, repeat: int) -> list[dict[str, Any]]:
    rows = []
    for shape in SHAPES:
        for task, _ in VARIANTS:
            for sync in ("normal", "full"):
                best: dict[str, Any] | None = None
                for _ in range(repeat):
                    with tempfile.TemporaryDirectory(prefix="bench-flows-") as tmp:
                        found = asyncio.run(accord_once(Path(tmp), shape, n, task, sync))
                    if best is None or found["seconds"] < best["seconds"]:
                        best = found
                assert best is not None
                rows.append({
                    "graph": shape, "engine": "accord", "tasks": n, "synchronous": sync,
                    "idempotent": task == "noop", **best, "tasks_per_s": n / best["seconds"],
                })  # fmt: skip
    return rows


# TaskFlow, in its own environment -------------------------------------------------------

CHILD = r"""
import contextlib, json, sqlite3, sys, tempfile, time, uuid
from importlib import metadata

import sqlalchemy as sa
from taskflow import engines, task
from taskflow.patterns import linear_flow, unordered_flow
from taskflow.persistence import backends, models


class Noop(task.Task):
    def execute(self):
        return None


def measure(shape, n, directory):
    db = f"{directory}/tf-{shape}-{uuid.uuid4().hex}.db"
    backend = backends.fetch({"connection": f"sqlite:///{db}"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    book = models.LogBook("bench")
    detail = models.FlowDetail(f"bench-{shape}", uuid.uuid4().hex)
    book.add(detail)
    with contextlib.closing(backend.get_connection()) as conn:
        conn.save_logbook(book)
    commits = [0]
    sa.event.listen(backend.engine, "commit", lambda conn: commits.__setitem__(0, commits[0] + 1))
    started = time.perf_counter()
    flow = (linear_flow.Flow if shape == "chain" else unordered_flow.Flow)(f"bench-{shape}")
    flow.add(*[Noop(name=f"t{i}") for i in range(n)])
    engine = engines.load(flow, flow_detail=detail, book=book, backend=backend, engine="serial")
    engine.run()
    seconds = time.perf_counter() - started
    backend.close()
    with contextlib.closing(sqlite3.connect(db)) as check:
        done = check.execute("SELECT count(*) FROM atomdetails WHERE state = 'SUCCESS'").fetchone()
        mode = check.execute("PRAGMA journal_mode").fetchone()[0]
    if done[0] != n:
        raise SystemExit(f"TaskFlow persisted {done[0]} successful atoms, not {n}")
    return {"graph": shape, "engine": "taskflow", "tasks": n, "seconds": seconds,
            "tasks_per_s": n / seconds, "commits_per_task": commits[0] / n,
            "synchronous": f"default (journal_mode={mode})"}


n, repeat = int(sys.argv[1]), int(sys.argv[2])
rows = []
with tempfile.TemporaryDirectory(prefix="bench-taskflow-") as directory:
    for shape in ("chain", "fanout"):
        runs = [measure(shape, n, directory) for _ in range(repeat)]
        rows.append(min(runs, key=lambda r: r["seconds"]))
print(json.dumps({"taskflow": metadata.version("taskflow"),
                  "sqlalchemy": metadata.version("sqlalchemy"), "rows": rows}))
"""


def taskflow_python() -> tuple[Path | None, str]:
    """The TaskFlow environment's interpreter (created if missing), or None and why not."""
    python = VENV / "bin" / "python"
    steps: list[list[str]] = []
    if not python.exists():
        uv = shutil.which("uv")
        if uv is None:
            return None, "uv is not on PATH, so the TaskFlow environment cannot be created"
        steps = [
            [uv, "venv", str(VENV), "--python", "3.11", "--quiet"],
            [uv, "pip", "install", "--quiet", "--python", str(python), *REQUIREMENTS],
        ]
    steps.append([str(python), "-c", "import taskflow.persistence.backends.impl_sqlalchemy"])
    for step in steps:
        print(f"$ {' '.join(step)}", file=sys.stderr)
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return None, f"`{' '.join(step)}` failed: {done.stderr.strip()[-2000:]}"
    return python, ""


def taskflow_rows(python: Path, n: int, repeat: int) -> tuple[list[dict[str, Any]], str]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="taskflow-bench-") as child:
        child.write(CHILD)
        child.flush()
        done = subprocess.run(
            [str(python), child.name, str(n), str(repeat)], capture_output=True, text=True,
            timeout=7200,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the TaskFlow child failed:\n{done.stderr[-3000:]}")
    document = json.loads(done.stdout.strip().splitlines()[-1])
    rows: list[dict[str, Any]] = document["rows"]
    return rows, f"TaskFlow {document['taskflow']}, SQLAlchemy {document['sqlalchemy']}"


# Report -----------------------------------------------------------------------------------


def label(row: dict[str, Any]) -> str:
    if row["engine"] == "taskflow":
        return "TaskFlow (serial engine, SQLAlchemy backend)"
    kind = "idempotent tasks" if row["idempotent"] else "non-idempotent tasks"
    return f"accord ({kind})"


def report(rows: list[dict[str, Any]], versions: str, n_taskflow: int) -> list[str]:
    baseline = {r["graph"]: r["tasks_per_s"] for r in rows if r["engine"] == "taskflow"}
    body = []
    for r in rows:
        base = baseline.get(r["graph"])
        ratio = f"{r['tasks_per_s'] / base:,.0f}x" if base and r["engine"] == "accord" else "1x"
        if base is None:
            ratio = "n/a"
        body.append([
            r["graph"], label(r), r["synchronous"], f"{r['commits_per_task']:.2f}", r["tasks"],
            f"{r['seconds']:.3f}", f"{r['tasks_per_s']:,.0f}", ratio,
        ])  # fmt: skip
    print(common.table(
        ["graph", "engine", "synchronous", "commits/task", "tasks", "seconds", "tasks/s",
         "vs TaskFlow"], body,
    ))  # fmt: skip
    print(versions)
    verdicts = []
    chain = baseline.get("chain")
    for r in rows:
        if r["engine"] != "accord" or r["graph"] != "chain":
            continue
        if chain is None:
            verdicts.append(f"{label(r)}, synchronous={r['synchronous']}: no TaskFlow figure")
            continue
        ratio = r["tasks_per_s"] / chain
        verdict = "PASS" if ratio >= TARGET else "FAIL"
        verdicts.append(
            f"{verdict}: persisted chain, {label(r)}, synchronous={r['synchronous']}: "
            f"{r['tasks_per_s']:,.0f} tasks/s = {ratio:,.0f}x TaskFlow's {chain:,.1f} "
            f"(target ≥ {TARGET:.0f}x)"
        )
    if chain is not None and n_taskflow != rows[0]["tasks"]:
        verdicts.append(f"(TaskFlow ran {n_taskflow} tasks per graph, accord {rows[0]['tasks']})")
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per graph (accord)")
    parser.add_argument("--taskflow-tasks", type=int, default=None,
                        help="tasks per graph for TaskFlow (default: --tasks)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=5, help="accord runs; the best counts")
    parser.add_argument("--taskflow-repeat", type=int, default=1)
    parser.add_argument("--no-taskflow", action="store_true", help="measure accord only")
    parser.add_argument("--quick", action="store_true", help="TaskFlow on 100 tasks per graph")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    n_taskflow = args.taskflow_tasks or (100 if args.quick else args.tasks)
    info = common.machine()
    print(common.describe(info))
    rows = accord_rows(args.tasks, args.repeat)
    versions, why_not = "", ""
    if not args.no_taskflow:
        python, why_not = taskflow_python()
        if python is not None:
            found, versions = taskflow_rows(python, n_taskflow, args.taskflow_repeat)
            rows += found
    if why_not:
        versions = f"TaskFlow not measured: {why_not}"
    print()
    verdicts = report(rows, versions, n_taskflow)
    print()
    print("\n".join(verdicts))
    if args.json:
        common.save_results(args.json, {"machine": info, "rows": rows, "verdicts": verdicts,
                                        "versions": versions})  # fmt: skip
    if any(v.startswith("FAIL") for v in verdicts):
        sys.exit(1)


if __name__ == "__main__":
    main()
