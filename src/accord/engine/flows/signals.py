"""Signals into a running flow: one KV key per signal sent, watched by the run.

``send`` writes ``flows.<run>.signals.<name>.<id>`` = ``{"data": …, "sent_at": …, "by": …}``,
with a fresh ``id`` per send, so two signals of one name (``retry`` for two tasks, two
approvals) are two keys and neither overwrites the other. A bare ``flows.<run>.signals.<name>``
written by other means counts as well. Any process on the same store may send (``accord flow
signal RUN NAME --data JSON``). The run watches the prefix (``Store.watch``: current values
first, then every change, including other processes' writes), so a signal sent before a task
starts waiting for it still counts. Waits take the oldest pending signal of their name.

A wait *consumes* the signal it takes: the runner journals the receipt first (the durable
fact), then deletes the key with compare-and-set on the revision it read. A crash between the
two leaves the key behind; the journal's receipts list the consumed ``(name, revision)`` pairs
so a resumed run never takes the same signal twice.

``abort`` is never consumed: it is a fact about the whole run, honoured by every wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from accord import errors
from accord.model.status import utcnow
from accord.store import base

ABORT = "abort"  # stop the run; the failure policy runs; the run ends aborted
RETRY = "retry"  # run a task that was in doubt after a crash again
SKIP = "skip"  # treat a task in doubt as done; the signal's data becomes its result
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def run_key(run_id: str) -> str:
    """The KV key of a run's record."""
    return f"flows.{base.key_part(run_id)}"


def signal_prefix(run_id: str) -> str:
    return f"{run_key(run_id)}.signals."


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise errors.InputError(f"invalid signal name {name!r}: use [a-z0-9_-], up to 64")
    return name


@dataclass(frozen=True, slots=True)
class Received:
    """A signal as the run saw it."""

    name: str
    data: Any
    revision: int
    key: str = ""
    sent_at: str = ""
    by: str = ""


async def send(
    store: base.Store, run_id: str, name: str, data: Any = None, *, by: str | None = None
) -> int:
    """Send signal ``name`` to a run; returns the revision written.

    ``by`` names the sender (default: ``user@host pid N`` of this process); the run journals
    it with its receipt.

    Raises:
        InputError: a bad name, or data that is not JSON-able.
        NotFoundError: there is no such run.
    """
    check_name(name)
    if await store.get(run_key(run_id)) is None:
        raise errors.NotFoundError(f"no flow run {run_id!r}")
    try:
        sent = {"data": data, "sent_at": utcnow().isoformat(), "by": by or _sender()}
        value = json.dumps(sent)
    except (TypeError, ValueError) as exc:
        raise errors.InputError(f"signal data is not JSON-able: {exc}") from None
    unique = f"{time.time_ns():020d}-{secrets.token_hex(3)}"
    return await store.put(f"{signal_prefix(run_id)}{name}.{unique}", value.encode())


def _sender() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): say who by uid
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


class Waker:
    """Wakes every waiter when something changed (a signal, a stop). Take a token *before*
    checking, then wait on it: a change in between is not lost."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def token(self) -> asyncio.Event:
        return self._event

    def poke(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    @staticmethod
    async def wait(token: asyncio.Event, seconds: float | None) -> None:
        """Until ``token`` is poked, at most ``seconds`` (None: no limit)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(token.wait(), seconds)


class SignalHub:
    """The signals of one run, kept current by one watch. Use ``open`` and ``close``."""

    def __init__(
        self,
        store: base.Store,
        run_id: str,
        waker: Waker,
        *,
        on_abort: Callable[[], None],
        consumed: set[tuple[str, int]] | None = None,
    ) -> None:
        self.store = store
        self.prefix = signal_prefix(run_id)
        self.waker = waker
        self.on_abort = on_abort
        self.consumed: set[tuple[str, int]] = consumed if consumed is not None else set()
        self.error: BaseException | None = None
        self._pending: dict[str, dict[str, Received]] = {}  # name → key → signal
        self._watch: AsyncIterator[base.WatchEvent] | None = None
        self._follower: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Read the current signals, then follow changes in the background."""
        self._watch = self.store.watch(self.prefix)
        async for event in self._watch:
            if event.op is base.Op.READY:
                break
            self._apply(event)
        self._follower = asyncio.get_running_loop().create_task(self._follow(self._watch))

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        if self._watch is not None:
            closer = getattr(self._watch, "aclose", None)
            if closer is not None:
                await closer()
            self._watch = None

    def get(self, name: str, accept: Callable[[Received], bool] | None = None) -> Received | None:
        """The oldest pending signal ``name`` not yet consumed and not refused by ``accept``."""
        if self.error is not None:
            raise errors.StoreError(f"lost the watch on {self.prefix}*: {self.error}")
        for found in sorted(self._pending.get(name, {}).values(), key=lambda r: r.revision):
            if (found.name, found.revision) in self.consumed:
                continue
            if accept is None or accept(found):
                return found
        return None

    @property
    def aborted(self) -> bool:
        return bool(self._pending.get(ABORT))

    async def consume(self, signal: Received) -> None:
        """Delete a signal the run has journaled as received (see the module docstring)."""
        self.consumed.add((signal.name, signal.revision))
        self._pending.get(signal.name, {}).pop(signal.key, None)
        # Lost compare-and-set: the key was written again; that newer signal stays pending.
        with contextlib.suppress(errors.ConflictError):
            await self.store.delete(signal.key, expected_revision=signal.revision)

    async def _follow(self, watch: AsyncIterator[base.WatchEvent]) -> None:
        try:
            async for event in watch:
                self._apply(event)
        except Exception as exc:  # noqa: BLE001 - handed to the waiters, who raise it
            self.error = exc  # so a waiting task fails instead of waiting for ever
            self.waker.poke()

    def _apply(self, event: base.WatchEvent) -> None:
        name = event.key[len(self.prefix) :].split(".", 1)[0]
        if not NAME.fullmatch(name):
            return
        if event.op is base.Op.DELETE:
            self._pending.get(name, {}).pop(event.key, None)
            return
        if event.op is not base.Op.PUT or event.value is None:
            return
        try:
            body = json.loads(event.value)
            received = Received(
                name=name,
                data=body.get("data"),
                revision=event.revision,
                key=event.key,
                sent_at=str(body.get("sent_at", "")),
                by=str(body.get("by", "")),
            )
        except (ValueError, AttributeError):  # not written by send(): take the raw text as data
            text = event.value.decode(errors="replace")
            received = Received(name, text, event.revision, event.key)
        self._pending.setdefault(name, {})[event.key] = received
        if name == ABORT:
            self.on_abort()
        self.waker.poke()
