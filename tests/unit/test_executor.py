import asyncio

from accord.engine.executor import Outcome, execute
from accord.engine.graph import Graph


def chain(n: int) -> Graph:
    return Graph.compile([(str(i), [str(i - 1)] if i else []) for i in range(n)])


async def test_steps_run_after_their_predecessors() -> None:
    graph = Graph.compile([("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"])])
    finished: list[str] = []

    async def step(i: int) -> bool:
        for p in graph.preds[i]:
            assert graph.ids[p] in finished, f"{graph.ids[i]} started before {graph.ids[p]}"
        await asyncio.sleep(0)
        finished.append(graph.ids[i])
        return True

    assert await execute(graph, step) == [Outcome.OK] * 4
    assert finished[0] == "a" and finished[-1] == "d"


async def test_a_step_starts_as_soon_as_its_last_predecessor_finishes() -> None:
    # "slow" holds up only its own dependent; "fast-child" must not wait for it.
    graph = Graph.compile(
        [("slow", []), ("fast", []), ("fast-child", ["fast"]), ("slow-child", ["slow"])]
    )
    release = asyncio.Event()
    order: list[str] = []

    async def step(i: int) -> bool:
        name = graph.ids[i]
        if name == "slow":
            await release.wait()
        order.append(name)
        if name == "fast-child":
            release.set()
        return True

    await execute(graph, step, concurrency=4)
    assert order.index("fast-child") < order.index("slow")


async def test_failure_blocks_only_dependents() -> None:
    graph = Graph.compile(
        [("bad", []), ("child", ["bad"]), ("grandchild", ["child"]), ("other", [])]
    )
    ran: list[str] = []

    async def step(i: int) -> bool:
        ran.append(graph.ids[i])
        if graph.ids[i] == "bad":
            raise RuntimeError("boom")
        return True

    outcomes = dict(zip(graph.ids, await execute(graph, step), strict=True))
    assert outcomes == {"bad": Outcome.FAILED, "child": Outcome.BLOCKED,
                        "grandchild": Outcome.BLOCKED, "other": Outcome.OK}  # fmt: skip
    assert sorted(ran) == ["bad", "other"]


async def test_concurrency_bound_is_respected() -> None:
    graph = Graph.compile([(str(i), []) for i in range(30)])
    running = peak = 0

    async def step(i: int) -> bool:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        return True

    await execute(graph, step, concurrency=3)
    assert peak == 3


async def test_stop_lets_running_steps_finish_and_starts_nothing_new() -> None:
    graph = chain(5)
    stop = asyncio.Event()
    ran: list[int] = []

    async def step(i: int) -> bool:
        ran.append(i)
        if i == 1:
            stop.set()
            await asyncio.sleep(0.01)
        return True

    outcomes = await execute(graph, step, stop=stop)
    assert ran == [0, 1]
    assert outcomes == [Outcome.OK, Outcome.OK] + [Outcome.INTERRUPTED] * 3


async def test_instant_steps_complete_without_running_the_step() -> None:
    graph = chain(100)
    ran: list[int] = []

    async def step(i: int) -> bool:
        ran.append(i)
        return True

    outcomes = await execute(graph, step, instant=lambda i: i % 10 != 0)
    assert outcomes == [Outcome.OK] * 100
    assert ran == list(range(0, 100, 10))


async def test_cancelling_execute_cancels_running_steps() -> None:
    graph = Graph.compile([("a", [])])
    started = asyncio.Event()
    cancelled = False

    async def step(i: int) -> bool:
        nonlocal cancelled
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled = True
            raise
        return True

    task = asyncio.create_task(execute(graph, step))
    await started.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert cancelled


async def test_empty_graph() -> None:
    async def step(i: int) -> bool:
        raise AssertionError("no steps")

    assert await execute(Graph.compile([]), step) == []
