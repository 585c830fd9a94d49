"""``download.fetch`` against a real local HTTP server and real files in a tmp cache."""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import socket
from pathlib import Path

import pytest
from http_server import BlobServer

from accord import errors
from accord.providers import download
from accord.providers.base import Context
from accord.providers.cache import Cache
from accord.providers.paths import Roots

MiB = 1024 * 1024
BLOB = random.Random(7).randbytes(3 * MiB)  # big enough that a drop lands mid-body
DIGEST = hashlib.sha256(BLOB).hexdigest()


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    (tmp_path / "root").mkdir()
    (tmp_path / "manifests").mkdir()
    return Context(
        roots=Roots([tmp_path / "root"]),
        state_dir=tmp_path / "state",
        cache=Cache(tmp_path / "state" / "cache"),
        base_dir=tmp_path / "manifests",
    )


async def test_downloads_and_verifies(ctx: Context, http_server: BlobServer) -> None:
    url = http_server.add("/blob.bin", BLOB)

    path = await download.fetch(ctx, url, DIGEST)

    assert path == ctx.cache.path(DIGEST)
    assert path.read_bytes() == BLOB
    assert not ctx.cache.partial(DIGEST).exists()
    assert http_server.requests == [http_server.requests[0]]
    assert http_server.requests[0].range is None


async def test_dropped_connection_keeps_partial_and_resumes(
    ctx: Context, http_server: BlobServer
) -> None:
    url = http_server.add("/blob.bin", BLOB)
    http_server.faults.drop_after, http_server.faults.drop_times = MiB, 1

    with pytest.raises(errors.TransientError):
        await download.fetch(ctx, url, DIGEST)
    partial = ctx.cache.partial(DIGEST)
    assert partial.stat().st_size == MiB
    assert not ctx.cache.has(DIGEST)

    path = await download.fetch(ctx, url, DIGEST)

    assert [r.range for r in http_server.requests] == [None, f"bytes={MiB}-"]
    assert path.read_bytes() == BLOB
    assert not partial.exists()


async def test_server_ignoring_range_restarts_from_scratch(
    ctx: Context, http_server: BlobServer
) -> None:
    url = http_server.add("/blob.bin", BLOB)
    partial = ctx.cache.partial(DIGEST)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"x" * 1000)  # appended to, these bytes would spoil the digest
    http_server.faults.ignore_range = True

    path = await download.fetch(ctx, url, DIGEST)

    assert http_server.requests[0].range == "bytes=1000-"
    assert path.read_bytes() == BLOB


async def test_complete_partial_is_verified_after_416(
    ctx: Context, http_server: BlobServer
) -> None:
    url = http_server.add("/blob.bin", BLOB)
    partial = ctx.cache.partial(DIGEST)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(BLOB)  # a crash after the last byte, before the commit

    path = await download.fetch(ctx, url, DIGEST)

    assert http_server.requests[0].range == f"bytes={len(BLOB)}-"
    assert path.read_bytes() == BLOB


async def test_digest_mismatch_is_permanent_and_leaves_nothing(
    ctx: Context, http_server: BlobServer
) -> None:
    url = http_server.add("/blob.bin", BLOB)
    wrong = "0" * 64

    with pytest.raises(errors.PermanentError, match="sha256 mismatch"):
        await download.fetch(ctx, url, wrong)

    assert not ctx.cache.has(wrong)
    assert not ctx.cache.partial(wrong).exists()


async def test_404_is_permanent(ctx: Context, http_server: BlobServer) -> None:
    with pytest.raises(errors.PermanentError, match="HTTP 404"):
        await download.fetch(ctx, http_server.url("/missing.bin"), DIGEST)


async def test_503_is_transient_with_retry_after_and_keeps_partial(
    ctx: Context, http_server: BlobServer
) -> None:
    url = http_server.add("/blob.bin", BLOB)
    http_server.faults.drop_after, http_server.faults.drop_times = MiB, 1
    with pytest.raises(errors.TransientError):
        await download.fetch(ctx, url, DIGEST)
    http_server.faults.status, http_server.faults.retry_after = 503, "7"

    with pytest.raises(errors.TransientError, match="HTTP 503") as caught:
        await download.fetch(ctx, url, DIGEST)

    assert caught.value.retry_after == 7.0
    assert ctx.cache.partial(DIGEST).stat().st_size == MiB


async def test_refused_connection_is_transient(ctx: Context) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(errors.TransientError, match="ConnectError"):
        await download.fetch(ctx, f"http://127.0.0.1:{port}/blob.bin", DIGEST)


async def test_cached_blob_makes_no_request(ctx: Context, http_server: BlobServer) -> None:
    url = http_server.add("/blob.bin", BLOB)
    ctx.cache.add_bytes(BLOB)

    path = await download.fetch(ctx, url, DIGEST)

    assert path == ctx.cache.path(DIGEST)
    assert http_server.requests == []


async def test_concurrent_fetches_of_one_digest_download_once(
    ctx: Context, http_server: BlobServer
) -> None:
    url = http_server.add("/blob.bin", BLOB)

    paths = await asyncio.gather(*(download.fetch(ctx, url, DIGEST) for _ in range(3)))

    assert set(paths) == {ctx.cache.path(DIGEST)}
    assert ctx.cache.path(DIGEST).read_bytes() == BLOB
    assert len(http_server.requests) == 1
    assert not ctx.cache.partial(DIGEST).exists()


async def test_progress_reports_increasing_byte_counts(
    ctx: Context, http_server: BlobServer
) -> None:
    url = http_server.add("/blob.bin", BLOB)
    calls: list[tuple[int, int | None]] = []
    watched = ctx.bind(ctx.resource_id, progress=lambda done, total: calls.append((done, total)))

    await download.fetch(watched, url, DIGEST)

    done = [d for d, _ in calls]
    assert len(calls) > 2
    assert done == sorted(done)
    assert calls[-1] == (len(BLOB), len(BLOB))


async def test_file_url_source(ctx: Context, tmp_path: Path) -> None:
    source = tmp_path / "elsewhere" / "blob bin"
    source.parent.mkdir()
    source.write_bytes(BLOB)

    path = await download.fetch(ctx, source.as_uri(), DIGEST)

    assert path.read_bytes() == BLOB
    assert not ctx.cache.partial(DIGEST).exists()


async def test_relative_path_resolves_against_base_dir(ctx: Context) -> None:
    (ctx.base_dir / "files").mkdir()
    (ctx.base_dir / "files" / "blob.bin").write_bytes(BLOB)

    path = await download.fetch(ctx, "files/blob.bin", DIGEST)

    assert path.read_bytes() == BLOB


async def test_missing_source_file_is_permanent_and_named(ctx: Context) -> None:
    missing = re.escape(str(ctx.base_dir / "files" / "nope.bin"))
    with pytest.raises(errors.PermanentError, match=f"source {missing} does not exist"):
        await download.fetch(ctx, "files/nope.bin", DIGEST)


async def test_local_digest_mismatch_is_permanent(ctx: Context) -> None:
    (ctx.base_dir / "blob.bin").write_bytes(b"not the blob")

    with pytest.raises(errors.PermanentError, match="sha256 mismatch"):
        await download.fetch(ctx, "blob.bin", DIGEST)

    assert not ctx.cache.has(DIGEST)
    assert not ctx.cache.partial(DIGEST).exists()


async def test_unknown_scheme_is_permanent(ctx: Context) -> None:
    with pytest.raises(errors.PermanentError, match="unsupported scheme 'ftp'"):
        await download.fetch(ctx, "ftp://example.com/blob.bin", DIGEST)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://[::1/blob.bin", "Invalid IPv6 URL"),
        ("http://127.0.0.1:port/blob.bin", "InvalidURL"),
    ],
)
async def test_malformed_url_is_permanent(ctx: Context, url: str, problem: str) -> None:
    with pytest.raises(errors.PermanentError, match=problem):  # rejected before any I/O
        await download.fetch(ctx, url, DIGEST)
