"""Run a graph of async steps: each step starts the moment its last predecessor succeeds.

A counter per node holds how many predecessors are still unfinished; finishing a step
decrements its successors' counters and starts those that reach zero, up to the concurrency
bound. A failed step never releases its successors, so it blocks only its descendants while the
rest of the graph goes on. Setting ``stop`` lets running steps finish and starts nothing new.

Steps for which ``instant(i)`` is true complete inline without a task: a converged resource in
a 10,000-resource no-op run costs a function call, not a scheduled coroutine.

``bounded`` runs work over a plain list, without a graph, at most so many at once.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from accord.engine.graph import Graph


class Outcome(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"
    BLOCKED = "blocked"  # a predecessor failed or was blocked
    INTERRUPTED = "interrupted"  # the run stopped before this step started, or it was cancelled


async def execute(
    graph: Graph,
    step: Callable[[int], Coroutine[Any, Any, bool]],
    *,
    concurrency: int = 8,
    stop: asyncio.Event | None = None,
    instant: Callable[[int], bool] | None = None,
) -> list[Outcome]:
    """Run every step of ``graph``; return each step's outcome, indexed like ``graph.ids``.

    ``step(i)`` returns True on success; False or an exception is a failure (the step is
    expected to have recorded why). Cancelling ``execute`` cancels the running steps.
    """
    n = len(graph)
    outcome: list[Outcome | None] = [None] * n
    remaining = [len(p) for p in graph.preds]
    ready = deque(i for i in range(n) if remaining[i] == 0)
    running: dict[asyncio.Task[bool], int] = {}
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()

    def settle(i: int, ok: bool) -> None:
        outcome[i] = Outcome.OK if ok else Outcome.FAILED
        if ok:
            for s in graph.succs[i]:
                remaining[s] -= 1
                if remaining[s] == 0:
                    ready.append(s)

    def launch() -> None:
        while ready and len(running) < concurrency and not (stop and stop.is_set()):
            i = ready.popleft()
            if instant is not None and instant(i):
                settle(i, True)
                continue
            task = loop.create_task(step(i))
            running[task] = i
            task.add_done_callback(done)
        if not running and not finished.done():
            finished.set_result(None)

    def done(task: asyncio.Task[bool]) -> None:
        i = running.pop(task)
        ok = not task.cancelled() and task.exception() is None and task.result()
        if task.cancelled():
            outcome[i] = Outcome.INTERRUPTED
        else:
            settle(i, bool(ok))
        launch()

    launch()
    try:
        await finished
    except asyncio.CancelledError:
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        raise
    for i in graph.order:
        if outcome[i] is None:
            failed_pred = any(
                outcome[p] in (Outcome.FAILED, Outcome.BLOCKED) for p in graph.preds[i]
            )
            outcome[i] = Outcome.BLOCKED if failed_pred else Outcome.INTERRUPTED
    return [o if o is not None else Outcome.INTERRUPTED for o in outcome]


async def bounded(work: Callable[[Any], Awaitable[None]], items: list[Any], limit: int) -> None:
    """Run ``work`` over ``items`` with at most ``limit`` at once, in a few worker tasks."""
    queue = iter(items)

    async def worker() -> None:
        for item in queue:
            await work(item)

    await asyncio.gather(*(worker() for _ in range(min(limit, len(items)))))
