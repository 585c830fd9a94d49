"""The persistence seam: a key-value store with revisions, an event log and a blob store.

This is the lowest common denominator of SQLite and NATS JetStream, so that every backend can
promise the same things:

KV
    * Keys match ``[-/_=.a-zA-Z0-9]+`` (NATS' key charset) and do not start or end with ``.``.
      ``.`` separates levels (``runs.<manifest>.<run>``), as NATS subjects do, so that a prefix
      that ends in ``.`` maps onto a subject wildcard and onto per-node permissions.
      ``key_part`` encodes arbitrary text (ids, MAC addresses) as one level.
      Values are bytes, at most 1 MiB (larger things belong in the blob store).
    * Every write gets a revision from one counter shared by the whole store, strictly
      increasing (like a JetStream bucket, not per key).
    * ``create`` fails with :class:`~accord.errors.ConflictError` if the key exists.
      ``update`` is compare-and-set: it fails with ``ConflictError`` unless the key's current
      revision equals ``expected_revision``. ``put`` writes unconditionally. ``delete`` with an
      ``expected_revision`` is compare-and-set too; deleting a missing key is a no-op.
    * Each write is atomic and durable once the call returns (see the backend for what
      "durable" means against power loss). There are no multi-key transactions: design
      records so that one key is one atomic fact.
    * ``watch(prefix)`` yields the current entries under the prefix, then one ``READY`` marker,
      then every later change (puts and deletes) in revision order, without gaps, until the
      iterator is closed. Changes made by other processes on the same store are seen too.
      ``watch(key, exact=True)`` watches that one key only: a prefix would also match
      ``node-10`` when watching ``node-1``, and on NATS an exact watch is one subject, which
      costs the server one delivery per change instead of one per key under the prefix.

Event log
    * ``append(stream, data)`` adds one record to an append-only, ordered stream and returns its
      sequence number (strictly increasing within the store). ``read(stream, after=seq)``
      resumes after a sequence number. Records are never changed or removed.

Blob store
    * Content-addressed by sha256 hex digest; ``put_blob`` verifies nothing the caller did not
      hash itself: it computes the digest of what it stores and returns it.

All methods are coroutines so that network backends fit; local backends do their I/O inline.
"""

from __future__ import annotations

import builtins
import enum
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from accord import errors

KEY_PATTERN = re.compile(r"^[-/_=a-zA-Z0-9][-/_=.a-zA-Z0-9]*(?<!\.)$")
STREAM_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
MAX_VALUE_BYTES = 1024 * 1024


class Op(enum.StrEnum):
    """What a watch event reports."""

    PUT = "put"
    DELETE = "delete"
    READY = "ready"  # end of the initial values; everything after is live


@dataclass(frozen=True, slots=True)
class Entry:
    """One key's current value and the revision that wrote it."""

    key: str
    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A change seen by ``watch``. ``value`` is ``None`` for deletes and the ready marker."""

    op: Op
    key: str
    value: bytes | None
    revision: int


@dataclass(frozen=True, slots=True)
class Record:
    """One record of an event-log stream."""

    stream: str
    seq: int
    data: bytes
    time: float


@runtime_checkable
class Store(Protocol):
    """What every backend provides. See the module docstring for the guarantees."""

    url: str

    async def get(self, key: str) -> Entry | None: ...

    async def create(self, key: str, value: bytes) -> int: ...

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int: ...

    async def put(self, key: str, value: bytes) -> int: ...

    async def delete(self, key: str, *, expected_revision: int | None = None) -> None: ...

    async def list(self, prefix: str = "") -> builtins.list[Entry]: ...

    def watch(self, prefix: str = "", *, exact: bool = False) -> AsyncIterator[WatchEvent]: ...

    async def append(self, stream: str, data: bytes) -> int: ...

    async def read(
        self, stream: str, *, after: int = 0, limit: int | None = None
    ) -> builtins.list[Record]: ...

    async def put_blob(self, source: bytes | Path) -> str: ...

    async def get_blob(self, digest: str, destination: Path) -> None: ...

    async def has_blob(self, digest: str) -> bool: ...

    async def close(self) -> None: ...


def in_scope(key: str, prefix: str, *, exact: bool) -> bool:
    """Whether a watch of ``prefix`` (or of exactly that key) sees ``key``."""
    return key == prefix if exact else key.startswith(prefix)


def check_key(key: str) -> None:
    """Raise ``InputError`` unless ``key`` is a valid store key."""
    if not KEY_PATTERN.fullmatch(key):
        raise errors.InputError(
            f"invalid store key {key!r}: use [-/_=.a-zA-Z0-9], no leading/trailing '.'"
        )


def check_value(key: str, value: bytes) -> None:
    """Raise ``InputError`` if ``value`` is too large for a KV entry."""
    if len(value) > MAX_VALUE_BYTES:
        raise errors.InputError(
            f"value for {key!r} is {len(value)} bytes; "
            f"the KV limit is {MAX_VALUE_BYTES} (use a blob)"
        )


def check_stream(stream: str) -> None:
    """Raise ``InputError`` unless ``stream`` is a valid stream name."""
    if not STREAM_PATTERN.fullmatch(stream):
        raise errors.InputError(f"invalid stream name {stream!r}: use [a-z0-9_-]")


_KEY_SAFE = frozenset("-_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def key_part(text: str) -> str:
    """Encode arbitrary text as one key level: unsafe characters become ``=XX`` (hex of UTF-8)."""
    if all(c in _KEY_SAFE for c in text):
        return text
    return "".join(c if c in _KEY_SAFE else "".join(f"={b:02X}" for b in c.encode()) for c in text)
