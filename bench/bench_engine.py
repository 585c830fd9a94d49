"""The engine alone: executor overhead per step, and the cost of journalling each step to SQLite.

What it measures, in this process, on two graphs (``accord.engine.graph.Graph``):

* ``chain``:  N steps, each depending on the one before (no parallelism at all);
* ``fanout``: one root and N children of it (all children ready at once; concurrency 8).

(a) Without persistence: ``accord.engine.executor.execute`` over steps that are trivial async
    functions (``return True``). The time per step is the executor's overhead; it is set
    against the floor for any task-per-step design — one ``asyncio`` task created and awaited
    per step, in topological order. Also shown: ``Graph.compile`` per node, and the
    ``instant`` path that completes converged steps inline without a task.
(b) With persistence: each step appends one journal event through
    ``accord.engine.journal.Journal(store).event(...)`` to a real SQLite store
    (``open_store("sqlite:///<tmp>/b.db")``), against a raw ``sqlite3`` loop on one connection
    (WAL, the same ``events`` table and index) inserting the same JSON event, one single-row
    transaction per step (autocommit: each INSERT commits). Both with ``synchronous=NORMAL``
    (accord's default) and ``synchronous=FULL`` (``?synchronous=full``; fsync per commit, so
    fewer steps by default: ``--full-steps``).

Every measurement is the best of ``--repeat`` runs; each persistence run starts from an empty
database file, and accord and the raw loop take turns. The whole script gives up after
``--timeout`` seconds (SIGALRM), since everything runs in this one process. Target (from the
performance issue): (a) under 50 µs of overhead per step.

Run: ``uv run --frozen --all-groups python bench/bench_engine.py [--quick] [--plot]``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import common
from accord.engine import executor
from accord.engine.graph import Graph
from accord.engine.journal import Journal
from accord.store import open_store

TARGET_US = 50.0
_DB_NUMBERS = itertools.count()

# The schema accord's SQLite store uses for its event log (src/accord/store/sqlite.py).
RAW_SCHEMA = (
    "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " stream TEXT NOT NULL, time REAL NOT NULL, data BLOB NOT NULL)",
    "CREATE INDEX events_by_stream ON events (stream, seq)",
)
RAW_INSERT = "INSERT INTO events (stream, time, data) VALUES (?, ?, ?)"


def chain(n: int) -> Graph:
    return Graph.compile((f"s{i}", [f"s{i - 1}"] if i else []) for i in range(n))


def fanout(n: int) -> Graph:
    return Graph.compile([("root", []), *((f"s{i}", ["root"]) for i in range(n))])


SHAPES: dict[str, Callable[[int], Graph]] = {"chain": chain, "fanout": fanout}


def best(repeat: int, once: Callable[[], float]) -> float:
    return min(once() for _ in range(repeat))


def timed(coro_factory: Callable[[], Awaitable[None]]) -> float:
    """Seconds one ``asyncio.run`` of the coroutine spends between its own two clock reads."""

    async def main() -> float:
        started = time.perf_counter()
        await coro_factory()
        return time.perf_counter() - started

    return asyncio.run(main())


# (a) the executor alone -------------------------------------------------------------------


async def trivial(i: int) -> bool:
    return True


async def run_engine(graph: Graph, *, instant: bool = False) -> None:
    outcomes = await executor.execute(
        graph, trivial, concurrency=8, instant=(lambda i: True) if instant else None
    )
    if any(o is not executor.Outcome.OK for o in outcomes):
        raise RuntimeError("a trivial step did not succeed")


async def run_floor(graph: Graph) -> None:
    """One task per step, awaited in topological order: what any task-per-step engine pays."""
    for i in graph.order:
        await asyncio.create_task(trivial(i))


def no_persistence(steps: int, repeat: int) -> list[dict[str, Any]]:
    rows = []
    for shape, build in SHAPES.items():
        compile_s = best(repeat, lambda build=build: _clock(lambda: build(steps)))
        graph = build(steps)
        n = len(graph)
        engine = best(repeat, lambda graph=graph: timed(lambda: run_engine(graph)))
        floor = best(repeat, lambda graph=graph: timed(lambda: run_floor(graph)))
        inline = best(repeat, lambda graph=graph: timed(lambda: run_engine(graph, instant=True)))
        rows.append(
            {
                "graph": shape,
                "steps": n,
                "engine_us": engine / n * 1e6,
                "floor_us": floor / n * 1e6,
                "instant_us": inline / n * 1e6,
                "compile_us": compile_s / n * 1e6,
            }
        )
    return rows


def _clock(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


# (b) one journal event per step -------------------------------------------------------------


async def run_journal(graph: Graph, url: str) -> float:
    store = await open_store(url)
    try:
        journal = Journal(store)
        run_id = "bench-run"

        async def step(i: int) -> bool:
            await journal.event(run_id, "applied", resource=graph.ids[i], attempts=1)
            return True

        started = time.perf_counter()
        outcomes = await executor.execute(graph, step, concurrency=8)
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    if any(o is not executor.Outcome.OK for o in outcomes):
        raise RuntimeError("a journal step did not succeed")
    if len(await _count(url)) != len(graph):
        raise RuntimeError("the journal does not hold one event per step")
    return elapsed


async def _count(url: str) -> list[Any]:
    store = await open_store(url)
    try:
        return await store.read("journal")
    finally:
        await store.close()


def run_raw(path: Path, steps: int, synchronous: str) -> float:
    """The same number of single-row insert transactions, straight through sqlite3."""
    conn = sqlite3.connect(path, isolation_level=None)  # autocommit: each INSERT commits
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        for statement in RAW_SCHEMA:
            conn.execute(statement)
        started = time.perf_counter()
        for i in range(steps):
            event = {
                "run": "bench-run",
                "at": time.time(),
                "event": "applied",
                "resource": f"s{i}",
                "attempts": 1,
            }
            data = json.dumps(event, separators=(",", ":")).encode()
            conn.execute(RAW_INSERT, ("journal", time.time(), data))
        elapsed = time.perf_counter() - started
        (count,) = conn.execute("SELECT count(*) FROM events").fetchone()
    finally:
        conn.close()
    if count != steps:
        raise RuntimeError(f"raw loop stored {count} rows, expected {steps}")
    return elapsed


def persistence(tmp: Path, steps: int, synchronous: str, repeat: int) -> list[dict[str, Any]]:
    """accord and the raw loop take turns, each run on a new database file."""
    query = "" if synchronous == "NORMAL" else f"?synchronous={synchronous.lower()}"

    def fresh() -> Path:
        return tmp / f"b{next(_DB_NUMBERS)}.db"

    rows = []
    for shape, build in SHAPES.items():
        graph = build(steps)
        n = len(graph)
        ours, raw = float("inf"), float("inf")
        for _ in range(repeat):
            ours = min(ours, asyncio.run(run_journal(graph, f"sqlite:///{fresh()}{query}")))
            raw = min(raw, run_raw(fresh(), n, synchronous))
        rows.append(
            {
                "graph": shape,
                "synchronous": synchronous,
                "steps": n,
                "accord_us": ours / n * 1e6,
                "raw_us": raw / n * 1e6,
            }
        )
    return rows


# report -----------------------------------------------------------------------------------------


def plain_table(rows: list[dict[str, Any]]) -> str:
    headers = ["graph", "steps", "engine µs/step", "asyncio floor µs/step", "ratio",
               "instant µs/step", "compile µs/node", f"< {TARGET_US:g} µs"]  # fmt: skip
    return common.table(
        headers,
        [
            [
                r["graph"],
                f"{r['steps']:,}",
                f"{r['engine_us']:.1f}",
                f"{r['floor_us']:.1f}",
                f"{r['engine_us'] / r['floor_us']:.1f}x",
                f"{r['instant_us']:.2f}",
                f"{r['compile_us']:.2f}",
                "PASS" if r["engine_us"] < TARGET_US else "FAIL",
            ]
            for r in rows
        ],
    )


def journal_table(rows: list[dict[str, Any]]) -> str:
    headers = ["graph", "synchronous", "steps", "accord µs/step", "raw sqlite3 µs/step", "ratio"]
    return common.table(
        headers,
        [
            [
                r["graph"],
                r["synchronous"],
                f"{r['steps']:,}",
                f"{r['accord_us']:.1f}",
                f"{r['raw_us']:.1f}",
                f"{r['accord_us'] / r['raw_us']:.1f}x",
            ]
            for r in rows
        ],
    )


def _give_up(signum: int, frame: object) -> None:
    raise SystemExit(f"bench_engine: gave up after --timeout seconds (signal {signum})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,000 steps, one run")
    parser.add_argument("--steps", type=int, help="steps per graph (default 10000)")
    parser.add_argument(
        "--full-steps", type=int, help="steps with synchronous=FULL, one fsync each (default 2000)"
    )
    parser.add_argument("--repeat", type=int, help="runs per measurement, best kept (default 3)")
    parser.add_argument(
        "--out",
        type=Path,
        help="results JSON (default bench/results/engine.json; quick runs write none unless given)",
    )
    parser.add_argument("--plot", action="store_true", help="write docs/benchmarks-engine.png")
    parser.add_argument(
        "--timeout", type=int, default=900, help="give up after this many seconds (900)"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGALRM, _give_up)
    signal.alarm(args.timeout)  # everything runs in this process: bound it as a whole
    steps = args.steps or (1000 if args.quick else 10000)
    full_steps = args.full_steps or (100 if args.quick else 2000)
    repeat = args.repeat or (1 if args.quick else 3)
    if args.out is None and not args.quick:
        args.out = common.RESULTS_DIR / "engine.json"
    machine = common.machine()
    print(common.describe(machine))
    print(f"{steps} steps ({full_steps} with synchronous=FULL), best of {repeat}\n")

    plain = no_persistence(steps, repeat)
    with tempfile.TemporaryDirectory(prefix="accord-bench-engine-") as tmp:
        journal = persistence(Path(tmp), steps, "NORMAL", repeat)
        journal += persistence(Path(tmp), full_steps, "FULL", repeat)

    print("(a) executor overhead, trivial async steps, no persistence\n")
    print(plain_table(plain))
    print("\n(b) one journal event per step: accord store vs raw sqlite3 (WAL, 1 txn per row)\n")
    print(journal_table(journal))
    verdicts = [
        {
            "target": f"{r['graph']}: executor overhead < {TARGET_US:g} µs/step",
            "verdict": "PASS" if r["engine_us"] < TARGET_US else "FAIL",
            "detail": f"{r['engine_us']:.1f} µs",
        }
        for r in plain
    ]
    print("\ntargets:")
    for v in verdicts:
        print(f"  {v['verdict']:<5} {v['target']:<42} {v['detail']}")

    document = {
        "machine": machine,
        "config": {"steps": steps, "full_steps": full_steps, "repeat": repeat},
        "no_persistence": plain,
        "persistence": journal,
        "targets": verdicts,
    }
    if args.out:
        common.save_results(args.out, document)
    if args.plot:
        import plot

        plot.plot_engine(document, common.DOCS_DIR / "benchmarks-engine.png")
    signal.alarm(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
