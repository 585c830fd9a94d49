"""The embedded store: one SQLite file plus a blob directory next to it.

URL: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's
convention), optionally ``?synchronous=full`` (or ``extra``; the default is ``normal``).
Several processes may open the same file at once; every promise of :mod:`accord.store.base`
holds across them.

Durability
    The database runs in WAL mode. A write returns after its transaction has committed into the
    WAL. With ``synchronous=normal`` (the default) the WAL is not fsynced on each commit, so:

    * ``kill -9`` of the process (or any crash of the process alone) loses no committed write:
      the data is in the operating system's page cache and reaches the disk anyway;
    * a power loss or kernel crash may roll back the last commits, but never corrupts the
      database: it reopens at an earlier consistent state.

    With ``?synchronous=full`` the WAL is fsynced on every commit and a committed write also
    survives a power loss, at the price of one fsync per write. Blobs are always fsynced.

Layout
    * ``kv(key, value, revision)``: the current value of each key.
    * ``changes(revision, key, op, value)``: one row per put or delete. Its AUTOINCREMENT key is
      the store-wide revision counter, and ``watch`` tails it. Nothing is pruned from it yet, so
      the file grows with every write; compaction (dropping changes that no watcher can still
      need, like a JetStream history limit) is future work.
    * ``events(seq, stream, time, data)``: the event log, indexed by ``(stream, seq)``.
    * ``PRAGMA user_version`` holds the schema version.
    * Blobs live in ``<db path>.blobs/sha256/<first two hex digits>/<digest>``.

Concurrency
    Each store object owns one connection, opened once. Writes run in ``BEGIN IMMEDIATE``
    transactions, which take SQLite's single write lock before reading, so a compare-and-set
    is atomic even against other processes. A writer that finds the lock taken waits up to the
    busy timeout (30 s by default), then fails with ``StoreUnavailableError``. All I/O runs
    inline on the event loop (see :mod:`accord.store.base`), so that wait blocks the loop; and
    because the connection is shared, no code here awaits while a transaction is open.

    ``watch`` polls the ``changes`` table every 50 ms to see other processes' writes; a write
    through the same store object wakes this object's watches at once.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import os
import re
import sqlite3
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from accord import errors
from accord.store import base

SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, revision INTEGER NOT NULL)",
    "CREATE TABLE changes (revision INTEGER PRIMARY KEY AUTOINCREMENT,"
    " key TEXT NOT NULL, op TEXT NOT NULL, value BLOB)",
    "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " stream TEXT NOT NULL, time REAL NOT NULL, data BLOB NOT NULL)",
    "CREATE INDEX events_by_stream ON events (stream, seq)",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# Constant statements, so that sqlite3's statement cache prepares each one once.
_GET = "SELECT value, revision FROM kv WHERE key = ?"
_REVISION = "SELECT revision FROM kv WHERE key = ?"
_LIST = "SELECT key, value, revision FROM kv WHERE key >= ? AND key < ? ORDER BY key"
_RECORD_CHANGE = "INSERT INTO changes (key, op, value) VALUES (?, ?, ?)"
_UPSERT = (
    "INSERT INTO kv (key, value, revision) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision"
)
_DELETE = "DELETE FROM kv WHERE key = ?"
_HEAD = "SELECT coalesce(max(revision), 0) FROM changes"
_CHANGES = (
    "SELECT revision, key, op, value FROM changes"
    " WHERE revision > ? AND revision <= ? AND key >= ? AND key < ? ORDER BY revision LIMIT ?"
)
_APPEND = "INSERT INTO events (stream, time, data) VALUES (?, ?, ?)"
_READ = "SELECT seq, time, data FROM events WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?"

_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL", "extra": "EXTRA"}
_POLL_SECONDS = 0.05
_WATCH_BATCH = 500
_DIGEST = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1024 * 1024


class SqliteStore:
    """The ``sqlite:///`` backend. Open it with :meth:`open`; close it when done."""

    def __init__(
        self, url: str, path: Path, connection: sqlite3.Connection, busy_timeout: float
    ) -> None:
        """Wrap an open connection; use :meth:`open` instead."""
        self.url = url
        self.path = path
        self._conn = connection
        self._busy_timeout = busy_timeout
        self._blobs = _BlobDir(path.with_name(path.name + ".blobs"))
        self._wakers: set[asyncio.Event] = set()
        self._closed = False

    @classmethod
    async def open(cls, url: str, *, busy_timeout: float = 30.0) -> SqliteStore:
        """Open (creating if needed) the database named by ``url``.

        Args:
            url: ``sqlite:///PATH``, optionally with ``?synchronous=normal|full|extra``.
            busy_timeout: seconds a write waits for another writer before it fails with
                ``StoreUnavailableError``.

        Raises:
            InputError: the URL is malformed.
            StoreError: the file cannot be opened or holds a newer schema.
        """
        path, synchronous = _parse_url(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.StoreError(f"cannot create the directory of {path}: {exc}") from exc
        with _translated(f"cannot open {url}", busy_timeout):
            connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        store = cls(url, path, connection, busy_timeout)
        try:
            with _translated(f"cannot open {url}", busy_timeout):
                # journal_mode is persistent; only the first opener needs the lock to set it.
                mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
                if mode != "wal":
                    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise errors.StoreError(f"{path}: cannot switch to WAL mode (still {mode!r})")
            with _translated(f"cannot open {url}", busy_timeout):
                connection.execute(f"PRAGMA synchronous = {synchronous}")
            with store._transaction() as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    for statement in _SCHEMA:
                        conn.execute(statement)
                elif version != SCHEMA_VERSION:
                    raise errors.StoreError(
                        f"{path} has schema version {version}; this accord reads {SCHEMA_VERSION}"
                    )
        except BaseException:
            connection.close()
            raise
        return store

    # KV

    async def get(self, key: str) -> base.Entry | None:
        base.check_key(key)
        with self._translated(f"cannot read {key!r}"):
            row = self._connection().execute(_GET, (key,)).fetchone()
        return None if row is None else base.Entry(key, row[0], row[1])

    async def create(self, key: str, value: bytes) -> int:
        _check_entry(key, value)
        with self._transaction() as conn:
            if conn.execute(_REVISION, (key,)).fetchone() is not None:
                raise errors.ConflictError(f"key {key!r} already exists")
            revision = _put(conn, key, value)
        self._wake()
        return revision

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        _check_entry(key, value)
        with self._transaction() as conn:
            _check_revision(conn, key, expected_revision)
            revision = _put(conn, key, value)
        self._wake()
        return revision

    async def put(self, key: str, value: bytes) -> int:
        _check_entry(key, value)
        with self._transaction() as conn:
            revision = _put(conn, key, value)
        self._wake()
        return revision

    async def delete(self, key: str, *, expected_revision: int | None = None) -> None:
        base.check_key(key)
        with self._transaction() as conn:
            if expected_revision is not None:
                _check_revision(conn, key, expected_revision)
            elif conn.execute(_REVISION, (key,)).fetchone() is None:
                return  # nothing to delete, and no revision spent on it
            conn.execute(_RECORD_CHANGE, (key, base.Op.DELETE.value, None))
            conn.execute(_DELETE, (key,))
        self._wake()

    async def list(self, prefix: str = "") -> list[base.Entry]:
        with self._translated(f"cannot list {prefix!r}"):
            rows = self._connection().execute(_LIST, _key_range(prefix)).fetchall()
        return [base.Entry(key, value, revision) for key, value, revision in rows]

    async def watch(
        self, prefix: str = "", *, exact: bool = False
    ) -> AsyncIterator[base.WatchEvent]:
        if exact:
            base.check_key(prefix)
        wake = asyncio.Event()
        self._wakers.add(wake)
        try:
            low, high = _key_range(prefix, exact=exact)
            initial, seen = self._snapshot(low, high)
            for key, value, revision in initial:
                yield base.WatchEvent(base.Op.PUT, key, value, revision)
            yield base.WatchEvent(base.Op.READY, "", None, seen)
            while not self._closed:
                wake.clear()  # before reading, so that a write after the read still wakes us
                with self._translated(f"cannot watch {prefix!r}"):
                    conn = self._connection()
                    head = conn.execute(_HEAD).fetchone()[0]
                    # Writers commit in revision order, so every revision <= head is visible.
                    rows = conn.execute(_CHANGES, (seen, head, low, high, _WATCH_BATCH)).fetchall()
                if head == seen:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
                    # lands just after the wake, and a watch being closed then never ends.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_POLL_SECONDS):
                            await wake.wait()
                    continue
                seen = rows[-1][0] if len(rows) == _WATCH_BATCH else head
                for revision, key, op, value in rows:
                    yield base.WatchEvent(base.Op(op), key, value, revision)
        finally:
            self._wakers.discard(wake)

    # Event log

    async def append(self, stream: str, data: bytes) -> int:
        base.check_stream(stream)
        with self._translated(f"cannot append to {stream!r}"):
            # A single statement in autocommit mode is its own (immediate) transaction.
            cursor = self._connection().execute(_APPEND, (stream, time.time(), data))
        return _rowid(cursor)

    async def read(
        self, stream: str, *, after: int = 0, limit: int | None = None
    ) -> builtins.list[base.Record]:
        base.check_stream(stream)
        if limit is not None and limit < 0:
            raise errors.InputError(f"limit must be >= 0, not {limit}")
        with self._translated(f"cannot read {stream!r}"):
            rows = (
                self._connection()
                .execute(_READ, (stream, after, -1 if limit is None else limit))
                .fetchall()
            )
        return [base.Record(stream, seq, data, at) for seq, at, data in rows]

    # Blobs

    async def put_blob(self, source: bytes | Path) -> str:
        self._check_open()
        if isinstance(source, Path):
            return self._blobs.put_file(source)
        return self._blobs.put_bytes(source)

    async def get_blob(self, digest: str, destination: Path) -> None:
        self._check_open()
        _check_digest(digest)
        self._blobs.copy_to(digest, destination)

    async def has_blob(self, digest: str) -> bool:
        self._check_open()
        _check_digest(digest)
        return self._blobs.path(digest).is_file()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake()  # watches see _closed and finish
        with self._translated("cannot close"):
            self._conn.close()

    # Helpers

    def _check_open(self) -> None:
        if self._closed:
            raise errors.StoreError(f"{self.url} is closed")

    def _connection(self) -> sqlite3.Connection:
        self._check_open()
        return self._conn

    def _translated(self, what: str) -> contextlib.AbstractContextManager[None]:
        return _translated(f"{self.url}: {what}", self._busy_timeout)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: holds the database's write lock from the first read."""
        conn = self._connection()
        with self._translated("write failed"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _snapshot(self, low: str, high: str) -> tuple[builtins.list[tuple[str, bytes, int]], int]:
        """The entries in ``[low, high)`` and the revision they are current at, read atomically."""
        conn = self._connection()
        with self._translated("cannot start a watch"):
            conn.execute("BEGIN")
            try:
                entries = conn.execute(_LIST, (low, high)).fetchall()
                head = conn.execute(_HEAD).fetchone()[0]
            finally:
                conn.execute("COMMIT")
        return entries, head

    def _wake(self) -> None:
        for wake in self._wakers:
            wake.set()


class _BlobDir:
    """Content-addressed files, each written under a temporary name, fsynced, then renamed.

    A streamed file's digest is known only at the end, so temporary files go to ``<root>/tmp``:
    the same file system as the blobs, which keeps the rename atomic.
    """

    def __init__(self, root: Path) -> None:
        self._root = root

    def path(self, digest: str) -> Path:
        return self._root / "sha256" / digest[:2] / digest

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if self.path(digest).is_file():
            return digest
        return self._put([data])

    def put_file(self, source: Path) -> str:
        try:
            with open(source, "rb") as reader:
                return self._put(iter(lambda: reader.read(_CHUNK), b""))
        except OSError as exc:  # only open() gets here: _put translates its own OSErrors
            raise errors.InputError(f"cannot read blob source {source}: {exc}") from exc

    def copy_to(self, digest: str, destination: Path) -> None:
        def fill(file: BinaryIO) -> Path:
            hasher = hashlib.sha256()
            while chunk := reader.read(_CHUNK):
                hasher.update(chunk)
                file.write(chunk)
            # A blob that rotted on disk must not replace the destination.
            if hasher.hexdigest() != digest:
                raise errors.StoreError(
                    f"blob {digest} is corrupt: it hashes to {hasher.hexdigest()}"
                )
            return destination

        try:
            with (
                open(self.path(digest), "rb") as reader,
                _os_errors(f"cannot copy blob {digest} to {destination}"),
            ):
                _write_atomically(destination.parent, fill)
        except FileNotFoundError as exc:
            raise errors.NotFoundError(f"no blob {digest}") from exc
        except OSError as exc:
            raise errors.StoreError(f"cannot read blob {digest}: {exc}") from exc

    def _put(self, chunks: Iterable[bytes]) -> str:
        hasher = hashlib.sha256()

        def fill(file: BinaryIO) -> Path | None:
            for chunk in chunks:
                hasher.update(chunk)
                file.write(chunk)
            target = self.path(hasher.hexdigest())
            return None if target.is_file() else target

        with _os_errors("cannot store a blob"):
            _write_atomically(self._root / "tmp", fill)
        return hasher.hexdigest()


def _parse_url(url: str) -> tuple[Path, str]:
    """``sqlite:///rel.db?synchronous=full`` -> (Path("rel.db"), "FULL")."""
    scheme = "sqlite:///"
    if not url.startswith(scheme):
        raise errors.InputError(f"invalid SQLite URL {url!r}: use sqlite:///PATH")
    location, _, query = url[len(scheme) :].partition("?")
    if not location or location == ":memory:":
        raise errors.InputError(f"invalid SQLite URL {url!r}: name a file (or use memory://)")
    try:
        options = urllib.parse.parse_qs(query, strict_parsing=bool(query))
    except ValueError as exc:
        raise errors.InputError(f"invalid query in SQLite URL {url!r}: {exc}") from exc
    unknown = sorted(set(options) - {"synchronous"})
    if unknown:
        raise errors.InputError(f"unknown option {unknown[0]!r} in SQLite URL {url!r}")
    synchronous = options.get("synchronous", ["normal"])[-1].lower()
    if synchronous not in _SYNCHRONOUS:
        raise errors.InputError(
            f"invalid synchronous={synchronous!r} in {url!r}: use {', '.join(_SYNCHRONOUS)}"
        )
    return Path(location), _SYNCHRONOUS[synchronous]


@contextlib.contextmanager
def _translated(what: str, busy_timeout: float) -> Iterator[None]:
    """Turn sqlite3's errors into the store's: a lock still held after the timeout is transient."""
    try:
        yield
    except sqlite3.Error as exc:
        if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise errors.StoreUnavailableError(
                f"{what}: the database stayed locked for {busy_timeout:g} s"
            ) from exc
        raise errors.StoreError(f"{what}: {exc}") from exc


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise errors.StoreError(f"{what}: {exc}") from exc


def _check_entry(key: str, value: bytes) -> None:
    base.check_key(key)
    base.check_value(key, value)


def _check_digest(digest: str) -> None:
    if not _DIGEST.fullmatch(digest):
        raise errors.InputError(f"invalid blob digest {digest!r}: expected 64 lowercase hex digits")


def _check_revision(conn: sqlite3.Connection, key: str, expected: int) -> None:
    row = conn.execute(_REVISION, (key,)).fetchone()
    if row is None:
        raise errors.ConflictError(f"key {key!r} does not exist (expected revision {expected})")
    if row[0] != expected:
        raise errors.ConflictError(f"key {key!r} is at revision {row[0]}, not {expected}")


def _put(conn: sqlite3.Connection, key: str, value: bytes) -> int:
    """Record a put in ``changes`` (which hands out the revision) and apply it to ``kv``."""
    revision = _rowid(conn.execute(_RECORD_CHANGE, (key, base.Op.PUT.value, value)))
    conn.execute(_UPSERT, (key, value, revision))
    return revision


def _rowid(cursor: sqlite3.Cursor) -> int:
    rowid = cursor.lastrowid
    if rowid is None:
        raise errors.StoreError("SQLite returned no row id for an insert")
    return rowid


def _key_range(prefix: str, *, exact: bool = False) -> tuple[str, str]:
    """Bounds ``[low, high)`` of the keys that start with ``prefix`` (or equal it, ``exact``).

    Key characters are all below DEL (0x7f), so ``prefix + DEL`` is above every key with the
    prefix, and above NUL, so ``key + NUL`` is above the key alone. A range rather than LIKE,
    because ``_`` is a key character and a LIKE wildcard.
    """
    return prefix, prefix + ("\x00" if exact else "\x7f")


def _write_atomically(directory: Path, fill: Callable[[BinaryIO], Path | None]) -> None:
    """Write a temporary file in ``directory`` with ``fill``, then move it where ``fill`` says.

    ``fill`` returns the final path, or ``None`` to drop the file (the blob exists already).
    The file is fsynced before the rename and the directory after it, so a crash leaves either
    nothing or the whole file under the final name.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as file:
            target = fill(file)
            if target is not None:
                file.flush()
                os.fsync(file.fileno())
        if target is None:
            Path(name).unlink()
            return
        if not target.parent.is_dir():
            target.parent.mkdir(parents=True, exist_ok=True)
            _fsync_directory(target.parent.parent)  # make the new directory's name durable
        Path(name).replace(target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
