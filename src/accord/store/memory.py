"""An in-process store for tests: everything lives in dicts and dies with the object.

It keeps every promise of :mod:`accord.store.base` that makes sense inside one process:
one revision counter for the whole store, compare-and-set, ``watch`` with initial values, a
``READY`` marker and every later change in revision order, an append-only event log and
content-addressed blobs. "Durable" means "until the object is garbage": nothing is shared with
other processes or other ``MemoryStore`` objects.

All methods run synchronously under the event loop, so each write is atomic with respect to
every other coroutine: there is no await between the check and the write of a CAS.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import hashlib
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from accord import errors
from accord.store import base

_DIGEST = re.compile(r"[0-9a-f]{64}")


class MemoryStore:
    """The ``memory://`` backend. Cheap to create: use one per test."""

    url = "memory://"

    def __init__(self) -> None:
        self._kv: dict[str, base.Entry] = {}
        self._revision = 0
        self._streams: dict[str, list[base.Record]] = {}
        self._seq = 0
        self._blobs: dict[str, bytes] = {}
        # One queue per open watch; ``None`` tells the watch that the store was closed.
        self._watchers: dict[asyncio.Queue[base.WatchEvent | None], tuple[str, bool]] = {}
        self._closed = False

    # KV

    async def get(self, key: str) -> base.Entry | None:
        self._check_open()
        base.check_key(key)
        return self._kv.get(key)

    async def create(self, key: str, value: bytes) -> int:
        self._check_write(key, value)
        if key in self._kv:
            raise errors.ConflictError(f"key {key!r} already exists")
        return self._write(key, value)

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        self._check_write(key, value)
        self._check_revision(key, expected_revision)
        return self._write(key, value)

    async def put(self, key: str, value: bytes) -> int:
        self._check_write(key, value)
        return self._write(key, value)

    async def delete(self, key: str, *, expected_revision: int | None = None) -> None:
        self._check_open()
        base.check_key(key)
        if expected_revision is not None:
            self._check_revision(key, expected_revision)
        elif key not in self._kv:
            return
        del self._kv[key]
        self._revision += 1
        self._notify(base.WatchEvent(base.Op.DELETE, key, None, self._revision))

    async def list(self, prefix: str = "") -> list[base.Entry]:
        self._check_open()
        return self._entries(prefix)

    async def watch(
        self, prefix: str = "", *, exact: bool = False
    ) -> AsyncIterator[base.WatchEvent]:
        self._check_open()
        if exact:
            base.check_key(prefix)
        queue: asyncio.Queue[base.WatchEvent | None] = asyncio.Queue()
        try:
            # Snapshot and subscribe with no await in between, so that no change is missed.
            self._watchers[queue] = (prefix, exact)
            initial, revision = self._entries(prefix, exact=exact), self._revision
            for entry in initial:
                yield base.WatchEvent(base.Op.PUT, entry.key, entry.value, entry.revision)
            yield base.WatchEvent(base.Op.READY, "", None, revision)
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._watchers.pop(queue, None)

    # Event log

    async def append(self, stream: str, data: bytes) -> int:
        self._check_open()
        base.check_stream(stream)
        self._seq += 1
        record = base.Record(stream, self._seq, bytes(data), time.time())
        self._streams.setdefault(stream, []).append(record)
        return self._seq

    async def read(
        self, stream: str, *, after: int = 0, limit: int | None = None
    ) -> builtins.list[base.Record]:
        self._check_open()
        base.check_stream(stream)
        _check_limit(limit)
        records = self._streams.get(stream, [])
        start = bisect.bisect_right(records, after, key=lambda record: record.seq)
        stop = None if limit is None else start + limit
        return records[start:stop]

    # Blobs

    async def put_blob(self, source: bytes | Path) -> str:
        self._check_open()
        data = _read_source(source) if isinstance(source, Path) else bytes(source)
        digest = hashlib.sha256(data).hexdigest()
        self._blobs[digest] = data
        return digest

    async def get_blob(self, digest: str, destination: Path) -> None:
        self._check_open()
        _check_digest(digest)
        data = self._blobs.get(digest)
        if data is None:
            raise errors.NotFoundError(f"no blob {digest}")
        try:
            _write_atomically(destination, data)
        except OSError as exc:
            raise errors.StoreError(f"cannot write blob to {destination}: {exc}") from exc

    async def has_blob(self, digest: str) -> bool:
        self._check_open()
        _check_digest(digest)
        return digest in self._blobs

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for queue in self._watchers:
            queue.put_nowait(None)

    # Helpers

    def _check_open(self) -> None:
        if self._closed:
            raise errors.StoreError("the memory store is closed")

    def _check_write(self, key: str, value: bytes) -> None:
        self._check_open()
        base.check_key(key)
        base.check_value(key, value)

    def _check_revision(self, key: str, expected: int) -> None:
        entry = self._kv.get(key)
        if entry is None:
            raise errors.ConflictError(f"key {key!r} does not exist (expected revision {expected})")
        if entry.revision != expected:
            raise errors.ConflictError(
                f"key {key!r} is at revision {entry.revision}, not {expected}"
            )

    def _entries(self, prefix: str, *, exact: bool = False) -> builtins.list[base.Entry]:
        entries = (e for key, e in self._kv.items() if base.in_scope(key, prefix, exact=exact))
        return sorted(entries, key=lambda entry: entry.key)

    def _write(self, key: str, value: bytes) -> int:
        self._revision += 1
        # Copy so that a caller's bytearray cannot change the stored value later.
        entry = base.Entry(key, bytes(value), self._revision)
        self._kv[key] = entry
        self._notify(base.WatchEvent(base.Op.PUT, key, entry.value, entry.revision))
        return self._revision

    def _notify(self, event: base.WatchEvent) -> None:
        for queue, (prefix, exact) in self._watchers.items():
            if base.in_scope(event.key, prefix, exact=exact):
                queue.put_nowait(event)


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise errors.InputError(f"limit must be >= 0, not {limit}")


def _check_digest(digest: str) -> None:
    if not _DIGEST.fullmatch(digest):
        raise errors.InputError(f"invalid blob digest {digest!r}: expected 64 lowercase hex digits")


def _read_source(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise errors.InputError(f"cannot read blob source {path}: {exc}") from exc


def _write_atomically(destination: Path, data: bytes) -> None:
    """Write ``data`` to ``destination`` so that readers see the old file or the new one."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        Path(temp).replace(destination)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
