"""The fleet store: NATS JetStream, shared by the control plane and every agent.

URL: ``nats://[user:password@]host[:port]?bucket=accord`` (a bare ``nats://user@host`` passes
a token). Query options:

``bucket``
    Name of the KV bucket, the event-log stream and the object store (``[A-Za-z0-9_-]+``,
    default ``accord``). One server can hold several accord stores under different buckets.
``creds``
    Path of a ``.creds`` file (JWT + nkey seed) for decentralised auth; needs the ``nkeys``
    package next to ``nats-py`` (without it, :meth:`NatsStore.open` raises ``InputError``).
``connect_timeout``
    Seconds :meth:`NatsStore.open` waits for a server (default 5); then it raises
    ``StoreUnavailableError``. Once connected, the client reconnects forever.
``timeout``
    Seconds one operation may take, including waiting for a lost connection to come back
    (default 5); then it raises ``StoreUnavailableError``.
``inbox``
    Subject prefix of the replies this client receives (default ``_INBOX``). A user whose
    permissions let it subscribe only to its own prefix (see :mod:`accord.store.nats_auth`)
    must connect with that prefix.
``heartbeat``
    Seconds between a watch's idle heartbeats (default 1); three missed ones replace the
    consumer. The server sends one per watch per interval, so a large fleet's agents may
    prefer 5 (100,000 agents: 20,000 heartbeats/s instead of 100,000, see
    docs/benchmarks.md); a dead watch is then noticed in ~15 s instead of ~3 s.
``history``
    Revisions kept per key, 1 to 64 (default 16), used when the bucket is created: more costs
    disk (up to ``history`` values per key), fewer shortens what a cut-off watch can catch up
    on (see *Watch*).

There is no ``sync=`` option: how often the server fsyncs is the server's setting (see
*Durability*). The ``url`` attribute shows the URL with the password or token masked.

Layout
    * KV: the JetStream KV bucket ``<bucket>`` (stream ``KV_<bucket>``, subject
      ``$KV.<bucket>.<key>``), a normal KV bucket that ``nats kv`` can inspect. A key's revision
      is the stream sequence of its message, so revisions are global per bucket and strictly
      increasing, as :mod:`accord.store.base` promises. A delete writes a ``KV-Operation: DEL``
      marker. Old revisions are kept up to ``history`` per key; markers are not compacted yet.
    * Event log: the stream ``EVENTS_<bucket>`` on subjects ``<bucket>.events.<stream>``; a
      record's sequence number is its stream sequence, so it increases across all streams of the
      store. ``read`` uses batched direct gets (one round trip per 1000 records).
    * Blobs: the object store ``<bucket>`` (stream ``OBJ_<bucket>``, 128 KiB chunks), one
      object per blob named by its sha256 hex digest. ``put_blob`` hashes first and skips blobs
      already stored. ``get_blob`` fetches the chunks with batched direct gets (8 MiB per round
      trip; nats-py's consumer-based ``get`` is 3-4 times slower) into a temporary file next to
      the destination, checks the sha256 against the name, then renames the file into place.

Compare-and-set
    ``create`` publishes with ``Nats-Expected-Last-Subject-Sequence: 0``; over a deleted key it
    retries once, expecting the delete marker's sequence. ``update`` and ``delete`` read the key
    first (one direct get), refuse at once if it is missing, deleted or at another revision, and
    publish expecting that revision, so that the server refuses the write if anything came in
    between. The read is not redundant: JetStream alone would accept a write that expects the
    sequence of a delete marker, reviving a deleted key. A plain ``delete`` is the same
    compare-and-set on whatever revision it finds, so deleting a missing key writes nothing.

Watch
    Each watch is an ordered push consumer on the KV stream (flow control, an idle heartbeat
    every ``heartbeat`` seconds, memory storage, a 5 s inactivity threshold so a closed watch
    frees its slot soon even if the explicit delete is lost). It starts with "last value per
    subject" and holds those values until it has as many as the consumer had pending when it
    was made (or nothing is pending any more), sends them and ``READY`` (whose revision is the
    newest one in the snapshot, 0 if empty), then forwards puts and deletes (``DEL``/``PURGE``
    markers). Events wait in memory until the caller takes them, as with the other backends:
    flow control does not slow the server for a caller that reads slowly.

    The watch replaces its consumer after a reconnect (at once, not after missed heartbeats:
    about 0.5 s after a server restart), a gap in the consumer sequence, a consumer error or
    three heartbeats of silence: before ``READY`` from scratch, after it from the stream
    sequence after the last one taken in, so nothing is repeated or skipped. A key overwritten
    more than ``history`` times while a watch is cut off (a long network partition, say) leaves
    the watch its newest value, not the overwritten ones. Prefixes that end in ``.`` become
    subject filters (``a.b.`` -> ``$KV.<bucket>.a.b.>``); other prefixes filter the nearest
    such subject client-side; an exact watch filters the key's own subject. So a fleet of
    agents each watching ``fleet.desired.<node>`` exactly costs the server one delivery per
    change, where prefix watches would cost one per agent (1,000 agents, 1,000 publishes:
    10^3 instead of 10^6 messages). ``list`` is a watch closed at ``READY``.

Durability
    A write returns when the server has stored it and acknowledged it. The server writes
    through the operating system at once, so ``kill -9`` of the server, or of any client, loses
    no acknowledged write; but by default it fsyncs only every two minutes, so a power loss or
    kernel crash can lose the writes acknowledged in that window (JetStream recovers to an
    earlier, consistent state). This is accord's default, the same class of promise as the
    SQLite store's default ``synchronous=normal``. For power-loss durability run the server
    with ``jetstream { sync_interval: always }`` (``NatsServer(sync_always=True)`` in
    :mod:`accord.store.nats_server`); sequential puts then drop from ~5,000/s to ~1,300/s
    on a 2-core machine.

Failures
    Timeouts, "no responders" (JetStream not up) and a lost connection raise
    ``StoreUnavailableError``; other JetStream errors raise ``StoreError``. An operation that
    starts while the client knows it is disconnected waits up to ``timeout`` for the connection
    to come back, then fails without having sent anything. A write that was under way when the
    connection dropped may still be applied: the server may have it already, or nats-py sends
    it from its buffer after reconnecting. So after a ``StoreUnavailableError`` a write's fate
    is unknown: a retried ``put`` or compare-and-set is safe, a retried ``create`` may find its
    own first attempt (``ConflictError``). A request the user's permissions forbid (see
    :mod:`accord.store.nats_auth`) fails at once with ``StoreError`` ("permission denied")
    instead of waiting out ``timeout``: the server says so on the connection, not in a reply.
    The one denial that is expected, deleting a closed watch's consumer, is logged at debug.

Server requirements
    nats-server 2.11 or later with JetStream, and ``max_payload`` of at least 1 MiB + 4 KiB
    (the server's default is exactly 1 MiB, too small for a 1 MiB value and its headers):
    :meth:`NatsStore.open` refuses a server without these. The store creates its streams with
    room for 1,000,000 consumers, so the server's default limit of 1000 does not cap the number
    of watches. Single server (replicas 1) only for now: direct gets may be answered by a
    lagging replica in a cluster.

Keys
    Besides :func:`accord.store.base.check_key`, a key must not contain an empty level
    (``a..b``): it is no valid NATS subject.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import AsyncGenerator, Callable, Iterator
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api
from nats.js.object_store import ObjectStore

from accord import errors
from accord.store import base
from accord.store.nats_msg import (
    _api_reply,
    _ApiError,
    _describe,
    _header,
    _is_delete,
    _sequence,
    _status,
    _time,
)
from accord.store.nats_url import _Options, _parse_url
from accord.store.nats_watch import _Watch

_log = logging.getLogger(__name__)

_DIGEST = re.compile(r"[0-9a-f]{64}")
_DENIED_PUBLISH = re.compile(r'permissions violation for publish to "([^"]+)"')
_MIN_VERSION = (2, 11)
_HEADROOM = 4096  # bytes of subject and headers next to a maximal value
_MAX_CONSUMERS = 1_000_000
_READ_BATCH = 1000
_READ_BYTES = 8 * 1024 * 1024

_EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
_WRONG_LAST = frozenset({10071, 10164})  # JSStreamWrongLastSequence(Constant)Err
_STREAM_NOT_FOUND = 10059
_STREAM_IN_USE = 10058


class NatsStore:
    """The ``nats://`` backend. Open it with :meth:`open`; close it when done."""

    def __init__(self, options: _Options, connection: Client) -> None:
        """Wrap an unconnected client; use :meth:`open` instead."""
        self.url = options.url
        self.bucket = options.bucket
        self._options = options
        self._nc = connection
        self._heartbeat = options.heartbeat
        self._kv_stream = f"KV_{options.bucket}"
        self._kv_prefix = f"$KV.{options.bucket}."
        self._events_stream = f"EVENTS_{options.bucket}"
        self._events_prefix = f"{options.bucket}.events."
        self._obs_stream = f"OBJ_{options.bucket}"
        self._obs: ObjectStore | None = None
        self._inbox = ""
        # Requests under way: token → (subject, lowercased as nats-py reports denials; replies).
        self._replies: dict[str, tuple[str, asyncio.Queue[Msg | errors.StoreError]]] = {}
        self._next_token = 0
        self._connected = asyncio.Event()
        self._watches: set[_Watch] = set()
        self._last_error: BaseException | None = None
        self._refused: BaseException | None = None  # a login refusal seen while connecting
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> NatsStore:
        """Connect to the server named by ``url`` and create the bucket and streams if needed.

        Args:
            url: ``nats://HOST[:PORT]`` with the options of the module docstring.

        Raises:
            InputError: the URL is malformed.
            StoreUnavailableError: no server answered within ``connect_timeout``.
            StoreError: the server refused the credentials, is too old or misconfigured.
        """
        options = _parse_url(url)
        if options.creds is not None:
            if not options.creds.is_file():
                raise errors.InputError(f"{options.url}: no credentials file {options.creds}")
            if importlib.util.find_spec("nkeys") is None:
                raise errors.InputError(
                    f"{options.url}: creds= needs the nkeys package (pip install 'nats-py[nkeys]')"
                )
        store = cls(options, Client())
        await store._connect()
        try:
            await store._prepare()
        except BaseException:
            await store._abandon()
            raise
        return store

    # KV

    async def get(self, key: str) -> base.Entry | None:
        _check_key(key)
        last = await self._last(key)
        if last is None or _is_delete(last):
            return None
        return base.Entry(key, last.data, _sequence(last))

    async def create(self, key: str, value: bytes) -> int:
        _check_entry(key, value)
        revision = await self._write(key, value, expected=0)
        if revision is not None:
            return revision
        # The subject has messages: either a live value, or a delete marker to write over.
        last = await self._last(key)
        if last is None or not _is_delete(last):
            raise errors.ConflictError(f"key {key!r} already exists")
        revision = await self._write(key, value, expected=_sequence(last))
        if revision is None:
            raise errors.ConflictError(f"key {key!r} was created by someone else meanwhile")
        return revision

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        _check_entry(key, value)
        await self._check_revision(key, expected_revision)
        revision = await self._write(key, value, expected=expected_revision)
        if revision is None:
            raise errors.ConflictError(f"key {key!r} changed after revision {expected_revision}")
        return revision

    async def put(self, key: str, value: bytes) -> int:
        _check_entry(key, value)
        revision = await self._write(key, value)
        assert revision is not None, "an unconditional write cannot lose a compare-and-set"
        return revision

    async def delete(self, key: str, *, expected_revision: int | None = None) -> None:
        _check_key(key)
        while True:
            if expected_revision is not None:
                await self._check_revision(key, expected_revision)
                current = expected_revision
            else:
                found = await self._current(key)
                if found is None:
                    return  # nothing to delete, and no marker to confuse watchers
                current = found
            headers = {"KV-Operation": "DEL"}
            if await self._write(key, b"", expected=current, headers=headers) is not None:
                return
            if expected_revision is not None:
                raise errors.ConflictError(f"key {key!r} changed after revision {current}")
            # Someone wrote the key between our read and our delete: delete what is there now.

    async def list(self, prefix: str = "") -> builtins.list[base.Entry]:
        entries: builtins.list[base.Entry] = []
        async with contextlib.aclosing(self.watch(prefix)) as events:
            async for event in events:
                if event.op is base.Op.READY:
                    break
                assert event.value is not None
                entries.append(base.Entry(event.key, event.value, event.revision))
        return sorted(entries, key=lambda entry: entry.key)

    async def watch(
        self, prefix: str = "", *, exact: bool = False
    ) -> AsyncGenerator[base.WatchEvent, None]:
        self._check_open()
        if exact:
            _check_key(prefix)
        watch = _Watch(self, prefix, exact=exact)
        self._watches.add(watch)
        try:
            await watch.start()
            while (item := await watch.events.get()) is not None:
                if isinstance(item, errors.StoreError):
                    what = f"{self.url}: the watch of {prefix!r} failed: {item}"
                    raise errors.StoreError(what) from item
                yield item
        finally:
            self._watches.discard(watch)
            await watch.close()

    # Event log

    async def append(self, stream: str, data: bytes) -> int:
        base.check_stream(stream)
        headers = {"Nats-Expected-Stream": self._events_stream}
        ack = await self._call(
            self._events_prefix + stream, bytes(data), headers, f"cannot append to {stream!r}"
        )
        return int(ack["seq"])

    async def read(
        self, stream: str, *, after: int = 0, limit: int | None = None
    ) -> builtins.list[base.Record]:
        self._check_open()
        base.check_stream(stream)
        if limit is not None and limit < 0:
            raise errors.InputError(f"limit must be >= 0, not {limit}")
        records: builtins.list[base.Record] = []
        start = max(after, 0) + 1
        while limit is None or len(records) < limit:
            batch = _READ_BATCH if limit is None else min(_READ_BATCH, limit - len(records))
            request = {
                "seq": start,
                "next_by_subj": self._events_prefix + stream,
                "batch": batch,
                "max_bytes": _READ_BYTES,
            }
            replies = await self._exchange(
                f"$JS.API.DIRECT.GET.{self._events_stream}",
                json.dumps(request).encode(),
                what=f"cannot read {stream!r}",
                until=lambda msg: _status(msg) is not None,
            )
            *found, end = replies
            records += (base.Record(stream, _sequence(m), m.data, _time(m)) for m in found)
            status = _status(end)
            if status == "404":
                break  # nothing (more) after start
            if status != "204":
                raise errors.StoreError(f"{self.url}: cannot read {stream!r}: {_describe(end)}")
            if not found or _header(end, "Nats-Num-Pending") in (None, "0"):
                break
            start = records[-1].seq + 1
        return records

    # Blobs

    async def put_blob(self, source: bytes | Path) -> str:
        self._check_open()
        data: bytes | io.BufferedReader
        if isinstance(source, Path):
            digest = _hash_file(source)
        else:
            data = bytes(source)
            digest = hashlib.sha256(data).hexdigest()
        if await self.has_blob(digest):
            return digest
        obs = self._object_store()
        with contextlib.ExitStack() as stack:
            if isinstance(source, Path):
                data = stack.enter_context(_open_source(source))
            with self._translated(f"cannot store blob {digest}"):
                await self._ready()
                # nats-py publishes chunk by chunk, each bounded by ``timeout``.
                info = await obs.put(digest, data)
                if info.digest is None or _object_digest(info.digest) != digest:
                    await obs.delete(digest)
                    raise errors.InputError(
                        f"the blob source changed while it was stored ({digest})"
                    )
        return digest

    async def get_blob(self, digest: str, destination: Path) -> None:
        self._check_open()
        _check_digest(digest)
        info = await self._object_info(digest)
        if info is None:
            raise errors.NotFoundError(f"no blob {digest}")
        if info.digest is None or _object_digest(info.digest) != digest:
            raise errors.StoreError(f"blob {digest} is corrupt: the store holds {info.digest}")
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
        except OSError as exc:
            raise errors.StoreError(f"cannot write blob to {destination}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as file:
                await self._download(digest, info, file)
            Path(name).replace(destination)
        except OSError as exc:
            Path(name).unlink(missing_ok=True)
            raise errors.StoreError(f"cannot write blob {digest} to {destination}: {exc}") from exc
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise

    async def has_blob(self, digest: str) -> bool:
        self._check_open()
        _check_digest(digest)
        return await self._object_info(digest) is not None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        watches = builtins.list(self._watches)
        for watch in watches:
            watch.end()
        for watch in watches:
            await watch.close()
        await self._nc.close()

    async def destroy(self) -> None:
        """Delete the bucket, the event log and the object store, then close. For tests."""
        for stream in (self._kv_stream, self._events_stream, self._obs_stream):
            reply = await self._call(f"$JS.API.STREAM.DELETE.{stream}", b"", None, "cannot delete")
            if not reply.get("success"):
                raise errors.StoreError(f"{self.url}: could not delete {stream}: {reply}")
        await self.close()

    # Connection

    async def _connect(self) -> None:
        options = self._options
        try:
            async with asyncio.timeout(options.connect_timeout):
                await self._nc.connect(
                    servers=[options.server],
                    name="accord",
                    # Never give up: with a limit, watches die silently once it is reached.
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,  # type: ignore[arg-type]
                    connect_timeout=min(2.0, options.connect_timeout),  # type: ignore[arg-type]
                    # A dead link (no RST, e.g. a NAT that forgot us) is noticed in ~15 s.
                    ping_interval=5,
                    max_outstanding_pings=3,
                    inbox_prefix=options.inbox,
                    user=options.user,
                    password=options.password,
                    token=options.token,
                    user_credentials=None if options.creds is None else str(options.creds),
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                )
        except TimeoutError as exc:
            await self._abandon()
            cause = self._last_error
            if self._refused is not None:
                refusal = self._refused
                raise errors.StoreError(
                    f"{self.url}: the server refused us: {refusal}"
                ) from refusal
            reason = "" if cause is None else f" (last error: {cause})"
            raise errors.StoreUnavailableError(
                f"{self.url}: no server within {options.connect_timeout:g} s{reason}"
            ) from exc
        except (OSError, nats.errors.Error) as exc:
            await self._abandon()
            raise errors.StoreError(f"{self.url}: cannot connect: {exc}") from exc
        self._connected.set()

    async def _abandon(self) -> None:
        """Close a store that failed to open."""
        self._closed = True
        await self._nc.close()

    async def _prepare(self) -> None:
        """Check the server, start the reply inbox, create the streams that are missing."""
        version = self._nc.connected_server_version
        if (version.major, version.minor) < _MIN_VERSION:
            raise errors.StoreError(
                f"{self.url}: nats-server {version} is too old; accord needs 2.11 or later"
            )
        if self._nc.max_payload < base.MAX_VALUE_BYTES + _HEADROOM:
            raise errors.StoreError(
                f"{self.url}: the server's max_payload is {self._nc.max_payload} bytes; accord "
                f"needs {base.MAX_VALUE_BYTES + _HEADROOM} (set max_payload: 2MB)"
            )
        self._inbox = self._nc.new_inbox() + "."
        with self._translated("cannot subscribe"):
            # Only answers to our own requests arrive here: no limit (0) on what may queue up.
            await self._nc.subscribe(
                self._inbox + "*", cb=self._on_reply, pending_msgs_limit=0, pending_bytes_limit=0
            )
        streams = [
            api.StreamConfig(  # a KV bucket, as nats-py and the nats CLI make them
                name=self._kv_stream,
                subjects=[self._kv_prefix + ">"],
                retention=api.RetentionPolicy.LIMITS,
                max_msgs_per_subject=self._options.history,
                max_consumers=_MAX_CONSUMERS,
                discard=api.DiscardPolicy.NEW,
                storage=api.StorageType.FILE,
                num_replicas=1,
                allow_rollup_hdrs=True,
                deny_delete=True,
                allow_direct=True,
            ),
            api.StreamConfig(
                name=self._events_stream,
                subjects=[self._events_prefix + "*"],
                retention=api.RetentionPolicy.LIMITS,
                max_consumers=_MAX_CONSUMERS,
                storage=api.StorageType.FILE,
                num_replicas=1,
                deny_delete=True,
                deny_purge=True,
                allow_direct=True,
            ),
            api.StreamConfig(  # an object store, as nats-py and the nats CLI make them
                name=self._obs_stream,
                subjects=[f"$O.{self.bucket}.C.>", f"$O.{self.bucket}.M.>"],
                storage=api.StorageType.FILE,
                num_replicas=1,
                discard=api.DiscardPolicy.NEW,
                allow_rollup_hdrs=True,
                allow_direct=True,
            ),
        ]
        for config in streams:
            found = await self._ensure_stream(config)
            if not found.get("allow_direct"):  # made by other tools: reads would go unanswered
                raise errors.StoreError(f"{self.url}: stream {config.name} lacks allow_direct")
        js = self._nc.jetstream(timeout=self._options.timeout)
        self._obs = ObjectStore(name=self.bucket, stream=self._obs_stream, js=js)

    async def _ensure_stream(self, config: api.StreamConfig) -> dict[str, Any]:
        """The stream's configuration, after creating it if it does not exist."""
        name = config.name
        what = f"cannot set up stream {name}"
        info = await self._exchange(f"$JS.API.STREAM.INFO.{name}", b"", what=what)
        with self._translated(what):
            try:
                return _api_reply(info[0])["config"]  # type: ignore[no-any-return]
            except _ApiError as exc:
                if exc.err_code != _STREAM_NOT_FOUND:
                    raise
            request = json.dumps(config.as_dict()).encode()
            created = await self._exchange(f"$JS.API.STREAM.CREATE.{name}", request, what=what)
            try:
                return _api_reply(created[0])["config"]  # type: ignore[no-any-return]
            except _ApiError as exc:
                if exc.err_code != _STREAM_IN_USE:
                    raise
            # Another process created it between our two requests.
            info = await self._exchange(f"$JS.API.STREAM.INFO.{name}", b"", what=what)
            return _api_reply(info[0])["config"]  # type: ignore[no-any-return]

    async def _on_reply(self, msg: Msg) -> None:
        waiting = self._replies.get(msg.subject[len(self._inbox) :])
        if waiting is not None:
            waiting[1].put_nowait(msg)

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = exc
        if _is_refusal(exc):
            self._refused = exc  # kept: a later reset of the same attempt must not hide it
        if self._nc.is_connecting or self._nc.is_reconnecting:
            _log.debug("%s: %s", self.url, exc)  # expected while a server restarts
            # nats-py 2.16 does not close the connection of a failed (re)connect attempt (one
            # the server accepted, then dropped); its StreamWriter warns when collected. The
            # next attempt replaces it, so close it here.
            transport = getattr(self._nc, "_transport", None)
            if self._nc.is_connecting and transport is not None:
                transport.close()
        elif isinstance(exc, OSError | nats.errors.StaleConnectionError):
            _log.debug("%s: %s", self.url, exc)  # the connection dropped: we reconnect
        elif (denied := _denied_subject(exc)) is not None:
            self._deny(denied, exc)
        else:
            _log.warning("%s: %s", self.url, exc)

    def _deny(self, subject: str, exc: Exception) -> None:
        """Fail the requests to ``subject`` at once: the server will not answer them."""
        if subject.startswith("$js.api.consumer.delete."):
            # A node's credentials may not delete consumers (nats_auth); its closed watch
            # vanishes after the inactivity threshold instead.
            _log.debug("%s: %s", self.url, exc)
            return
        _log.warning("%s: %s", self.url, exc)
        for requested, queue in self._replies.values():
            if requested == subject:
                queue.put_nowait(errors.StoreError(f"permission denied: {exc}"))

    async def _on_disconnected(self) -> None:
        self._connected.clear()
        if not self._closed:
            _log.info("%s: disconnected; reconnecting", self.url)

    async def _on_reconnected(self) -> None:
        _log.info("%s: reconnected", self.url)
        self._connected.set()
        for watch in self._watches:
            watch.kick()

    async def _on_closed(self) -> None:
        if not self._closed:  # nats-py gave up (it should not, with unlimited reconnects)
            _log.error("%s: the connection closed: %s", self.url, self._last_error)
            for watch in builtins.list(self._watches):
                watch.fail(errors.StoreError(f"the connection closed: {self._last_error}"))

    # Requests

    async def _exchange(
        self,
        subject: str,
        payload: bytes,
        *,
        headers: dict[str, str] | None = None,
        what: str,
        until: Callable[[Msg], bool] = lambda _: True,
    ) -> builtins.list[Msg]:
        """Send a request; collect replies up to the first that ``until`` accepts.

        Our own request loop rather than nats-py's ``request``: it uses ``asyncio.timeout``
        (``wait_for`` on Python 3.11 can swallow a cancellation), and it does not queue
        requests while disconnected, so a request that times out was never sent later.
        """
        self._check_open()
        self._next_token += 1
        token = str(self._next_token)
        queue: asyncio.Queue[Msg | errors.StoreError] = asyncio.Queue()
        self._replies[token] = (subject.lower(), queue)

        async def reply() -> Msg:
            answer = await queue.get()
            if isinstance(answer, errors.StoreError):
                raise errors.StoreError(f"{self.url}: {what}: {answer}") from answer
            return answer

        try:
            with self._translated(what):
                async with asyncio.timeout(self._options.timeout):
                    await self._ready()
                    await self._nc.publish(
                        subject, payload, reply=self._inbox + token, headers=headers
                    )
                    replies = [await reply()]
                    while not until(replies[-1]) and _status(replies[-1]) != "503":
                        replies.append(await reply())
        finally:
            del self._replies[token]
        if _status(replies[-1]) == "503":
            raise errors.StoreUnavailableError(
                f"{self.url}: {what}: no responders (is JetStream up and the bucket there?)"
            )
        return replies

    async def _call(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, what: str
    ) -> dict[str, Any]:
        """A JetStream API request or publish: its JSON answer; errors raised as StoreErrors."""
        [reply] = await self._exchange(subject, payload, headers=headers, what=what)
        with self._translated(what):
            return _api_reply(reply)

    async def _ready(self) -> None:
        """Wait up to ``timeout`` for a lost connection to come back (TimeoutError if not)."""
        if self._nc.is_closed:
            raise errors.StoreError(f"{self.url}: the connection is closed")
        if not self._nc.is_connected:
            async with asyncio.timeout(self._options.timeout):
                while not self._nc.is_connected:
                    # nats-py may know of the disconnect before our callback has run: without
                    # this, a stale "connected" would let a request into the reconnect buffer,
                    # to be sent late, after the caller was told it failed.
                    self._connected.clear()
                    await self._connected.wait()

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Turn nats-py's errors and our timeouts into the store's."""
        try:
            yield
        except TimeoutError as exc:  # also nats.errors.TimeoutError
            state = "" if self._nc.is_connected else " (not connected)"
            raise errors.StoreUnavailableError(
                f"{self.url}: {what}: no answer within {self._options.timeout:g} s{state}"
            ) from exc
        except _ApiError as exc:
            if exc.code == 503:
                raise errors.StoreUnavailableError(f"{self.url}: {what}: {exc}") from exc
            raise errors.StoreError(f"{self.url}: {what}: {exc}") from exc
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.OutboundBufferLimitError,
            nats.errors.StaleConnectionError,
            nats.errors.NoRespondersError,
            nats.js.errors.NoStreamResponseError,
            nats.js.errors.ServiceUnavailableError,
        ) as exc:
            if self._closed:
                raise errors.StoreError(f"{self.url} is closed") from exc
            raise errors.StoreUnavailableError(f"{self.url}: {what}: {exc}") from exc
        except nats.errors.Error as exc:
            raise errors.StoreError(f"{self.url}: {what}: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise errors.StoreError(f"{self.url} is closed")

    def _object_store(self) -> ObjectStore:
        assert self._obs is not None, "open() sets up the object store"
        return self._obs

    # KV helpers

    async def _last(self, key: str) -> Msg | None:
        """The last message on the key's subject (a value or a delete marker), or None."""
        [reply] = await self._exchange(
            f"$JS.API.DIRECT.GET.{self._kv_stream}.{self._kv_prefix}{key}",
            b"",
            what=f"cannot read {key!r}",
        )
        status = _status(reply)
        if status == "404":
            return None
        if status is not None:
            raise errors.StoreError(f"{self.url}: cannot read {key!r}: {_describe(reply)}")
        return reply

    async def _current(self, key: str) -> int | None:
        """The revision of the key's live value, or None if it is missing or deleted."""
        last = await self._last(key)
        return None if last is None or _is_delete(last) else _sequence(last)

    async def _check_revision(self, key: str, expected: int) -> None:
        current = await self._current(key)
        if current is None:
            raise errors.ConflictError(f"key {key!r} does not exist (expected revision {expected})")
        if current != expected:
            raise errors.ConflictError(f"key {key!r} is at revision {current}, not {expected}")

    async def _write(
        self,
        key: str,
        value: bytes,
        *,
        expected: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> int | None:
        """Publish to the key's subject: the new revision, or None if ``expected`` was stale."""
        headers = dict(headers or {})
        if expected is not None:
            headers[_EXPECTED_LAST] = str(expected)
        what = f"cannot write {key!r}"
        [reply] = await self._exchange(
            self._kv_prefix + key, bytes(value), headers=headers or None, what=what
        )
        with self._translated(what):
            try:
                ack = _api_reply(reply)
            except _ApiError as exc:
                if exc.err_code in _WRONG_LAST:
                    return None
                raise
        return int(ack["seq"])

    # Blob helpers

    async def _object_info(self, digest: str) -> api.ObjectInfo | None:
        """The object store's description of a blob, or None if there is none."""
        what = f"cannot look up blob {digest}"
        name = base64.urlsafe_b64encode(digest.encode()).decode()
        [reply] = await self._exchange(
            f"$JS.API.DIRECT.GET.{self._obs_stream}.$O.{self.bucket}.M.{name}", b"", what=what
        )
        if _status(reply) == "404":
            return None
        if _status(reply) is not None:
            raise errors.StoreError(f"{self.url}: {what}: {_describe(reply)}")
        try:
            info = api.ObjectInfo.from_response(json.loads(reply.data))
        except (ValueError, TypeError) as exc:
            raise errors.StoreError(f"{self.url}: {what}: unreadable description") from exc
        return None if info.deleted else info

    async def _download(self, digest: str, info: api.ObjectInfo, file: io.BufferedWriter) -> None:
        """Write a blob's chunks into ``file`` (batched direct gets) and check its digest."""
        subject = f"$O.{self.bucket}.C.{info.nuid}"
        hasher = hashlib.sha256()
        chunks, size, start = 0, 0, 1
        while chunks < (info.chunks or 0):
            request = {
                "seq": start,
                "next_by_subj": subject,
                "batch": _READ_BATCH,
                "max_bytes": _READ_BYTES,
            }
            *found, end = await self._exchange(
                f"$JS.API.DIRECT.GET.{self._obs_stream}",
                json.dumps(request).encode(),
                what=f"cannot read blob {digest}",
                until=lambda msg: _status(msg) is not None,
            )
            for msg in found:
                file.write(msg.data)
                hasher.update(msg.data)
                size += len(msg.data)
            chunks += len(found)
            if not found or _status(end) != "204":
                break
            start = _sequence(found[-1]) + 1
        if chunks != (info.chunks or 0) or size != (info.size or 0):
            raise errors.StoreError(
                f"blob {digest} is corrupt: {chunks} chunks of {size} bytes, "
                f"not {info.chunks} of {info.size}"
            )
        if hasher.hexdigest() != digest:
            raise errors.StoreError(f"blob {digest} is corrupt: it hashes to {hasher.hexdigest()}")

    def _kv_filter(self, prefix: str) -> str:
        """The narrowest subject filter that holds every key starting with ``prefix``."""
        head = prefix[: prefix.rfind(".") + 1]
        if head and not _is_subject_path(head[:-1]):
            head = ""  # no key can match; the client-side filter sorts that out
        return f"{self._kv_prefix}{head}>"


def _is_subject_path(text: str) -> bool:
    return base.KEY_PATTERN.fullmatch(text) is not None and ".." not in text


def _check_key(key: str) -> None:
    base.check_key(key)
    if ".." in key:
        raise errors.InputError(f"invalid store key {key!r}: NATS keys have no empty levels ('..')")


def _check_entry(key: str, value: bytes) -> None:
    _check_key(key)
    base.check_value(key, value)


def _check_digest(digest: str) -> None:
    if not _DIGEST.fullmatch(digest):
        raise errors.InputError(f"invalid blob digest {digest!r}: expected 64 lowercase hex digits")


def _object_digest(stored: str) -> str:
    """The hex digest from an object's ``SHA-256=<base64url>`` digest."""
    encoded = stored.split("=", 1)[1] if stored.upper().startswith("SHA-256=") else stored
    try:
        return base64.urlsafe_b64decode(encoded).hex()
    except ValueError:
        return ""


def _open_source(path: Path) -> io.BufferedReader:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise errors.InputError(f"cannot read blob source {path}: {exc}") from exc


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    try:
        with open(path, "rb") as reader:
            while chunk := reader.read(1024 * 1024):
                hasher.update(chunk)
    except OSError as exc:
        raise errors.InputError(f"cannot read blob source {path}: {exc}") from exc
    return hasher.hexdigest()


def _denied_subject(exc: BaseException) -> str | None:
    """The subject of a publish the server refused (lowercased, as nats-py reports it)."""
    found = _DENIED_PUBLISH.search(str(exc).lower())
    return None if found is None else found.group(1)


def _is_refusal(exc: BaseException) -> bool:
    """A refused login (nats-py reports it during connect as a plain Error, too)."""
    return isinstance(exc, nats.errors.AuthorizationError) or (
        "authorization violation" in str(exc).lower()
    )
