"""Webhooks end to end: a real SQLite store, the real dispatcher, a real HTTP receiver.

The receiver (``receiver.py``) fails, times out, throttles and recovers on a script; the
assertions are the delivery contract: every event arrives (dedupe by id), in order per node,
signed; dead letters after N attempts let the subscription move on; a killed dispatcher
resumes from its cursor with duplicates at most, never a gap.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from receiver import Received, Receiver, Reply
from typer.testing import CliRunner

from accord.cli.webhook import app
from accord.lifecycle import events, webhooks
from accord.lifecycle.events import Event
from accord.lifecycle.webhooks import Dispatcher, Outcome, Subscription
from accord.store import Store, open_store

SECRET = "integration-secret-0123456789"
NODES = ("n1", "n2", "n3")
STATES = ("in_service", "maintenance", "firmware_update", "rma")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver({"/hook": SECRET, "/a": SECRET, "/b": SECRET, "/c": SECRET}) as running:
        yield running


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'accord.db'}"


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = await open_store(db_url)
    yield opened
    await opened.close()


def subscription(receiver: Receiver, path: str = "/hook", **fields: Any) -> Subscription:
    """Fast retries (10 ms base) and a short timeout, so that failures cost little time."""
    defaults: dict[str, Any] = {
        "id": path.strip("/") or "hook", "url": receiver.url(path), "secret": SECRET,
        "timeout_s": 0.3, "backoff_base_s": 0.01, "backoff_cap_s": 0.05,
    }  # fmt: skip
    return Subscription(**{**defaults, **fields})


def transitions(count_per_node: int) -> list[Event]:
    """``count_per_node`` transitions for each node, interleaved across nodes."""
    found = []
    for n in range(1, count_per_node + 1):
        for i, node in enumerate(NODES):
            found.append(
                Event(
                    id=f"node.transition:{node}:{n}", type=events.TRANSITION, node=node,
                    labels={"site": "a" if i < 2 else "b", "node": node},
                    data={"from": STATES[(n - 1) % 4], "to": STATES[n % 4], "seq": n},
                )
            )  # fmt: skip
    return found


async def publish(store: Store, found: list[Event]) -> list[int]:
    return [await events.publish(store, event) for event in found]


def first_acceptances(accepted: list[Received]) -> list[Event]:
    """The accepted events in arrival order, each id once (what an idempotent receiver keeps)."""
    seen: dict[str, Event] = {}
    for request in accepted:
        seen.setdefault(request.event_id, Event.model_validate_json(request.body))
    return list(seen.values())


def assert_in_order_per_node(delivered: list[Event]) -> None:
    for node in NODES:
        seqs = [e.data["seq"] for e in delivered if e.node == node]
        assert seqs == sorted(seqs), f"{node} out of order: {seqs}"


async def test_every_event_arrives_in_order_through_failures_timeouts_and_throttling(
    store: Store, receiver: Receiver
) -> None:
    await webhooks.add(store, subscription(receiver, max_attempts=8))
    published = transitions(10)  # 30 events, 3 nodes
    # Fail, time out, throttle, recover; then fail again in the middle of the stream.
    receiver.fail(3, status=500)
    receiver.script.extend([Reply(delay=0.5), Reply(429, retry_after="0"), Reply(503)])
    receiver.by_event[published[14].id] = deque([Reply(502), Reply(delay=0.5), Reply(500)])
    stop = asyncio.Event()
    async with Dispatcher(store, poll_interval=0.02) as dispatcher:
        running = asyncio.create_task(dispatcher.run(stop))
        seqs = await publish(store, published[:12])  # some before, some while it runs
        await receiver.wait_until(lambda: len(receiver.accepted()) >= 3)
        seqs += await publish(store, published[12:])
        wanted = {e.id for e in published}
        await receiver.wait_until(lambda: {r.event_id for r in receiver.accepted()} >= wanted)
        stop.set()
        await asyncio.wait_for(running, 5)

    assert all(r.signature_ok for r in receiver.requests)
    delivered = first_acceptances(receiver.accepted())
    assert sorted(e.id for e in delivered) == sorted(wanted)
    assert delivered == published  # one subscription, strictly sequential: stream order
    assert_in_order_per_node(delivered)
    assert (await webhooks.cursor(store, "hook")).seq == seqs[-1]
    assert await webhooks.dead_letters(store, "hook") == []

    log = await webhooks.deliveries(store, "hook", limit=1000)
    assert len(log) == len(receiver.requests)  # every attempt is logged
    first = [(a.attempt, a.status_code, a.outcome) for a in log if a.event_id == published[0].id]
    assert first == [
        (1, 500, Outcome.RETRYING), (2, 500, Outcome.RETRYING), (3, 500, Outcome.RETRYING),
        (4, None, Outcome.RETRYING), (5, 429, Outcome.RETRYING), (6, 503, Outcome.RETRYING),
        (7, 200, Outcome.DELIVERED),
    ]  # fmt: skip
    assert log[3].error == "timed out after 0.3 s"
    middle = [(a.status_code, a.outcome) for a in log if a.event_id == published[14].id]
    assert middle == [
        (502, Outcome.RETRYING), (None, Outcome.RETRYING), (500, Outcome.RETRYING),
        (200, Outcome.DELIVERED),
    ]  # fmt: skip
    assert dispatcher.stats.delivered == 30 and dispatcher.stats.dead == 0


async def test_dead_letters_after_a_permanent_error_and_after_exhausted_retries(
    store: Store, receiver: Receiver
) -> None:
    await webhooks.add(store, subscription(receiver, max_attempts=3, start_after=0))
    published = transitions(3)
    seqs = await publish(store, published)
    gone, broken = published[2], published[5]
    receiver.by_event[gone.id] = deque([Reply(410)])
    receiver.by_event[broken.id] = deque(Reply(500) for _ in range(10))
    async with Dispatcher(store) as dispatcher:
        assert await dispatcher.deliver_once("hook") == len(published)

    assert receiver.seen(gone.id) == 1 and receiver.seen(broken.id) == 3
    letters = await webhooks.dead_letters(store, "hook")
    assert [(d.event_id, d.attempts, d.status_code) for d in letters] == [
        (gone.id, 1, 410), (broken.id, 3, 500),
    ]  # fmt: skip
    assert letters[1].last_error == "HTTP 500 Internal Server Error"
    assert letters[0].event == gone
    # The subscription moved on: everything else arrived, and the cursor is at the end.
    accepted = [e.id for e in first_acceptances(receiver.accepted())]
    assert accepted == [e.id for e in published if e not in (gone, broken)]
    assert (await webhooks.cursor(store, "hook")).seq == seqs[-1]
    outcomes = [
        a.outcome for a in await webhooks.deliveries(store, "hook") if a.event_id == broken.id
    ]
    assert outcomes == [Outcome.RETRYING, Outcome.RETRYING, Outcome.DEAD]


async def test_filters_deliver_only_matching_events(store: Store, receiver: Receiver) -> None:
    for sub in (
        subscription(receiver, "/a", event_types=("node.enrolled",), start_after=0),
        subscription(receiver, "/b", states=("rma",), start_after=0),
        subscription(receiver, "/c", event_types=("node.*",), selector={"site": "b"},
                     start_after=0),
    ):  # fmt: skip
        await webhooks.add(store, sub)
    published = [
        *transitions(4),
        Event(id="enrolled:n4", type="node.enrolled", node="n4", labels={"site": "b"}),
        Event(id="enrolled:n5", type="node.enrolled", node="n5", labels={"site": "a"}),
        Event(id="run:1", type="run.finished", labels={"site": "b"}),
    ]
    await publish(store, published)
    async with Dispatcher(store) as dispatcher:
        for sub_id in ("a", "b", "c"):
            await dispatcher.deliver_once(sub_id)

    def ids(path: str) -> list[str]:
        return [r.event_id for r in receiver.accepted(path)]

    assert ids("/a") == ["enrolled:n4", "enrolled:n5"]
    # seq n goes STATES[n-1] -> STATES[n]: n=3 enters rma, n=4 leaves it.
    assert ids("/b") == [f"node.transition:{node}:{n}" for n in (3, 4) for node in NODES]
    assert ids("/c") == [f"node.transition:n3:{n}" for n in range(1, 5)] + ["enrolled:n4"]
    assert len(receiver.requests) == 2 + 6 + 5  # nothing else was sent


async def test_a_killed_dispatcher_resumes_from_its_cursor_without_gaps(
    db_url: str, receiver: Receiver
) -> None:
    store = await open_store(db_url)
    await webhooks.add(store, subscription(receiver, start_after=0, timeout_s=5))
    published = transitions(5)
    seqs = await publish(store, published)
    release = threading.Event()
    in_flight = published[6]
    receiver.by_event[in_flight.id] = deque([Reply(hold=release)])
    stop = asyncio.Event()
    dispatcher = Dispatcher(store, poll_interval=0.02)
    running = asyncio.create_task(dispatcher.run(stop))
    await receiver.wait_until(lambda: receiver.seen(in_flight.id) == 1)
    assert (await webhooks.cursor(store, "hook")).seq == seqs[5]  # 6 delivered, 7th in flight
    running.cancel()  # killed mid-request: no chance to record anything
    with pytest.raises(asyncio.CancelledError):
        await running
    release.set()  # the receiver does answer 200, to nobody: it has processed the 7th event
    await dispatcher.aclose()
    await store.close()

    restarted = await open_store(db_url)  # a new process, the same database
    try:
        assert (await webhooks.cursor(restarted, "hook")).seq == seqs[5]
        async with Dispatcher(restarted) as again:
            assert await again.deliver_once("hook") == len(published) - 6
        assert (await webhooks.cursor(restarted, "hook")).seq == seqs[-1]
    finally:
        await restarted.close()

    assert receiver.seen(in_flight.id) == 2  # at least once: a duplicate, never a gap
    ids = [r.event_id for r in receiver.requests]
    assert ids == [e.id for e in published[:7]] + [e.id for e in published[6:]]
    assert first_acceptances(receiver.accepted()) == published


async def test_a_stop_finishes_the_request_in_flight_and_cuts_backoff_short(
    store: Store, receiver: Receiver
) -> None:
    slow = subscription(receiver, start_after=0, backoff_base_s=60, backoff_cap_s=60)
    await webhooks.add(store, slow)
    published = transitions(1)
    seqs = await publish(store, published)
    receiver.script.append(Reply(503, retry_after="60"))  # a backoff of a full minute
    stop = asyncio.Event()
    async with Dispatcher(store, poll_interval=0.02) as dispatcher:
        running = asyncio.create_task(dispatcher.run(stop))
        await receiver.wait_until(lambda: len(receiver.requests) == 1)
        await asyncio.sleep(0.05)  # now in the backoff
        stop.set()
        await asyncio.wait_for(running, 2)
    cursor = await webhooks.cursor(store, "hook")
    assert (cursor.seq, cursor.pending_seq, cursor.attempts) == (0, seqs[0], 1)


@pytest.mark.parametrize("yields", range(6))
async def test_a_stop_during_store_writes_still_stops(
    store: Store, receiver: Receiver, yields: int
) -> None:
    """A write wakes the store's watches; a cancellation landing just then used to be lost
    (Python 3.11's ``wait_for`` in ``SqliteStore.watch``) and ``run`` hung on its follower."""
    await webhooks.add(store, subscription(receiver))
    for _ in range(3):
        stop = asyncio.Event()
        async with Dispatcher(store, poll_interval=0.01) as dispatcher:
            running = asyncio.create_task(dispatcher.run(stop))
            await asyncio.sleep(0.02)
            stop.set()
            for _ in range(yields):
                await asyncio.sleep(0)
            await store.put("unrelated.key", b"v")
            await asyncio.wait_for(running, 2)


# The CLI (its Typer app; registration in ``accord`` is the root app's business)

runner = CliRunner()


def accord_webhook(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_add_list_deliver_deliveries_remove(
    tmp_path: Path, db_url: str, receiver: Receiver
) -> None:
    where = ["--state-dir", str(tmp_path / "state"), "--store", db_url]
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    code, out, err = accord_webhook(
        "add", "ops", receiver.url("/hook"), "--secret-file", secret_file, "--event", "node.*",
        "--state", "rma", "--label", "site=a", "--max-attempts", "2", "--from-start", *where,
    )  # fmt: skip
    assert code == 0, err
    assert "added webhook ops" in out and SECRET not in out

    code, out, _ = accord_webhook(
        "add", "gen", receiver.url("/a"), "--event", "never.*", "--json", *where
    )
    assert code == 0
    generated = json.loads(out)["secret"]
    assert len(generated) >= 32

    code, out, _ = accord_webhook("list", "--json", *where)
    listed = {s["id"]: s for s in json.loads(out)}
    assert code == 0 and set(listed) == {"gen", "ops"}
    assert SECRET not in out and generated not in out  # secrets stay in the store
    ops = listed["ops"]
    assert ops["fingerprint"].startswith("sha256:") and "secret" not in ops
    assert ops["event_types"] == ["node.*"] and ops["states"] == ["rma"]
    assert ops["selector"] == {"site": "a"} and ops["max_attempts"] == 2
    assert ops["cursor"]["seq"] == 0
    code, out, _ = accord_webhook("list", *where)
    assert code == 0 and "ops" in out and SECRET not in out

    published = transitions(4)  # n1 and n2 are site a; n=3 enters rma, n=4 leaves it
    asyncio.run(_publish_to(db_url, published))
    receiver.by_event["node.transition:n2:4"] = deque([Reply(500), Reply(500)])
    code, out, _ = accord_webhook("deliver", "--once", "--json", *where)
    summary = json.loads(out)
    assert code == 1  # one event was dead-lettered
    assert summary["handled"] == {"gen": 0, "ops": 4}
    assert (summary["delivered"], summary["dead"], summary["attempts"]) == (3, 1, 5)
    assert [r.event_id for r in receiver.accepted("/hook")] == [
        "node.transition:n1:3", "node.transition:n2:3", "node.transition:n1:4",
    ]  # fmt: skip

    code, out, _ = accord_webhook("deliveries", "ops", "--json", *where)
    attempts = json.loads(out)
    assert code == 0 and [a["outcome"] for a in attempts] == [
        "delivered", "delivered", "delivered", "retrying", "dead",
    ]  # fmt: skip
    code, out, _ = accord_webhook("deliveries", "ops", "--dead", "--json", *where)
    assert code == 0 and [d["event_id"] for d in json.loads(out)] == ["node.transition:n2:4"]
    code, out, _ = accord_webhook("deliveries", "ops", *where)
    assert code == 0 and "node.transition:n2:4" in out

    code, out, _ = accord_webhook("deliver", "--once", *where)
    assert code == 0 and "0 events handled" in out  # nothing left

    code, _, err = accord_webhook("add", "ops", receiver.url("/hook"), "--secret", SECRET, *where)
    assert code == 2 and "exists" in err
    code, _, err = accord_webhook("remove", "ops", *where)
    assert code == 0
    code, _, err = accord_webhook("remove", "ops", *where)
    assert code == 2 and "no webhook subscription 'ops'" in err
    code, out, _ = accord_webhook("list", "--json", *where)
    assert [s["id"] for s in json.loads(out)] == ["gen"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label", "site"], "KEY=VALUE"),
        (["--secret", "short"], "at least 16 characters"),
        (["--secret", SECRET, "--secret-file", "x"], "not both"),
    ],
)
def test_cli_add_refuses_bad_input(
    tmp_path: Path, db_url: str, args: list[str], message: str
) -> None:
    where = ["--state-dir", str(tmp_path / "state"), "--store", db_url]
    code, out, err = accord_webhook("add", "x", "http://127.0.0.1:9/", *args, *where)
    assert code == 2 and message in out + err


def test_cli_refuses_a_non_http_url(tmp_path: Path, db_url: str) -> None:
    where = ["--state-dir", str(tmp_path / "state"), "--store", db_url]
    code, _, err = accord_webhook("add", "x", "file:///etc/passwd", "--secret", SECRET, *where)
    assert code == 2 and "url: Value error, use an http:// or https:// URL" in err


async def _publish_to(db_url: str, found: list[Event]) -> None:
    store = await open_store(db_url)
    try:
        await publish(store, found)
    finally:
        await store.close()
