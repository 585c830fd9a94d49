"""The NATS store's watch: an ordered push consumer on the KV stream, restarted where it left off.

What a watch delivers, when it replaces its consumer and what that costs the server are
described under *Watch* in :mod:`accord.store.nats`, the backend this module belongs to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api

from accord import errors
from accord.store import base
from accord.store.nats_msg import _describe, _header, _is_delete, _status

if TYPE_CHECKING:
    from accord.store.nats import NatsStore

_log = logging.getLogger("accord.store.nats")  # the backend's logger: one name to configure

_WATCH_INACTIVE = 5.0
_RESTART_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


class _Watch:
    """One watch: an ordered push consumer on the KV stream, restarted where it left off.

    The consumer's messages arrive in ``_on_message`` (run by nats-py, one at a time); a pump
    task restarts the consumer when ``_on_message``, the reconnect callback or the heartbeat
    check asks for it. Both run on the event loop, so they share state without locks; a
    restart bumps ``_generation`` first, and messages for an older generation are dropped.
    """

    def __init__(self, store: NatsStore, prefix: str, *, exact: bool) -> None:
        self._store = store
        self._prefix = prefix
        self._exact = exact
        # An exact watch is one subject: the server sends it nothing about other keys.
        self._filter = store._kv_prefix + prefix if exact else store._kv_filter(prefix)
        self.events: asyncio.Queue[base.WatchEvent | errors.StoreError | None] = asyncio.Queue()
        # The initial values until READY is sent, then None.
        self._initial: dict[str, base.WatchEvent] | None = {}
        self._last_seq = 0  # newest stream sequence taken in
        self._next_dseq = 1  # the consumer sequence the next message must carry
        self._snapshot_size: int | None = None  # messages in the initial snapshot, once known
        self._generation = 0
        self._subscription: Subscription | None = None
        self._consumer: str | None = None
        self._seen_at = 0.0
        self._kick = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
        """Create the first consumer (errors go to the caller), then start the pump."""
        await self._restart()
        self._pump = asyncio.get_running_loop().create_task(self._run())

    def kick(self) -> None:
        """Ask for a new consumer (after a reconnect)."""
        self._kick.set()

    def end(self) -> None:
        """The store is closing: end the iteration after what is already queued."""
        self._stopped = True
        self.events.put_nowait(None)

    def fail(self, error: errors.StoreError) -> None:
        self._stopped = True
        self.events.put_nowait(error)

    async def close(self) -> None:
        self._stopped = True
        self._generation += 1  # drop whatever still arrives
        pump, self._pump = self._pump, None
        if pump is not None:
            await _cancel(pump)
        await self._release()

    # The pump

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        heartbeat = self._store._heartbeat
        while not self._stopped:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(heartbeat):
                    await self._kick.wait()
            if not self._kick.is_set() and (
                loop.time() - self._seen_at < 3 * heartbeat or self._backlog()
            ):
                continue
            attempt = 0
            while not self._stopped:
                await self._store._connected.wait()
                try:
                    await self._restart()
                    break
                except errors.StoreUnavailableError as exc:
                    url, prefix = self._store.url, self._prefix
                    _log.debug("%s: restarting the watch of %r: %s", url, prefix, exc)
                except errors.StoreError as exc:  # e.g. the bucket was deleted: give up
                    if not self._stopped:
                        self.fail(exc)
                    return
                await asyncio.sleep(_RESTART_DELAYS[min(attempt, len(_RESTART_DELAYS) - 1)])
                attempt += 1

    def _backlog(self) -> bool:
        """Whether messages wait in nats-py for us: a busy loop, not a silent consumer."""
        return self._subscription is not None and self._subscription.pending_msgs > 0

    async def _restart(self) -> None:
        """Replace the consumer: from scratch before READY, after ``_last_seq`` after it."""
        store = self._store
        self._kick.clear()
        self._generation += 1
        generation = self._generation
        await self._release()
        self._next_dseq = 1
        self._snapshot_size = None
        if self._initial is not None:
            self._initial.clear()
            self._last_seq = 0

        async def on_message(msg: Msg) -> None:
            if generation == self._generation:
                await self._on_message(msg)

        inbox = store._nc.new_inbox()
        with store._translated("cannot start a watch"):
            self._subscription = await store._nc.subscribe(inbox, cb=on_message)
        config = api.ConsumerConfig(
            name=f"accord-watch-{uuid.uuid4().hex[:16]}",  # ephemeral: no durable_name
            deliver_subject=inbox,
            filter_subject=self._filter,
            ack_policy=api.AckPolicy.NONE,
            max_deliver=1,
            flow_control=True,
            idle_heartbeat=store._heartbeat,
            inactive_threshold=_WATCH_INACTIVE,
            mem_storage=True,
            num_replicas=1,
        )
        if self._initial is None:
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self._last_seq + 1
        else:
            config.deliver_policy = api.DeliverPolicy.LAST_PER_SUBJECT
        request = {"stream_name": store._kv_stream, "config": config.as_dict()}
        # The form with the name and filter in the subject, so that a user's permissions can
        # say which filters it may consume (the server checks the body against the subject).
        info = await store._call(
            f"$JS.API.CONSUMER.CREATE.{store._kv_stream}.{config.name}.{self._filter}",
            json.dumps(request).encode(),
            None,
            f"cannot start a watch of {self._prefix!r}",
        )
        self._consumer = str(info["name"])
        self._seen_at = asyncio.get_running_loop().time()
        # The snapshot is the first num_pending messages. Some may have been taken in already
        # (the answer and the messages come on different subscriptions), even all of them.
        self._snapshot_size = int(info.get("num_pending", 0))
        if self._initial is not None and self._next_dseq - 1 >= self._snapshot_size:
            self._send_initial()

    async def _release(self) -> None:
        """Drop the subscription and delete the consumer, without waiting for an answer."""
        subscription, self._subscription = self._subscription, None
        consumer, self._consumer = self._consumer, None
        nc = self._store._nc
        if nc.is_closed or not nc.is_connected:
            return  # the server forgets the consumer after _WATCH_INACTIVE seconds anyway
        try:
            if subscription is not None:
                await subscription.unsubscribe()
            if consumer is not None:
                # A reply subject that nothing waits on: the answer is dropped.
                await nc.publish(
                    f"$JS.API.CONSUMER.DELETE.{self._store._kv_stream}.{consumer}",
                    b"",
                    reply=self._store._inbox + "0",
                )
        except (OSError, nats.errors.Error) as exc:
            # Best effort: a lost connection drops the interest, and the inactivity threshold
            # the consumer; a subscription nats-py already dropped needs no unsubscribe.
            _log.debug("%s: releasing a watch consumer: %r", self._store.url, exc)

    # Messages

    async def _on_message(self, msg: Msg) -> None:
        self._seen_at = asyncio.get_running_loop().time()
        status = _status(msg)
        if status is None:
            self._take(msg)
        elif self._store._nc.is_closed:
            return
        elif status == "100" and msg.reply:  # flow control: ask for more
            await self._store._nc.publish(msg.reply, b"")
        elif status == "100":  # idle heartbeat
            stalled = _header(msg, "Nats-Consumer-Stalled")
            if stalled:
                await self._store._nc.publish(stalled, b"")
            last = _header(msg, "Nats-Last-Consumer")
            if last is not None and int(last) != self._next_dseq - 1:
                self._kick.set()  # we missed a message
        else:
            _log.debug("%s: watch of %r: %s", self._store.url, self._prefix, _describe(msg))
            self._kick.set()  # e.g. 409 Consumer Deleted

    def _take(self, msg: Msg) -> None:
        meta = msg.metadata
        if meta.sequence.consumer != self._next_dseq:
            self._kick.set()  # a gap: start again after the last message taken in
            return
        self._next_dseq += 1
        revision = meta.sequence.stream
        self._last_seq = max(self._last_seq, revision)
        key = msg.subject[len(self._store._kv_prefix) :]
        if base.in_scope(key, self._prefix, exact=self._exact):
            if _is_delete(msg):
                event = base.WatchEvent(base.Op.DELETE, key, None, revision)
            else:
                event = base.WatchEvent(base.Op.PUT, key, msg.data, revision)
            if self._initial is None:
                self.events.put_nowait(event)
            elif event.op is base.Op.PUT:
                self._initial[key] = event
            else:
                self._initial.pop(key, None)
        # Complete once the snapshot's messages are in; a quiet stream says so sooner with
        # num_pending 0 (which alone may never come while other keys keep changing).
        if self._initial is not None and (
            meta.num_pending == 0
            or (self._snapshot_size is not None and self._next_dseq - 1 >= self._snapshot_size)
        ):
            self._send_initial()

    def _send_initial(self) -> None:
        assert self._initial is not None
        for event in self._initial.values():
            self.events.put_nowait(event)
        self.events.put_nowait(base.WatchEvent(base.Op.READY, "", None, self._last_seq))
        self._initial = None


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` until it is done (a cancellation can be swallowed inside nats-py)."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
    if not task.cancelled() and task.exception() is not None:
        _log.warning("a watch pump failed: %r", task.exception())
