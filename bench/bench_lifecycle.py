"""Lifecycle transitions per second on SQLite, with history and the webhook outbox.

Each transition is the real thing (``accord.lifecycle.nodes.transition``): read the node and
check its last history entry (the crash repair), judge the table, compare-and-set the node
record, append the event to the outbox stream, create the history entry. That is three commits.
The baseline is a raw ``sqlite3`` loop doing the same three single-row commits per transition
on one connection (WAL, synchronous=NORMAL) with no logic at all, so the ratio is accord's
overhead over its own I/O floor.

Run: ``uv run --frozen python bench/bench_lifecycle.py [--transitions N] [--nodes K]``
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

from accord.lifecycle.definition import Facts, default_lifecycle
from accord.lifecycle.nodes import add_node, history, transition
from accord.store import open_store

LIFECYCLE = default_lifecycle()
FACTS = Facts(converged=True, reason="benchmark", roles=frozenset({"operator"}))
CYCLE = ("maintenance", "in_service")  # both guarded: reason, converged


async def accord_rate(db: Path, transitions: int, nodes: int, concurrent: bool) -> float:
    store = await open_store(f"sqlite:///{db}")
    ids = [f"n{i}" for i in range(nodes)]
    for node in ids:
        await add_node(store, node, LIFECYCLE)
        for to in ("provisioning", "in_service"):
            await transition(store, LIFECYCLE, node, to, initiator="setup", facts=FACTS)
    per_node = transitions // nodes

    async def walk(node: str) -> None:
        for i in range(per_node):
            await transition(store, LIFECYCLE, node, CYCLE[i % 2], initiator="bench", facts=FACTS)

    started = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(walk(node) for node in ids))
    else:
        for node in ids:
            await walk(node)
    elapsed = time.perf_counter() - started
    assert len(await history(store, ids[0])) == per_node + 2  # every transition is in history
    await store.close()
    return per_node * nodes / elapsed


def raw_rate(db: Path, transitions: int) -> float:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB, revision INTEGER)")
    conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB)")
    record = b'{"node":"n1","from":"in_service","to":"maintenance","initiator":"bench"}' * 3
    conn.execute("INSERT INTO kv VALUES ('nodes.n1', ?, 1)", (record,))
    started = time.perf_counter()
    for i in range(transitions):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE kv SET value = ?, revision = ? WHERE key = 'nodes.n1'", (record, i))
        conn.execute("COMMIT")
        conn.execute("INSERT INTO events (data) VALUES (?)", (record,))
        conn.execute("INSERT INTO kv VALUES (?, ?, ?)", (f"history.n1.{i:010d}", record, i))
    elapsed = time.perf_counter() - started
    conn.close()
    return transitions / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = raw_rate(Path(tmp) / "raw.db", args.transitions)
        sequential = asyncio.run(
            accord_rate(Path(tmp) / "a.db", args.transitions, args.nodes, False)
        )
        concurrent = asyncio.run(
            accord_rate(Path(tmp) / "b.db", args.transitions, args.nodes, True)
        )
    print(f"{'measure':<44}{'per second':>12}{'µs each':>10}")
    for name, rate in [
        ("raw sqlite3: 3 commits per transition", raw),
        (f"accord, sequential ({args.nodes} nodes)", sequential),
        (f"accord, concurrent ({args.nodes} nodes at once)", concurrent),
    ]:
        print(f"{name:<44}{rate:>12,.0f}{1e6 / rate:>10.0f}")
    print(f"accord sequential / raw: {sequential / raw:.2f}  (1.00 = no overhead over the I/O)")


if __name__ == "__main__":
    main()
