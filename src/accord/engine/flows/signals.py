"""Signals into a running flow: one KV key per signal, watched by the run.

``send`` writes ``flows.<run>.signals.<name>`` = ``{"data": …, "sent_at": …, "by": …}``; any
process on the same store may send (``accord flow signal RUN NAME --data JSON``). The run
watches its prefix (``Store.watch``: current values first, then every change, including other
processes' writes), so a signal sent before a task starts waiting for it still counts.

A wait *consumes* the signal it takes: the runner journals the receipt first (the durable
fact), then deletes the key with compare-and-set on the revision it read. A crash between the
two leaves the key behind; the journal's receipts list the consumed ``(name, revision)`` pairs
so a resumed run never takes the same signal twice. If the sender wrote the key again in the
meantime, the delete loses its compare-and-set and the newer signal stays for the next wait.

``abort`` is never consumed: it is a fact about the whole run, honoured by every wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import re
import socket
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
    sent_at: str = ""
    by: str = ""


async def send(store: base.Store, run_id: str, name: str, data: Any = None) -> int:
    """Send signal ``name`` to a run; returns the revision written.

    Raises:
        InputError: a bad name, or data that is not JSON-able.
        NotFoundError: there is no such run.
    """
    check_name(name)
    if await store.get(run_key(run_id)) is None:
        raise errors.NotFoundError(f"no flow run {run_id!r}")
    try:
        value = json.dumps({"data": data, "sent_at": utcnow().isoformat(), "by": _sender()})
    except (TypeError, ValueError) as exc:
        raise errors.InputError(f"signal data is not JSON-able: {exc}") from None
    return await store.put(signal_prefix(run_id) + name, value.encode())


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
        self._latest: dict[str, Received] = {}
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
        """The pending signal ``name``, unless already consumed or refused by ``accept``."""
        if self.error is not None:
            raise errors.StoreError(f"lost the watch on {self.prefix}*: {self.error}")
        found = self._latest.get(name)
        if found is None or (found.name, found.revision) in self.consumed:
            return None
        if accept is not None and not accept(found):
            return None
        return found

    @property
    def aborted(self) -> bool:
        return ABORT in self._latest

    async def consume(self, signal: Received) -> None:
        """Delete a signal the run has journaled as received (see the module docstring)."""
        self.consumed.add((signal.name, signal.revision))
        if self._latest.get(signal.name) == signal:
            del self._latest[signal.name]
        # Lost compare-and-set: the sender wrote it again; the newer one waits for the next taker.
        with contextlib.suppress(errors.ConflictError):
            await self.store.delete(self.prefix + signal.name, expected_revision=signal.revision)

    async def _follow(self, watch: AsyncIterator[base.WatchEvent]) -> None:
        try:
            async for event in watch:
                self._apply(event)
        except errors.StoreError as exc:
            self.error = exc  # waiters raise it; the run then fails the waiting task
            self.waker.poke()

    def _apply(self, event: base.WatchEvent) -> None:
        name = event.key[len(self.prefix) :]
        if event.op is base.Op.DELETE:
            self._latest.pop(name, None)
            return
        if event.op is not base.Op.PUT or event.value is None or not NAME.fullmatch(name):
            return
        try:
            body = json.loads(event.value)
            received = Received(
                name=name,
                data=body.get("data"),
                revision=event.revision,
                sent_at=str(body.get("sent_at", "")),
                by=str(body.get("by", "")),
            )
        except (ValueError, AttributeError):  # not written by send(): take the raw text as data
            received = Received(name, event.value.decode(errors="replace"), event.revision)
        self._latest[name] = received
        if name == ABORT:
            self.on_abort()
        self.waker.poke()
