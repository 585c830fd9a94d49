"""Transitions on a real SQLite store: compare-and-set, history without gaps, crash repair."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from accord import errors
from accord.lifecycle import events
from accord.lifecycle.definition import Facts, default_lifecycle
from accord.lifecycle.nodes import add_node, get_node, history, list_nodes, set_labels, transition
from accord.store import Store, open_store

LIFECYCLE = default_lifecycle()
OPERATOR = Facts(reason="scheduled work", roles=frozenset({"operator"}), converged=True)
CHILD = Path(__file__).with_name("lifecycle_child.py")


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    opened = await open_store(f"sqlite:///{tmp_path / 'accord.db'}")
    yield opened  # type: ignore[misc]
    await opened.close()


async def in_service(store: Store, node_id: str = "n1") -> None:
    await add_node(store, node_id, LIFECYCLE, labels={"site": "a"})
    for to in ("provisioning", "in_service"):
        await transition(store, LIFECYCLE, node_id, to, initiator="setup", facts=OPERATOR)


async def test_a_transition_is_recorded_with_who_when_and_why(store: Store) -> None:
    await in_service(store)
    record = await transition(store, LIFECYCLE, "n1", "maintenance", initiator="alice",
                              facts=OPERATOR, expected="in_service")  # fmt: skip
    node, revision = await get_node(store, "n1")
    assert node.state == "maintenance" and node.transitions == 3
    assert record.revision == revision and not record.forced
    entries = await history(store, "n1")
    assert [(e.seq, e.from_, e.to) for e in entries] == [
        (1, "discovered", "provisioning"), (2, "provisioning", "in_service"),
        (3, "in_service", "maintenance"),
    ]  # fmt: skip
    assert entries[-1].initiator == "alice" and entries[-1].reason == "scheduled work"
    dumped = entries[-1].model_dump(mode="json", by_alias=True)
    assert {"from", "to", "at", "initiator", "reason", "workflow", "revision"} <= set(dumped)
    announced = [e for _, e in await events.read(store)]
    assert [e.id for e in announced][-1] == "node.transition:n1:3"
    assert announced[-1].labels == {"site": "a"} and announced[-1].data["from"] == "in_service"


async def test_invalid_transitions_change_nothing(store: Store) -> None:
    await in_service(store)
    before = await get_node(store, "n1")
    with pytest.raises(errors.TransitionError, match="in_service → firmware_update is not allowed"):
        await transition(store, LIFECYCLE, "n1", "firmware_update", initiator="x", facts=OPERATOR)
    with pytest.raises(errors.TransitionError, match="a reason is required"):
        await transition(store, LIFECYCLE, "n1", "maintenance", initiator="x", facts=Facts())
    with pytest.raises(errors.TransitionError, match="unknown state 'broken'"):
        await transition(store, LIFECYCLE, "n1", "broken", initiator="x", facts=OPERATOR)
    with pytest.raises(errors.StaleStateError, match="is in_service, not maintenance"):
        await transition(store, LIFECYCLE, "n1", "in_service", initiator="x", facts=OPERATOR,
                         expected="maintenance")  # fmt: skip
    with pytest.raises(errors.InputError, match="unknown node 'zz'"):
        await transition(store, LIFECYCLE, "zz", "maintenance", initiator="x", facts=OPERATOR)
    assert await get_node(store, "n1") == before
    assert len(await history(store, "n1")) == 2


async def test_admins_may_force_and_it_is_recorded(store: Store) -> None:
    await in_service(store)
    with pytest.raises(errors.TransitionError, match="only an admin"):
        await transition(store, LIFECYCLE, "n1", "firmware_update", initiator="op",
                         facts=OPERATOR, force=True)  # fmt: skip
    admin = Facts(reason="vendor hotfix", roles=frozenset({"admin"}))
    record = await transition(store, LIFECYCLE, "n1", "firmware_update", initiator="root",
                              facts=admin, force=True)  # fmt: skip
    assert record.forced and (await history(store, "n1"))[-1].forced


async def test_fifty_concurrent_conflicting_requests(store: Store) -> None:
    """Each request expects in_service; exactly one can win, the rest are stale."""
    await in_service(store)
    targets = ["maintenance", "rma"] * 25

    async def attempt(i: int, to: str) -> str:
        try:
            await transition(store, LIFECYCLE, "n1", to, initiator=f"req{i}", facts=OPERATOR,
                             expected="in_service")  # fmt: skip
            return "won"
        except errors.StaleStateError:
            return "stale"

    outcomes = await asyncio.gather(*(attempt(i, to) for i, to in enumerate(targets)))
    assert outcomes.count("won") == 1 and outcomes.count("stale") == 49
    entries = await history(store, "n1")
    assert [e.seq for e in entries] == [1, 2, 3]


async def test_concurrent_requests_without_expected_state_are_judged_again(store: Store) -> None:
    """Unconditional requests retry a lost compare-and-set: only table-valid moves win."""
    await in_service(store)
    targets = ["maintenance", "rma", "in_service", "firmware_update"] * 12 + ["maintenance"] * 2

    async def attempt(to: str) -> str:
        try:
            record = await transition(store, LIFECYCLE, "n1", to, initiator="x", facts=OPERATOR)
            return f"{record.from_}->{record.to}"
        except errors.TransitionError:
            return "refused"

    outcomes = await asyncio.gather(*(attempt(to) for to in targets))
    won = [o for o in outcomes if o != "refused"]
    entries = await history(store, "n1")
    assert sorted(f"{e.from_}->{e.to}" for e in entries[2:]) == sorted(won)  # every win recorded
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))  # no gap, no duplicate
    for before, after in itertools.pairwise(entries):
        assert after.from_ == before.to  # each transition starts where the previous one ended
        assert (after.from_, after.to) in LIFECYCLE.edges()


def test_several_processes_race_without_gaps(tmp_path: Path) -> None:
    db = tmp_path / "accord.db"

    async def setup() -> None:
        s = await open_store(f"sqlite:///{db}")
        await in_service(s)
        await s.close()

    asyncio.run(setup())
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), str(db), "n1", target, "0"], stderr=subprocess.PIPE
        )
        for target in ["maintenance", "rma", "maintenance", "rma", "maintenance", "rma"]
    ]
    results = [(c.communicate(timeout=60), c.returncode)[1] for c in children]
    assert results.count(0) >= 1  # the rest lost to a state they no longer could leave

    async def check() -> None:
        s = await open_store(f"sqlite:///{db}")
        entries = await history(s, "n1")
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        node, _ = await get_node(s, "n1")
        assert node.state == entries[-1].to and node.transitions == len(entries)
        await s.close()

    asyncio.run(check())


@pytest.mark.parametrize("kill_after", [1, 2, 3])
def test_sigkill_after_any_write_never_loses_a_committed_transition(
    tmp_path: Path, kill_after: int
) -> None:
    """A transition writes 3 times; kill the real process right after each, then look."""
    db = tmp_path / "accord.db"

    async def setup() -> None:
        s = await open_store(f"sqlite:///{db}")
        await in_service(s)
        await s.close()

    asyncio.run(setup())
    child = subprocess.run([sys.executable, str(CHILD), str(db), "n1", "maintenance",
                            str(kill_after)], capture_output=True, timeout=60)  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()

    async def check() -> None:
        s = await open_store(f"sqlite:///{db}")
        node, _ = await get_node(s, "n1")
        entries = await history(s, "n1")
        assert node.state == "maintenance"  # the first write is the commit point
        assert [(e.seq, e.to) for e in entries][-1] == (3, "maintenance")
        assert [e.seq for e in entries] == [1, 2, 3]
        ids = [e.id for _, e in await events.read(s)]
        assert ids.count("node.transition:n1:3") >= 1  # announced at least once
        # and life goes on from there without a gap
        await transition(s, LIFECYCLE, "n1", "in_service", initiator="x", facts=OPERATOR)
        assert [e.seq for e in await history(s, "n1")] == [1, 2, 3, 4]
        await s.close()

    asyncio.run(check())


async def test_labels_and_listing(store: Store) -> None:
    await in_service(store, "n1")
    await add_node(store, "n2", LIFECYCLE)
    with pytest.raises(errors.InputError, match="already exists"):
        await add_node(store, "n2", LIFECYCLE)
    await set_labels(store, "n2", {"site": "b"})
    nodes = {n.id: n for n in await list_nodes(store)}
    assert nodes["n1"].state == "in_service" and nodes["n2"].state == "discovered"
    assert nodes["n2"].labels == {"site": "b"}
