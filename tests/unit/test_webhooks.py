"""Webhooks without a network: matching and signing as data cases, delivery over MockTransport.

The dispatcher runs against the in-memory store with a fake clock and a sleep that only records,
so backoffs cost no time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from accord import errors
from accord.lifecycle import events, webhooks
from accord.lifecycle.events import Event
from accord.lifecycle.webhooks import Dispatcher, Outcome, Subscription
from accord.store.memory import MemoryStore

SECRET = "0123456789abcdef-secret"
NOW = 1_700_000_000.0
URL = "http://receiver.test/hook"


def sub(**fields: Any) -> Subscription:
    return Subscription(**{"id": "s1", "url": URL, "secret": SECRET, **fields})


def transition(node: str, n: int, frm: str, to: str, **labels: str) -> Event:
    return Event(
        id=f"node.transition:{node}:{n}", type=events.TRANSITION, node=node, labels=labels,
        data={"from": frm, "to": to, "seq": n},
    )  # fmt: skip


# Matching


EVENTS = {
    "t-rma": transition("n1", 1, "in_service", "rma", site="a", rack="r1"),
    "t-maint": transition("n2", 1, "in_service", "maintenance", site="b"),
    "enrolled": Event(id="e", type="node.enrolled", node="n3", labels={"site": "a"}),
    "run": Event(id="r", type="run.finished", data={"to": "rma"}),
}
MATCH_CASES = [
    # (filters, event, expected)
    ({}, "t-rma", True),
    ({}, "run", True),
    ({"event_types": ("node.transition",)}, "t-rma", True),
    ({"event_types": ("node.transition",)}, "enrolled", False),
    ({"event_types": ("node.*",)}, "enrolled", True),
    ({"event_types": ("node.*",)}, "run", False),
    ({"event_types": ("NODE.*",)}, "enrolled", False),  # globs are case-sensitive
    ({"event_types": ("run.*", "node.enrolled")}, "enrolled", True),
    ({"states": ("rma",)}, "t-rma", True),  # entering rma
    ({"states": ("in_service",)}, "t-maint", True),  # leaving in_service
    ({"states": ("rma",)}, "t-maint", False),
    ({"states": ("rma",)}, "enrolled", False),  # no from/to: a state filter cannot match
    ({"states": ("rma",)}, "run", True),  # any event with data["to"] counts
    ({"selector": {"site": "a"}}, "t-rma", True),
    ({"selector": {"site": "a"}}, "t-maint", False),
    ({"selector": {"site": "a", "rack": "r1"}}, "t-rma", True),
    ({"selector": {"site": "a", "rack": "r2"}}, "t-rma", False),
    ({"selector": {"site": "a"}}, "run", False),  # no labels at all
    ({"event_types": ("node.*",), "states": ("rma",), "selector": {"site": "a"}}, "t-rma", True),
    ({"event_types": ("node.*",), "states": ("rma",), "selector": {"site": "b"}}, "t-rma", False),
]


@pytest.mark.parametrize(("filters", "event", "expected"), MATCH_CASES)
def test_matches(filters: dict[str, Any], event: str, expected: bool) -> None:
    assert webhooks.matches(sub(**filters), EVENTS[event]) is expected


# Signing


BODY = b'{"id":"e1"}'
PINNED = "sha256=5c2af32d825ed7378d59d36d2b5707e5e60156c46c23dc19c6b40ab0a0993281"


def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    assert webhooks.sign(SECRET, 1_700_000_000, BODY) == PINNED


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "header", "ok"),
    [
        (SECRET, "1700000000", BODY, PINNED, True),
        (SECRET, 1_700_000_000, BODY, PINNED, True),
        (SECRET, "1700000000", b'{"id":"e2"}', PINNED, False),  # tampered body
        ("another-secret-0123456", "1700000000", BODY, PINNED, False),  # wrong secret
        (SECRET, "1700000001", BODY, PINNED, False),  # timestamp changed: signature breaks
        (SECRET, "1700000000", BODY, PINNED.replace("sha256=", "sha1="), False),
        (SECRET, "1700000000", BODY, PINNED[:-1] + "0", False),
        (SECRET, "1700000000", BODY, "", False),
        (SECRET, "soon", BODY, PINNED, False),  # malformed timestamps
        (SECRET, "1_700_000_000", BODY, PINNED, False),
        (SECRET, " 1700000000", BODY, PINNED, False),
        (SECRET, "1700000000", BODY, "sha256=\u00e9" + PINNED[8:], False),  # non-ASCII header
        (SECRET, "1700000000", BODY, f"sha256=00ff, {PINNED}", True),  # rotation: any may match
    ],
)
def test_verify_signature(
    secret: str, timestamp: str | int, body: bytes, header: str, ok: bool
) -> None:
    assert webhooks.verify_signature(secret, timestamp, body, header, now=NOW + 10) is ok


@pytest.mark.parametrize(("age", "ok"), [(299, True), (301, False), (-299, True), (-301, False)])
def test_verify_signature_rejects_stale_and_future_timestamps(age: float, ok: bool) -> None:
    stamp = int(NOW - age)
    header = webhooks.sign(SECRET, stamp, BODY)
    assert webhooks.verify_signature(SECRET, str(stamp), BODY, header, now=NOW) is ok


# Subscriptions


@pytest.mark.parametrize(
    "fields",
    [
        {"id": "a.b"},  # not one key level
        {"id": ""},
        {"id": "x" * 65},
        {"url": "ftp://receiver.test/"},
        {"url": "http:///no-host"},
        {"url": "not a url"},
        {"secret": "short"},
        {"max_attempts": 0},
        {"timeout_s": 0},
        {"backoff_base_s": 10, "backoff_cap_s": 1},
        {"unknown": 1},
    ],
)
def test_invalid_subscriptions_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        sub(**fields)


def test_the_secret_is_never_shown() -> None:
    s = sub()
    assert SECRET not in repr(s) and SECRET not in str(s)
    shown = s.public()
    assert "secret" not in shown and SECRET not in json.dumps(shown)
    assert shown["fingerprint"] == s.fingerprint and s.fingerprint.startswith("sha256:")
    assert sub(secret=SECRET + "x").fingerprint != s.fingerprint


def test_backoff_is_full_jitter_under_the_cap_and_honours_retry_after() -> None:
    s = sub(backoff_base_s=1, backoff_cap_s=5)
    for retry, bound in [(0, 1), (1, 2), (2, 4), (3, 5), (10, 5)]:
        delays = [webhooks.backoff_delay(s, retry) for _ in range(200)]
        assert all(0 <= d <= bound for d in delays)
        assert max(delays) > bound / 2  # it does spread over the range
    assert webhooks.backoff_delay(s, 0, retry_after=3) == 3
    assert webhooks.backoff_delay(s, 0, retry_after=60) == 5


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 12 ", 12.0),
        ("Tue, 14 Nov 2023 22:13:40 GMT", 20.0),  # NOW is 22:13:20
        ("Tue, 14 Nov 2023 22:00:00 GMT", 0.0),  # in the past: now
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    assert webhooks.retry_after_seconds(header, now=NOW) == seconds


# Delivery

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class Harness:
    """A memory store, a fake clock, a recording sleep and a scripted MockTransport."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.now = NOW
        self.sleeps: list[float] = []
        self.requests: list[httpx.Request] = []
        self.replies: list[httpx.Response | Exception] = []
        self.stop = asyncio.Event()
        self.stop_on_sleep = False
        self.arrived = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.stop_on_sleep:
            self.stop.set()
            await asyncio.sleep(0)  # let the dispatcher see the stop first

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.arrived.set()
        reply = self.replies.pop(0) if self.replies else httpx.Response(200)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def dispatcher(self, handler: Handler | None = None, *, poll: float = 0.5) -> Dispatcher:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler or self.handle))
        return Dispatcher(
            self.store, client=client, clock=self.clock, sleep=self.sleep, poll_interval=poll
        )

    async def publish(self, *found: Event) -> list[int]:
        return [await events.publish(self.store, e) for e in found]

    async def wait_for_requests(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()

    def ids(self) -> list[str]:
        return [r.headers["X-Accord-Event-Id"] for r in self.requests]


@pytest.fixture
def h() -> Harness:
    return Harness()


def node_events(count: int, node: str = "n1") -> list[Event]:
    return [transition(node, n, "a", "b") for n in range(1, count + 1)]


async def test_delivers_in_stream_order_with_signed_headers(h: Harness) -> None:
    await webhooks.add(h.store, sub(start_after=0))
    published = node_events(3)
    seqs = await h.publish(*published)
    assert await h.dispatcher().deliver_once("s1") == 3
    assert h.ids() == [e.id for e in published]
    first = h.requests[0]
    assert first.method == "POST" and str(first.url) == URL
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["X-Accord-Event-Type"] == "node.transition"
    assert first.headers["X-Accord-Timestamp"] == str(int(NOW))
    assert len({r.headers["X-Accord-Delivery"] for r in h.requests}) == 3
    assert Event.model_validate_json(first.content) == published[0]
    assert webhooks.verify_signature(
        SECRET, first.headers["X-Accord-Timestamp"], first.content,
        first.headers["X-Accord-Signature"], now=NOW,
    )  # fmt: skip
    cursor = await webhooks.cursor(h.store, "s1")
    assert cursor.seq == seqs[-1] and cursor.pending_seq is None
    assert await h.dispatcher().deliver_once("s1") == 0  # nothing pending: no request
    assert len(h.requests) == 3


async def test_server_errors_are_retried_with_backoff_then_delivered(h: Harness) -> None:
    await webhooks.add(h.store, sub(start_after=0, backoff_base_s=2, backoff_cap_s=100))
    await h.publish(*node_events(2))
    h.replies = [httpx.Response(500, text="boom"), httpx.Response(502), httpx.Response(204)]
    dispatcher = h.dispatcher()
    assert await dispatcher.deliver_once("s1") == 2
    assert h.ids() == ["node.transition:n1:1"] * 3 + ["node.transition:n1:2"]
    assert len(h.sleeps) == 2 and 0 <= h.sleeps[0] <= 2 and 0 <= h.sleeps[1] <= 4
    log = await webhooks.deliveries(h.store, "s1")
    assert [(a.attempt, a.status_code, a.outcome) for a in log] == [
        (1, 500, Outcome.RETRYING), (2, 502, Outcome.RETRYING), (3, 204, Outcome.DELIVERED),
        (1, 200, Outcome.DELIVERED),
    ]  # fmt: skip
    assert log[0].error == "HTTP 500 Internal Server Error: boom"
    assert [a.delivery for a in log] == [r.headers["X-Accord-Delivery"] for r in h.requests]
    assert (dispatcher.stats.attempts, dispatcher.stats.delivered, dispatcher.stats.dead) == (
        4, 2, 0,
    )  # fmt: skip


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(h: Harness, status: int) -> None:
    await webhooks.add(h.store, sub(start_after=0))
    await h.publish(*node_events(1))
    h.replies = [httpx.Response(status, headers={"Retry-After": "7"})]
    assert await h.dispatcher().deliver_once("s1") == 1
    assert h.sleeps == [7.0] and len(h.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
async def test_client_errors_are_dead_lettered_at_once(h: Harness, status: int) -> None:
    await webhooks.add(h.store, sub(start_after=0))
    published = node_events(2)
    seqs = await h.publish(*published)
    h.replies = [httpx.Response(status)]
    dispatcher = h.dispatcher()
    assert await dispatcher.deliver_once("s1") == 2
    assert h.ids() == [published[0].id, published[1].id] and h.sleeps == []
    [letter] = await webhooks.dead_letters(h.store, "s1")
    assert (letter.event_id, letter.event_seq, letter.attempts) == (published[0].id, seqs[0], 1)
    assert letter.status_code == status and letter.event == published[0]
    assert [a.outcome for a in await webhooks.deliveries(h.store, "s1")] == [
        Outcome.DEAD, Outcome.DELIVERED,
    ]  # fmt: skip
    assert dispatcher.stats.dead == 1


@pytest.mark.parametrize("status", [408, 429, 500, 503, 301])
async def test_retryable_statuses_are_dead_lettered_after_max_attempts(
    h: Harness, status: int
) -> None:
    await webhooks.add(h.store, sub(start_after=0, max_attempts=3))
    await h.publish(*node_events(2))
    h.replies = [httpx.Response(status) for _ in range(3)]
    assert await h.dispatcher().deliver_once("s1") == 2
    assert h.ids().count("node.transition:n1:1") == 3 and len(h.sleeps) == 2
    [letter] = await webhooks.dead_letters(h.store, "s1")
    assert letter.attempts == 3 and letter.status_code == status
    outcomes = [a.outcome for a in await webhooks.deliveries(h.store, "s1")]
    assert outcomes == [Outcome.RETRYING, Outcome.RETRYING, Outcome.DEAD, Outcome.DELIVERED]


async def test_connection_errors_and_timeouts_are_retried(h: Harness) -> None:
    await webhooks.add(h.store, sub(start_after=0, timeout_s=0.05))
    await h.publish(*node_events(1))
    slow = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if len(h.requests) == 2 and not slow.is_set():
            slow.set()
            await asyncio.sleep(5)  # outlasts timeout_s: the dispatcher gives up on it
        return await h.handle(request)

    h.replies = [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")]
    assert await h.dispatcher(handler).deliver_once("s1") == 1
    errors_seen = [a.error for a in await webhooks.deliveries(h.store, "s1")]
    assert errors_seen == [
        "ConnectError: refused", "timed out after 0.05 s", "timed out after 0.05 s", None,
    ]  # fmt: skip


async def test_unsupported_protocol_is_permanent(h: Harness) -> None:
    await webhooks.add(h.store, sub(start_after=0))
    await h.publish(*node_events(1))
    h.replies = [httpx.UnsupportedProtocol("nope")]
    assert await h.dispatcher().deliver_once("s1") == 1
    assert [letter.attempts for letter in await webhooks.dead_letters(h.store, "s1")] == [1]


async def test_non_matching_events_move_the_cursor_without_requests(h: Harness) -> None:
    await webhooks.add(h.store, sub(start_after=0, states=("rma",)))
    seqs = await h.publish(
        transition("n1", 1, "a", "b"),
        transition("n1", 2, "b", "rma"),
        transition("n1", 3, "x", "y"),
    )
    assert await h.dispatcher().deliver_once("s1") == 1
    assert h.ids() == ["node.transition:n1:2"]
    assert (await webhooks.cursor(h.store, "s1")).seq == seqs[-1]


async def test_a_new_subscription_starts_at_the_end_of_the_outbox(h: Harness) -> None:
    await h.publish(*node_events(2))
    added = await webhooks.add(h.store, sub())
    assert added.start_after == await webhooks.stream_end(h.store)
    later = transition("n1", 3, "a", "b")
    await h.publish(later)
    await webhooks.add(h.store, sub(id="replay", start_after=0))
    dispatcher = h.dispatcher()
    assert await dispatcher.deliver_once("s1") == 1
    assert h.ids() == [later.id]
    assert await dispatcher.deliver_once("replay") == 3


async def test_add_remove_and_unknown_ids(h: Harness) -> None:
    await webhooks.add(h.store, sub())
    with pytest.raises(errors.InputError, match="exists"):
        await webhooks.add(h.store, sub())
    assert [s.id for s in await webhooks.subscriptions(h.store)] == ["s1"]
    await webhooks.remove(h.store, "s1")
    assert await webhooks.subscriptions(h.store) == []
    with pytest.raises(errors.InputError, match="no webhook subscription"):
        await webhooks.remove(h.store, "s1")
    with pytest.raises(errors.InputError, match="no webhook subscription"):
        await h.dispatcher().deliver_once("s1")


async def test_a_restart_resumes_the_attempt_count_and_the_backoff(h: Harness) -> None:
    await webhooks.add(h.store, sub(start_after=0, max_attempts=3, backoff_base_s=10))
    seqs = await h.publish(*node_events(2))
    h.replies = [httpx.Response(500), httpx.Response(500), httpx.Response(500)]
    h.stop_on_sleep = True  # the process "stops" during the first backoff
    assert await h.dispatcher().deliver_once("s1", stop=h.stop) == 0
    cursor = await webhooks.cursor(h.store, "s1")
    assert (cursor.seq, cursor.pending_seq, cursor.attempts) == (0, seqs[0], 1)
    assert cursor.not_before == NOW + h.sleeps[0]

    h.stop_on_sleep, h.now = False, NOW  # restarted before the backoff was over
    h.sleeps.clear()
    assert await h.dispatcher().deliver_once("s1") == 2
    assert h.sleeps[0] == pytest.approx(cursor.not_before - NOW)  # waits out the rest
    log = await webhooks.deliveries(h.store, "s1")
    assert [(a.attempt, a.outcome) for a in log] == [
        (1, Outcome.RETRYING), (2, Outcome.RETRYING), (3, Outcome.DEAD), (1, Outcome.DELIVERED),
    ]  # fmt: skip


async def test_a_cursor_moved_by_someone_else_makes_the_dispatcher_stand_down(h: Harness) -> None:
    added = await webhooks.add(h.store, sub(start_after=0))
    await h.publish(*node_events(3))
    other = webhooks.Cursor(subscription_uid=added.uid, seq=3)

    async def handler(request: httpx.Request) -> httpx.Response:
        if not h.requests:  # another dispatcher gets there first
            await h.store.put(webhooks.cursor_key("s1"), other.model_dump_json().encode())
        return await h.handle(request)

    assert await h.dispatcher(handler).deliver_once("s1") == 0
    assert len(h.requests) == 1  # stood down after losing the compare-and-set
    assert await webhooks.cursor(h.store, "s1") == other


async def test_a_cursor_left_by_a_removed_subscription_is_ignored(h: Harness) -> None:
    first = await webhooks.add(h.store, sub(start_after=0))
    await h.publish(*node_events(2))
    await h.dispatcher().deliver_once("s1")
    stale = await h.store.get(webhooks.cursor_key("s1"))
    await h.store.delete(webhooks.subscription_key("s1"))  # a crash before the cursor went
    assert stale is not None and await h.store.get(webhooks.cursor_key("s1")) == stale
    again = await webhooks.add(h.store, sub(start_after=0))
    assert again.uid != first.uid
    h.requests.clear()
    assert await h.dispatcher().deliver_once("s1") == 2  # from its own start, not the old cursor


async def test_deliveries_filter_by_subscription_and_keep_the_last(h: Harness) -> None:
    await webhooks.add(h.store, sub(start_after=0))
    await webhooks.add(h.store, sub(id="s2", start_after=0))
    await h.publish(*node_events(5))
    dispatcher = h.dispatcher()
    await dispatcher.deliver_once("s1")
    await dispatcher.deliver_once("s2")
    last = await webhooks.deliveries(h.store, "s2", limit=2)
    assert [(a.subscription, a.event_id) for a in last] == [
        ("s2", "node.transition:n1:4"), ("s2", "node.transition:n1:5"),
    ]  # fmt: skip
    assert len(await webhooks.deliveries(h.store, "s1")) == 5
    assert await webhooks.deliveries(h.store, "nobody") == []


async def test_run_follows_subscriptions_and_new_events(h: Harness) -> None:
    dispatcher = h.dispatcher(poll=0.01)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    await webhooks.add(h.store, sub())  # added while running
    await webhooks.add(h.store, sub(id="s2", url="http://other.test/", event_types=("none",)))
    published = node_events(4)
    await h.publish(*published)
    await h.wait_for_requests(4)
    assert h.ids() == [e.id for e in published]  # s2 matches nothing
    await webhooks.remove(h.store, "s1")
    await h.publish(transition("n1", 5, "a", "b"))
    await asyncio.sleep(0.1)
    assert len(h.requests) == 4  # removed: nothing more
    stop.set()
    await asyncio.wait_for(running, 5)
    assert dispatcher.stats.delivered == 4


async def test_run_raises_what_breaks_it(h: Harness) -> None:
    await webhooks.add(h.store, sub(start_after=0))
    await h.publish(*node_events(1))
    dispatcher = h.dispatcher()

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise errors.StoreError("disk on fire")

    h.store.append = broken  # type: ignore[method-assign]
    with pytest.raises(errors.StoreError, match="disk on fire"):
        await asyncio.wait_for(dispatcher.run(asyncio.Event()), 5)
