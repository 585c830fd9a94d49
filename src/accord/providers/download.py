"""Fetch a blob by URL and sha256 into the content-addressed cache.

Contract of :func:`fetch`: on return the blob is in the cache, verified; otherwise it raised a
classified error. Interrupted HTTP downloads keep their ``.partial`` file so that the engine's
retry resumes with a ``Range`` request instead of starting over. Concurrent fetches of one digest,
in this process or another, take turns on an exclusive ``flock`` of the partial file, so their
writes never interleave; the later one finds the blob cached and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import unquote, urlsplit

from accord import errors
from accord.providers import fsutil
from accord.providers.base import Context
from accord.providers.httputil import retry_after_seconds

if TYPE_CHECKING:
    import httpx

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0  # seconds without a byte before a download counts as stalled
LOCK_POLL = 0.1


async def fetch(ctx: Context, url: str, sha256: str) -> Path:
    """Ensure the blob ``sha256`` is in ``ctx.cache``, fetching it from ``url``; return its path.

    ``url`` is ``http(s)://…``, ``file:///abs/path`` or a path (relative to ``ctx.base_dir``).
    Raises ``TransientError`` for what a retry may fix (network, 5xx, 429) and
    ``PermanentError`` otherwise (4xx, digest mismatch, missing source, unknown scheme).
    """
    cache = ctx.cache
    if cache.has(sha256):
        return cache.path(sha256)
    try:
        scheme = urlsplit(url).scheme
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise errors.PermanentError(f"{url}: {exc}") from exc
    if scheme not in ("http", "https", "file", ""):
        raise errors.PermanentError(f"{url}: unsupported scheme {scheme!r}")
    partial = cache.partial(sha256)
    try:
        partial.parent.mkdir(parents=True, exist_ok=True)
        async with _claimed(partial) as handle:
            if cache.has(sha256):  # another fetch finished it while we waited for the lock
                partial.unlink()
                return cache.path(sha256)
            if scheme in ("http", "https"):
                await _download(ctx, url, handle)
            else:
                await asyncio.to_thread(_copy, _local_source(ctx, url), handle)
                size = handle.seek(0, os.SEEK_END)
                ctx.progress(size, size)
            handle.flush()
            os.fsync(handle.fileno())  # commit() renames; the cache entry must survive a crash
            return await asyncio.to_thread(cache.commit, partial, sha256)
    except OSError as exc:
        raise fsutil.os_error(exc, "write", partial) from exc


async def _download(ctx: Context, url: str, handle: BinaryIO) -> None:
    """Stream ``url`` into ``handle``, resuming after the bytes it already holds."""
    import httpx  # here, not at the top: ~150 ms of import that most runs never need

    done = handle.seek(0, os.SEEK_END)
    # identity + raw bytes: the digest is of the bytes as served (a .tar.gz stays gzipped), and
    # byte ranges only line up with an unencoded body.
    headers = {"Accept-Encoding": "identity"}
    if done:
        headers["Range"] = f"bytes={done}-"
    timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    try:
        async with (
            httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            if response.status_code == 416 and done:
                return  # the partial already holds every byte (or is wrong): commit() decides
            _check_status(url, response)
            total = _total(response)
            if response.status_code == 206:
                start = _range_start(response)
                if start != done:
                    handle.truncate(0)
                    raise errors.TransientError(f"download {url}: asked for {done}-, got {start}-")
            else:  # 200: the server ignored the range; start over
                handle.truncate(0)
                done = 0
            ctx.progress(done, total)
            async for chunk in response.aiter_raw():
                handle.write(chunk)
                done += len(chunk)
                ctx.progress(done, total)
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:  # retrying won't help
        raise errors.PermanentError(f"download {url}: {type(exc).__name__}: {exc}") from exc
    except httpx.TransportError as exc:  # connect/read errors, timeouts, a body cut short
        raise errors.TransientError(f"download {url}: {type(exc).__name__}: {exc}") from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # too many redirects, a malformed URL
        raise errors.PermanentError(f"download {url}: {type(exc).__name__}: {exc}") from exc


def _check_status(url: str, response: httpx.Response) -> None:
    status = response.status_code
    if status in (200, 206):
        return
    message = f"download {url}: HTTP {status} {response.reason_phrase}"
    if status in (408, 429) or status >= 500:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"), now=time.time())
        raise errors.TransientError(message, retry_after=retry_after)
    raise errors.PermanentError(message)


def _range_start(response: httpx.Response) -> int | None:
    """The first byte of a 206 body, from ``Content-Range: bytes START-END/SIZE``."""
    spec = response.headers.get("Content-Range", "").removeprefix("bytes ").partition("-")[0]
    return int(spec) if spec.isdigit() else None


def _total(response: httpx.Response) -> int | None:
    """The full size of the blob, from Content-Range (206) or Content-Length (200)."""
    if response.status_code == 206:
        size = response.headers.get("Content-Range", "").rpartition("/")[2]
    else:
        size = response.headers.get("Content-Length", "")
    return int(size) if size.isdigit() else None


def _local_source(ctx: Context, url: str) -> Path:
    if url.startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise errors.PermanentError(f"{url}: file URLs must name a local path (file:///…)")
        return Path(unquote(parts.path))
    return ctx.base_dir / url  # an absolute path replaces base_dir


def _copy(source: Path, handle: BinaryIO) -> None:
    """Copy a local file into the partial; nothing to resume, so start from empty."""
    try:
        with open(source, "rb") as src:
            handle.truncate(0)
            shutil.copyfileobj(src, handle, 1024 * 1024)
    except FileNotFoundError as exc:
        raise errors.PermanentError(f"source {source} does not exist") from exc
    except OSError as exc:
        raise fsutil.os_error(exc, "copy", source) from exc


@contextlib.asynccontextmanager
async def _claimed(partial: Path) -> AsyncIterator[BinaryIO]:
    """The partial file, opened for append and held under an exclusive lock until exit."""
    while True:
        handle = _try_claim(partial)
        if handle is not None:
            break
        await asyncio.sleep(LOCK_POLL)  # a flock may be held by another process: nothing to await
    with handle:
        yield handle


def _try_claim(partial: Path) -> BinaryIO | None:
    """Open and lock the partial; ``None`` while another fetch holds it."""
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The previous holder may have committed (renamed) or removed this very inode; a lock on
        # it guards nothing then, so the caller opens the path afresh.
        st, mine = partial.stat(), os.fstat(fd)
        if (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino):
            os.close(fd)
            return None
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    return os.fdopen(fd, "ab")
