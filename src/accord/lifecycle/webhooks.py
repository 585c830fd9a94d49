"""Webhooks: lifecycle events POSTed to subscribers, from the ``events`` outbox.

Delivery contract
    * **Source.** The ``events`` stream (:mod:`accord.lifecycle.events`) is the outbox. Each
      subscription has a cursor, the sequence number of the last event it has handled, at KV
      ``webhooks.cursor.<id>``; it is written only with compare-and-set. A new subscription
      starts at the end of the stream as it was when it was added (``start_after``).
    * **At least once.** The cursor moves past an event only after the receiver answered 2xx
      or the event was dead-lettered, so a crash, a ``kill -9`` or a cancelled task at any
      point re-sends from the cursor: a receiver may see an event again, never miss one.
      Receivers must deduplicate by ``X-Accord-Event-Id`` (the event id, stable for the fact).
    * **Order.** One subscription's events are sent strictly one after another in stream order:
      the next request starts only when the previous event is delivered or dead-lettered. Events
      about one node are appended in the order they happen, so each node's events arrive in
      order (a re-announced event after a crash repair is the exception: dedupe by id).
      A failing event therefore holds back the ones behind it until it is delivered or dead.
    * **Request.** ``POST <url>`` with the event as JSON (``Event.model_dump_json()``) and::

          Content-Type: application/json
          X-Accord-Event-Id: <event id>               the idempotency key
          X-Accord-Event-Type: <event type>
          X-Accord-Timestamp: <unix seconds of this attempt>
          X-Accord-Delivery: <random id of this attempt>
          X-Accord-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>

      Signing the timestamp with the body lets a receiver reject replays: check the signature
      and that the timestamp is recent, with :func:`verify_signature`.
    * **Retries.** Timeouts, connection errors, 408, 429, 5xx (and 3xx: redirects are not
      followed) are retried after an exponential backoff with full jitter,
      ``U(0, min(cap, base·2ⁿ))`` (``Retry-After`` wins when sent, capped at ``cap``), until
      ``max_attempts``. The attempt count and the earliest next attempt are kept in the
      cursor, so a restart neither resets the count nor skips the wait.
    * **Dead letters.** Any other 4xx is permanent: the event is dead-lettered at once, as it is
      after ``max_attempts``. A dead letter goes to the ``webhook-dead`` stream (with the
      event, the attempts and the last error) and the subscription moves on.
    * **Delivery log.** Every attempt is appended to the ``webhook-log`` stream
      (:class:`Attempt`), read back by :func:`deliveries`.

One dispatcher per store is the intended deployment. Two would send some events twice (the
compare-and-set makes the loser stand down), but never lose one.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import fnmatch
import hashlib
import hmac
import random
import re
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from accord import errors
from accord.lifecycle import events
from accord.model.status import utcnow
from accord.providers.httputil import retry_after_seconds
from accord.store.base import Op, Store

SUBS_PREFIX = "webhooks.subs."
CURSOR_PREFIX = "webhooks.cursor."
LOG_STREAM = "webhook-log"
DEAD_STREAM = "webhook-dead"
SIGNATURE_SCHEME = "sha256"
ID_PATTERN = r"^[A-Za-z0-9][-_A-Za-z0-9]{0,63}$"
MIN_SECRET_LENGTH = 16
_BATCH = 100
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_ERROR_BODY_BYTES = 200


class Subscription(BaseModel):
    """Who gets which events. Empty filters match everything; the filters are ANDed.

    Attributes:
        event_types: event types or ``fnmatch`` globs (``node.*``); any may match.
        states: lifecycle states; an event matches if its ``data["from"]`` or ``data["to"]``
            is one of them (so only transition-like events match a state filter).
        selector: labels that must all be present on the event with these values.
        start_after: the events-stream sequence number after which delivery starts;
            :func:`add` sets it to the end of the stream when it is ``None``.
        uid: tells this subscription from an earlier one with the same id (for the cursor).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=ID_PATTERN)
    url: str
    secret: str = Field(min_length=MIN_SECRET_LENGTH, repr=False)
    event_types: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    selector: dict[str, str] = Field(default_factory=dict)
    max_attempts: int = Field(default=8, ge=1, le=100)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_cap_s: float = Field(default=300.0, gt=0)
    start_after: int | None = Field(default=None, ge=0)
    uid: str = Field(default_factory=lambda: uuid.uuid4().hex)
    created_at: datetime = Field(default_factory=utcnow)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"invalid URL: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("use an http:// or https:// URL with a host")
        return value

    @model_validator(mode="after")
    def _cap_above_base(self) -> Self:
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap_s must be at least backoff_base_s")
        return self

    @property
    def fingerprint(self) -> str:
        """Names the secret without showing it: the first 12 hex digits of its sha256."""
        return "sha256:" + hashlib.sha256(self.secret.encode()).hexdigest()[:12]

    def public(self) -> dict[str, Any]:
        """A JSON-ready view for people: everything but the secret, plus its fingerprint."""
        return {**self.model_dump(mode="json", exclude={"secret"}), "fingerprint": self.fingerprint}


class Cursor(BaseModel):
    """How far one subscription got. One KV entry, written with compare-and-set.

    ``seq`` is the last handled event; ``pending_seq``, ``attempts`` and ``not_before`` describe
    the event being retried, if any (``not_before`` in unix seconds).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    subscription_uid: str
    seq: int = Field(ge=0)
    pending_seq: int | None = None
    attempts: int = Field(default=0, ge=0)
    not_before: float | None = None

    def describe(self) -> str:
        """``12``, or ``12; retrying 13 after 2 attempts`` when an event is being retried."""
        if self.pending_seq is None:
            return str(self.seq)
        return f"{self.seq}; retrying {self.pending_seq} after {self.attempts} attempts"


class Outcome(enum.StrEnum):
    """What one attempt led to."""

    DELIVERED = "delivered"  # 2xx: the cursor moved on
    RETRYING = "retrying"  # failed; another attempt follows after a backoff
    DEAD = "dead"  # permanent failure or attempts exhausted: dead-lettered, the cursor moved on


class Attempt(BaseModel):
    """One record of the delivery log (stream ``webhook-log``)."""

    model_config = ConfigDict(frozen=True)

    subscription: str
    event_id: str
    event_seq: int
    event_type: str
    delivery: str
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: float
    at: datetime
    outcome: Outcome


class DeadLetter(BaseModel):
    """An event given up on (stream ``webhook-dead``), with what is needed to send it again."""

    model_config = ConfigDict(frozen=True)

    subscription: str
    event_id: str
    event_seq: int
    attempts: int
    status_code: int | None
    last_error: str
    at: datetime
    event: events.Event


@dataclass
class Stats:
    """Counters of one dispatcher, for summaries."""

    attempts: int = 0
    delivered: int = 0
    dead: int = 0


# Pure helpers


def matches(subscription: Subscription, event: events.Event) -> bool:
    """Whether ``subscription`` wants ``event``: type glob, then state, then labels."""
    if subscription.event_types and not any(
        fnmatch.fnmatchcase(event.type, pattern) for pattern in subscription.event_types
    ):
        return False
    if subscription.states and not (
        event.data.get("from") in subscription.states or event.data.get("to") in subscription.states
    ):
        return False
    return all(event.labels.get(key) == value for key, value in subscription.selector.items())


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Accord-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``{timestamp}.{body}``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_SCHEME}={mac.hexdigest()}"


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes,
    header: str,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """For receivers: whether a request is authentic and fresh.

    Args:
        secret: the subscription's secret.
        timestamp: the ``X-Accord-Timestamp`` header.
        body: the raw request body, byte for byte.
        header: the ``X-Accord-Signature`` header; several comma-separated ``sha256=…`` values
            are accepted (any may match), which allows rotating a secret.
        tolerance_s: how far the timestamp may be from ``now``, either way.
        now: unix seconds (default: the current time).
    """
    text = str(timestamp)
    if not _TIMESTAMP.fullmatch(text):
        return False
    stamp = int(text)
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance_s:
        return False
    expected = sign(secret, stamp, body).encode()
    # Bytes, because compare_digest refuses non-ASCII str (a header may carry any latin-1).
    candidates = [part.strip().encode("latin-1", "replace") for part in header.split(",")]
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


def backoff_delay(
    subscription: Subscription, retry: int, *, retry_after: float | None = None
) -> float:
    """Seconds before retry ``retry`` (0 for the first): ``engine.retry.RetryPolicy.delay``'s
    full jitter over the subscription's base and cap (lifecycle may not import the engine)."""
    if retry_after is not None:
        return min(subscription.backoff_cap_s, retry_after)
    return random.uniform(
        0, min(subscription.backoff_cap_s, subscription.backoff_base_s * 2**retry)
    )


# Subscriptions in the store


def subscription_key(subscription_id: str) -> str:
    return SUBS_PREFIX + subscription_id


def cursor_key(subscription_id: str) -> str:
    return CURSOR_PREFIX + subscription_id


async def add(store: Store, subscription: Subscription) -> Subscription:
    """Store a new subscription; ``InputError`` if its id is taken.

    Without ``start_after`` it receives only events appended from now on.
    """
    if subscription.start_after is None:
        subscription = subscription.model_copy(update={"start_after": await stream_end(store)})
    try:
        await store.create(
            subscription_key(subscription.id), subscription.model_dump_json().encode()
        )
    except errors.ConflictError as exc:
        raise errors.InputError(f"webhook subscription {subscription.id!r} exists") from exc
    return subscription


async def get(store: Store, subscription_id: str) -> Subscription | None:
    entry = await store.get(subscription_key(subscription_id))
    return None if entry is None else Subscription.model_validate_json(entry.value)


async def subscriptions(store: Store) -> list[Subscription]:
    """Every subscription, by id."""
    return [Subscription.model_validate_json(e.value) for e in await store.list(SUBS_PREFIX)]


async def remove(store: Store, subscription_id: str) -> None:
    """Delete a subscription and its cursor; ``InputError`` if there is none."""
    if await store.get(subscription_key(subscription_id)) is None:
        raise errors.InputError(f"no webhook subscription {subscription_id!r}")
    await store.delete(subscription_key(subscription_id))
    # A cursor left behind by a crash here is harmless: it names the old subscription's uid.
    await store.delete(cursor_key(subscription_id))


async def cursor(store: Store, subscription_id: str) -> Cursor:
    """The subscription's cursor (its starting point if it has not delivered anything yet)."""
    subscription = await get(store, subscription_id)
    if subscription is None:
        raise errors.InputError(f"no webhook subscription {subscription_id!r}")
    found, _ = await _load_cursor(store, subscription)
    return found


async def stream_end(store: Store) -> int:
    """The sequence number of the last event (0 if none). Reads the stream: O(events)."""
    last = 0
    while batch := await store.read(events.STREAM, after=last, limit=10_000):
        last = batch[-1].seq
    return last


async def deliveries(store: Store, subscription_id: str, limit: int = 50) -> list[Attempt]:
    """The subscription's last ``limit`` attempts, oldest first."""
    found: collections.deque[Attempt] = collections.deque(maxlen=limit)
    async for data in _scan(store, LOG_STREAM):
        attempt = Attempt.model_validate_json(data)
        if attempt.subscription == subscription_id:
            found.append(attempt)
    return list(found)


async def dead_letters(store: Store, subscription_id: str, limit: int = 50) -> list[DeadLetter]:
    """The subscription's last ``limit`` dead letters, oldest first."""
    found: collections.deque[DeadLetter] = collections.deque(maxlen=limit)
    async for data in _scan(store, DEAD_STREAM):
        letter = DeadLetter.model_validate_json(data)
        if letter.subscription == subscription_id:
            found.append(letter)
    return list(found)


async def _scan(store: Store, stream: str) -> AsyncGenerator[bytes, None]:
    after = 0
    while batch := await store.read(stream, after=after, limit=1000):
        for record in batch:
            yield record.data
        after = batch[-1].seq


async def _load_cursor(store: Store, subscription: Subscription) -> tuple[Cursor, int | None]:
    """The cursor and its revision (``None``: no entry). A stale entry counts as a fresh start."""
    entry = await store.get(cursor_key(subscription.id))
    if entry is not None:
        found = Cursor.model_validate_json(entry.value)
        if found.subscription_uid == subscription.uid:
            return found, entry.revision
    start = Cursor(subscription_uid=subscription.uid, seq=subscription.start_after or 0)
    return start, None if entry is None else entry.revision


# Delivery


class _Superseded(Exception):
    """The cursor changed under us: another dispatcher, or the subscription was removed."""


@dataclass
class _Pass:
    """One subscription's state during :meth:`Dispatcher.deliver_once`."""

    sub: Subscription
    cursor: Cursor
    revision: int | None
    dirty: bool = False  # the cursor moved past non-matching events without a write


@dataclass(frozen=True)
class _Result:
    delivery: str
    status: int | None
    error: str | None
    retryable: bool
    retry_after: float | None
    duration_ms: float


class Dispatcher:
    """Delivers events to subscribers. Use ``async with`` to close a client it created.

    Args:
        store: where subscriptions, cursors, the outbox and the logs live.
        client: the HTTP client (default: one of its own that follows no redirects).
        clock: unix seconds, for timestamps and ``not_before``.
        sleep: awaited for each backoff.
        on_attempt: called with every attempt after it is logged (progress output).
        poll_interval: seconds between looks at the end of the outbox in :meth:`run`.
    """

    def __init__(
        self,
        store: Store,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_attempt: Callable[[Attempt], None] | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        self._store = store
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            follow_redirects=False, headers={"User-Agent": "accord-webhooks"}
        )
        self._clock = clock
        self._sleep = sleep
        self._on_attempt = on_attempt
        self._poll_interval = poll_interval
        self.stats = Stats()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def deliver_once(self, subscription_id: str, *, stop: asyncio.Event | None = None) -> int:
        """Send everything pending for one subscription, in stream order, one at a time.

        Returns the number of events handled (delivered or dead-lettered); non-matching events
        only move the cursor. Returns early, with the cursor saved, when ``stop`` is set
        (between attempts) or when another writer moved the cursor.

        Raises:
            InputError: there is no such subscription.
        """
        sub = await get(self._store, subscription_id)
        if sub is None:
            raise errors.InputError(f"no webhook subscription {subscription_id!r}")
        current, revision = await _load_cursor(self._store, sub)
        run = _Pass(sub, current, revision)
        handled = 0
        try:
            while not _is_set(stop):
                batch = await events.read(self._store, after=run.cursor.seq, limit=_BATCH)
                if not batch:
                    break
                for seq, event in batch:
                    if not matches(run.sub, event):
                        run.cursor, run.dirty = run.cursor.model_copy(update={"seq": seq}), True
                        continue
                    if not await self._deliver(run, seq, event, stop):
                        return handled
                    handled += 1
                    if _is_set(stop):
                        break
            if run.dirty:
                await self._save(run, run.cursor)
        except _Superseded:
            return handled  # the other writer owns the cursor; a later pass starts from it
        return handled

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver to every subscription until ``stop`` is set, each in its own task.

        Subscriptions are followed with ``store.watch`` (added ones start, removed ones stop);
        the end of the outbox is polled every ``poll_interval`` seconds and new events wake the
        tasks. When ``stop`` is set, in-flight requests finish and backoffs are cut short;
        when ``run`` is cancelled instead, in-flight requests are abandoned and their events,
        still behind the cursor, are sent again by the next run. A failure other than
        ``StoreUnavailableError`` (retried after ``poll_interval``) stops everything and is raised.
        """
        halt = asyncio.Event()
        failure: list[BaseException] = []
        workers: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        retired: set[asyncio.Task[None]] = set()  # cancelled with their subscription

        def finished(task: asyncio.Task[None]) -> None:
            exc = None if task.cancelled() else task.exception()
            if exc is not None:
                failure.append(exc)
                halt.set()

        def start(subscription_id: str) -> None:
            task, wake = workers.get(subscription_id, (None, asyncio.Event()))
            wake.set()
            if task is None or task.done():
                task = asyncio.create_task(self._worker(subscription_id, wake, halt))
                task.add_done_callback(finished)
                workers[subscription_id] = (task, wake)

        def cancel(subscription_id: str) -> None:
            if subscription_id in workers:
                task = workers.pop(subscription_id)[0]
                task.cancel()
                retired.add(task)
                task.add_done_callback(retired.discard)

        def wake_all() -> None:
            for _, wake in workers.values():
                wake.set()

        helpers = [
            asyncio.create_task(self._follow_subscriptions(start, cancel)),
            asyncio.create_task(self._follow_outbox(wake_all, halt)),
        ]
        for helper in helpers:
            helper.add_done_callback(finished)
        try:
            await _wait_any([stop, halt], at_most=None)
        except asyncio.CancelledError:
            for task, _ in workers.values():
                task.cancel()  # cancelled from outside: in-flight events stay behind the cursor
            raise
        finally:
            halt.set()
            await _cancel(helpers)
            tasks = [task for task, _ in workers.values()]
            await asyncio.gather(*tasks, *retired, return_exceptions=True)
        if failure:
            raise failure[0]

    # One subscription

    async def _worker(self, subscription_id: str, wake: asyncio.Event, halt: asyncio.Event) -> None:
        while not halt.is_set():
            wake.clear()
            try:
                await self.deliver_once(subscription_id, stop=halt)
            except errors.StoreUnavailableError:
                wake.set()  # transient: try again after a poll interval
                await _wait_any([halt], at_most=self._poll_interval)
                continue
            except errors.InputError:
                return  # the subscription is gone
            await _wait_any([wake, halt], at_most=None)

    async def _deliver(
        self, run: _Pass, seq: int, event: events.Event, stop: asyncio.Event | None
    ) -> bool:
        """Attempt ``event`` until delivered or dead; ``False`` if ``stop`` cut a backoff short."""
        attempt = 0
        if run.cursor.pending_seq == seq:
            attempt = run.cursor.attempts
            if run.cursor.not_before is not None:
                wait = run.cursor.not_before - self._clock()
                if wait > 0 and not await self._pause(wait, stop):
                    return False
                run.sub = await self._refresh(run.sub)
        while True:
            attempt += 1
            result = await self._post(run.sub, event)
            if result.status is not None and 200 <= result.status < 300:
                outcome = Outcome.DELIVERED
            elif result.retryable and attempt < run.sub.max_attempts:
                outcome = Outcome.RETRYING
            else:
                outcome = Outcome.DEAD
            await self._log(run.sub, seq, event, attempt, result, outcome)
            if outcome is not Outcome.RETRYING:
                if outcome is Outcome.DEAD:
                    await self._dead_letter(run.sub, seq, event, attempt, result)
                await self._save(run, Cursor(subscription_uid=run.sub.uid, seq=seq))
                return True
            delay = backoff_delay(run.sub, attempt - 1, retry_after=result.retry_after)
            pending = run.cursor.model_copy(
                update={"pending_seq": seq, "attempts": attempt,
                        "not_before": self._clock() + delay}
            )  # fmt: skip
            await self._save(run, pending)
            if not await self._pause(delay, stop):
                return False
            run.sub = await self._refresh(run.sub)

    async def _post(self, sub: Subscription, event: events.Event) -> _Result:
        body = event.model_dump_json().encode()
        timestamp = int(self._clock())
        delivery = uuid.uuid4().hex
        headers = {
            "Content-Type": "application/json",
            "X-Accord-Event-Id": event.id,
            "X-Accord-Event-Type": event.type,
            "X-Accord-Timestamp": str(timestamp),
            "X-Accord-Delivery": delivery,
            "X-Accord-Signature": sign(sub.secret, timestamp, body),
        }
        started = time.monotonic()

        def result(
            status: int | None, error: str | None, *, retryable: bool, after: float | None = None
        ) -> _Result:
            elapsed = round((time.monotonic() - started) * 1000, 3)
            return _Result(delivery, status, error, retryable, after, elapsed)

        try:
            async with (
                asyncio.timeout(sub.timeout_s),
                self._client.stream(
                    "POST", sub.url, content=body, headers=headers, timeout=sub.timeout_s
                ) as response,
            ):
                status = response.status_code
                if 200 <= status < 300:
                    return result(status, None, retryable=False)
                excerpt = await _excerpt(response)
        except (TimeoutError, httpx.TimeoutException):
            return result(None, f"timed out after {sub.timeout_s:g} s", retryable=True)
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            return result(None, f"{type(exc).__name__}: {exc}", retryable=False)
        except httpx.TransportError as exc:  # connection refused or reset, a protocol error
            return result(None, f"{type(exc).__name__}: {exc}", retryable=True)
        error = f"HTTP {status} {response.reason_phrase}" + (f": {excerpt}" if excerpt else "")
        if 400 <= status < 500 and status not in (408, 429):
            return result(status, error, retryable=False)
        after = retry_after_seconds(response.headers.get("Retry-After"), now=self._clock())
        return result(status, error, retryable=True, after=after)

    async def _log(
        self,
        sub: Subscription,
        seq: int,
        event: events.Event,
        attempt: int,
        result: _Result,
        outcome: Outcome,
    ) -> None:
        record = Attempt(
            subscription=sub.id, event_id=event.id, event_seq=seq, event_type=event.type,
            delivery=result.delivery, attempt=attempt, status_code=result.status,
            error=result.error, duration_ms=result.duration_ms,
            at=datetime.fromtimestamp(self._clock(), UTC), outcome=outcome,
        )  # fmt: skip
        await self._store.append(LOG_STREAM, record.model_dump_json().encode())
        self.stats.attempts += 1
        self.stats.delivered += outcome is Outcome.DELIVERED
        self.stats.dead += outcome is Outcome.DEAD
        if self._on_attempt is not None:
            self._on_attempt(record)

    async def _dead_letter(
        self, sub: Subscription, seq: int, event: events.Event, attempts: int, result: _Result
    ) -> None:
        letter = DeadLetter(
            subscription=sub.id, event_id=event.id, event_seq=seq, attempts=attempts,
            status_code=result.status, last_error=result.error or "unknown error",
            at=datetime.fromtimestamp(self._clock(), UTC), event=event,
        )  # fmt: skip
        await self._store.append(DEAD_STREAM, letter.model_dump_json().encode())

    async def _save(self, run: _Pass, new: Cursor) -> None:
        value = new.model_dump_json().encode()
        key = cursor_key(run.sub.id)
        try:
            if run.revision is None:
                run.revision = await self._store.create(key, value)
            else:
                run.revision = await self._store.update(key, value, expected_revision=run.revision)
        except errors.ConflictError as exc:
            raise _Superseded(str(exc)) from exc
        run.cursor, run.dirty = new, False

    async def _refresh(self, sub: Subscription) -> Subscription:
        """The subscription as stored now (a new URL or secret applies to the next attempt)."""
        current = await get(self._store, sub.id)
        if current is None or current.uid != sub.uid:
            raise _Superseded(f"webhook subscription {sub.id!r} was removed")
        return current

    async def _pause(self, seconds: float, stop: asyncio.Event | None) -> bool:
        """Sleep ``seconds``; ``False`` if ``stop`` was set first."""
        if stop is None:
            await self._sleep(seconds)
            return True
        if stop.is_set():
            return False
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waiter = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([sleeper, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()
        if sleeper.done() and not sleeper.cancelled():
            sleeper.result()  # re-raise what the sleep raised
        return not stop.is_set()

    # All subscriptions

    async def _follow_subscriptions(
        self, start: Callable[[str], None], cancel: Callable[[str], None]
    ) -> None:
        changes = self._store.watch(SUBS_PREFIX)
        try:
            async for change in changes:
                subscription_id = change.key.removeprefix(SUBS_PREFIX)
                if change.op is Op.PUT:
                    start(subscription_id)
                elif change.op is Op.DELETE:
                    cancel(subscription_id)
        finally:
            if isinstance(changes, AsyncGenerator):
                await changes.aclose()

    async def _follow_outbox(self, wake_all: Callable[[], None], halt: asyncio.Event) -> None:
        last = await stream_end(self._store)
        while not halt.is_set():
            batch = await self._store.read(events.STREAM, after=last, limit=1000)
            if batch:
                last = batch[-1].seq
                wake_all()
                continue
            await _wait_any([halt], at_most=self._poll_interval)


async def _excerpt(response: httpx.Response) -> str:
    """The start of an error response's body, for the log (the rest is not read)."""
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= _ERROR_BODY_BYTES:
            break
    return data[:_ERROR_BODY_BYTES].decode(errors="replace").strip()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` until they are done: one cancellation may be swallowed (Python 3.11's
    ``asyncio.wait_for``, used by ``SqliteStore.watch``, loses it when its inner wait has just
    finished, which a write through the same store object causes)."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)


async def _wait_any(flags: list[asyncio.Event], *, at_most: float | None) -> None:
    """Until one of ``flags`` is set, or ``at_most`` seconds passed."""
    waiters = [asyncio.ensure_future(flag.wait()) for flag in flags]
    try:
        await asyncio.wait(waiters, timeout=at_most, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _is_set(stop: asyncio.Event | None) -> bool:
    return stop is not None and stop.is_set()
