"""Staged .deb files for the ``Package`` kind: accord's own apt archive directory.

Under the state dir's cache, ``STATE_DIR/cache/apt``:

``archives/``
    in apt's archive layout (``name_version_arch.deb``, ``partial/``, apt's ``lock``), so that
    ``apt-get install --no-download -o Dir::Cache::archives=…`` installs from it as it is.
``staged/<name>=<version>.json``
    stage's record of the files it staged for that target, with sizes and SHA256 digests: what
    apply installs when apt no longer resolves the target to staged files (its lists moved on
    since staging, or a ``file:`` repository, whose lists are links into it, is gone).
``unkept/<name>=<version>.json``
    the versions that applying that target replaces or removes whose .deb stage could not keep
    for a revert (offline; a version no mirror has any more), each with the reason: keeping
    them is best effort, and apply and delete say what a revert cannot put back.

A file counts as staged only when its size *and* SHA256 match the repository's index: apt
checks only the size of a file in an archive directory, and dpkg would unpack a corrupt one
halfway. Files arrive by copy — from a ``file:`` repository, whose .debs apt uses in place and
never copies, or from apt's own archive directory — or by ``apt-get install --download-only``
into this directory. A copy is written under a fixed temporary name and renamed into place only
once its digest matched, so a killed stage leaves nothing that looks staged.

Hashing and copying run in a worker thread (:func:`asyncio.to_thread`): a large .deb takes
seconds, and the agent's heartbeats and NATS pings share the event loop. ``staged()`` is asked
on every plan while a change waits for its window, so it may use a memo of digests keyed by
each file's size, times, inode and device (``memo=True``); stage and apply hash every time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from accord import errors
from accord.providers import apt, cache, fsutil
from accord.providers.apt import Deb
from accord.providers.base import Context


def archives(ctx: Context) -> Path:
    """accord's apt archive directory: what stage fetched, for apply and revert."""
    return ctx.cache.directory / "apt" / "archives"


async def fetch(
    ctx: Context, options: Sequence[str], targets: Sequence[str], *, what: str, limit: float
) -> list[Deb]:
    """Put every .deb that ``apt-get install options targets`` needs into :func:`archives`,
    verified; return them. Refreshes apt's lists once (``limit``: seconds for that) if apt
    does not know the targets or a download fails: a mirror drops the versions its newer lists
    no longer name."""
    debs = await _resolve(options, targets, what=what, limit=limit)
    if await _fill(ctx, options, targets, debs, what=what, last=False):
        return debs
    await apt.update(what=what, limit=limit)
    debs = await _resolve_refreshed(options, targets, what=what)
    if await _fill(ctx, options, targets, debs, what=what, last=True):
        return debs
    raise errors.TransientError(f"{what}: staged files failed their check after download")


async def _resolve(
    options: Sequence[str], targets: Sequence[str], *, what: str, limit: float
) -> list[Deb]:
    try:
        return await apt.print_uris(options, targets, what=what)
    except errors.ProviderError as exc:
        if not apt.unknown(exc):
            raise
    await apt.update(what=what, limit=limit)
    return await _resolve_refreshed(options, targets, what=what)


async def _resolve_refreshed(
    options: Sequence[str], targets: Sequence[str], *, what: str
) -> list[Deb]:
    """:func:`apt.print_uris` right after ``apt-get update``: the refreshed lists may no longer
    name a version the old ones did (a mirror keeps only the newest)."""
    try:
        return await apt.print_uris(options, targets, what=what)
    except errors.PermanentError as exc:
        raise errors.PermanentError(
            f"{exc}\n(apt's lists were refreshed first: no configured source has it)"
        ) from exc


async def _fill(
    ctx: Context,
    options: Sequence[str],
    targets: Sequence[str],
    debs: list[Deb],
    *,
    what: str,
    last: bool,
) -> bool:
    """Copy or download what is missing; whether everything is now there and intact. A failed
    download is worth a retry after refreshing the lists, unless this is the ``last`` try."""
    directory = archives(ctx)
    absent = await missing(directory, debs)
    if not absent:
        return True
    system = await apt.archives_of_apt(what=what)
    remote = []
    for deb in absent:
        for source in (deb.local_path, system / deb.filename if system else None):
            if source is not None and await copy_verified(source, directory, deb):
                break
        else:
            remote.append(deb)
            # A corrupt file of the right size would look complete to apt: remove it.
            (directory / deb.filename).unlink(missing_ok=True)
    if remote:
        (directory / "partial").mkdir(parents=True, exist_ok=True)
        argv = [
            "apt-get", "install", "--download-only", "-y", "-q", *options,
            "-o", f"Dir::Cache::archives={directory}", *targets,
        ]  # fmt: skip
        finished = await apt.run_locked(argv, what=what, limit=None)  # bounded by the step
        if finished.code != 0:
            error = apt.failure(what, argv, finished)
            if isinstance(error, errors.TransientError) or last:
                raise errors.TransientError(str(error), retry_after=apt.retry_after(error))
            return False
    return not await missing(directory, debs)


# The record


def record_path(ctx: Context, target: str) -> Path:
    """Where stage records what it staged for ``target`` (``name`` or ``name=version``)."""
    return ctx.cache.directory / "apt" / "staged" / f"{target}.json"


def write_record(ctx: Context, target: str, debs: list[Deb]) -> None:
    data = {"target": target, "debs": [dataclasses.asdict(deb) for deb in debs]}
    fsutil.atomic_write(record_path(ctx, target), json.dumps(data, indent=1).encode(), mode=0o600)


def read_record(ctx: Context, target: str) -> list[Deb] | None:
    try:
        data = json.loads(record_path(ctx, target).read_text())
        return [Deb(**deb) for deb in data["debs"]]
    except (OSError, ValueError, TypeError, KeyError):
        return None  # none, or unreadable: as if nothing was recorded


# Prior versions, kept for a revert (best effort)

CANNOT_DOWNLOAD = "apt cannot download it (no configured source has that version)"


@dataclasses.dataclass(frozen=True, slots=True)
class Prior:
    """A version that apply replaces or removes, and its .deb if apt can get it now."""

    package: str
    version: str
    architecture: str
    deb: Deb | None = None
    problem: str = ""  # why apt cannot get it, when it cannot

    @property
    def target(self) -> str:
        return f"{self.package}={self.version}"


async def keep(ctx: Context, prior: Prior, *, what: str, limit: float) -> str:
    """Put ``prior``'s .deb into :func:`archives`, best effort: why it could not, or "" when it
    is there. Not keeping it is no failure of stage (the install does not need it, and the
    machine may be offline or the version gone from every mirror), but for a lock of apt's held
    by another program: a retry of stage will likely get it."""
    if prior.deb is None:  # apt cannot get it now; an earlier stage may have kept it
        found = await cached(ctx, prior.package, prior.version, prior.architecture, what=what)
        return "" if found is not None else prior.problem
    try:
        debs = await fetch(ctx, ["--reinstall"], [prior.target], what=what, limit=limit)
    except errors.ProviderError as exc:
        if apt.locked(exc):
            raise
        return str(exc).removeprefix(f"{what}: ")
    return "" if any(deb.package == prior.package for deb in debs) else CANNOT_DOWNLOAD


async def cached(
    ctx: Context, name: str, version: str, architecture: str, *, what: str
) -> Path | None:
    """The .deb of a prior version: in accord's archive directory, else in apt's."""
    filename = apt.deb_filename(name, version, architecture)
    places = [archives(ctx), await apt.archives_of_apt(what=what)]
    return next((d / filename for d in places if d is not None and (d / filename).is_file()), None)


@dataclasses.dataclass(frozen=True, slots=True)
class Unkept:
    """A version that apply replaces or removes whose .deb stage could not keep, and why."""

    package: str
    version: str
    reason: str


def unkept_path(ctx: Context, target: str) -> Path:
    return ctx.cache.directory / "apt" / "unkept" / f"{target}.json"


def write_unkept(ctx: Context, target: str, unkept: Sequence[Unkept]) -> None:
    """Record what stage could not keep for ``target`` (nothing: no record)."""
    path = unkept_path(ctx, target)
    if not unkept:
        path.unlink(missing_ok=True)
        return
    data = {"target": target, "unkept": [dataclasses.asdict(u) for u in unkept]}
    fsutil.atomic_write(path, json.dumps(data, indent=1).encode(), mode=0o600)


def read_unkept(ctx: Context, target: str) -> list[Unkept]:
    try:
        data = json.loads(unkept_path(ctx, target).read_text())
        return [Unkept(**entry) for entry in data["unkept"]]
    except (OSError, ValueError, TypeError, KeyError):
        return []  # none, or unreadable: as if stage had kept everything it tried


# Files

SETTLED = 2.0
"""Seconds since a file's last change before its digest may be memoized: timestamps advance in
ticks, and a file rewritten within the tick its digest was taken in would look unchanged."""
MEMO_ENTRIES = 4096

_memo: dict[Path, tuple[tuple[int, ...], str]] = {}  # path → (its stat key, its SHA256)
_memo_lock = threading.Lock()  # worker threads of concurrent resources share the memo


async def missing(directory: Path, debs: Sequence[Deb], *, memo: bool = False) -> list[Deb]:
    """The ``debs`` that ``directory`` does not hold complete and intact (size, then SHA256),
    checked in a worker thread. ``memo``: trust a digest taken of the same, settled file.

    apt itself checks only the size of a file in an archive directory, and dpkg would unpack a
    corrupt one halfway: so accord checks the digest before it lets apt use the file.
    """
    if not debs:
        return []
    return await asyncio.to_thread(_missing, directory, list(debs), memo)


async def verified(directory: Path, deb: Deb, *, memo: bool = False) -> bool:
    """Whether ``directory`` holds ``deb`` complete and intact: see :func:`missing`."""
    return not await missing(directory, [deb], memo=memo)


async def copy_verified(source: Path, directory: Path, deb: Deb) -> bool:
    """Copy ``source`` into ``directory`` as ``deb`` if it is that file; whether it was. The
    copy, hashed as it is written, runs in a worker thread."""
    return await asyncio.to_thread(_copy_verified, source, directory, deb)


def _missing(directory: Path, debs: list[Deb], memo: bool) -> list[Deb]:
    return [deb for deb in debs if not _intact(directory / deb.filename, deb, memo)]


def _intact(path: Path, deb: Deb, memo: bool) -> bool:
    try:
        stat = path.stat()
        if stat.st_size != deb.size:
            return False
        if deb.sha256 is None:
            return True
        key = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev)
        with _memo_lock:
            known = _memo.get(path)
        if memo and known is not None and known[0] == key:
            return known[1] == deb.sha256
        digest = cache.file_sha256(path)
    except OSError:
        return False
    with _memo_lock:  # stored after every hash, so a check without the memo corrects it
        _memo.pop(path, None)
        if time.time_ns() - stat.st_ctime_ns > SETTLED * 1e9:
            if len(_memo) >= MEMO_ENTRIES:
                del _memo[next(iter(_memo))]  # the oldest entry
            _memo[path] = (key, digest)
    return digest == deb.sha256


def _copy_verified(source: Path, directory: Path, deb: Deb) -> bool:
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f".{deb.filename}.accord-partial"  # a fixed name: no debris
    hasher = hashlib.sha256()
    try:
        with open(source, "rb") as src, open(partial, "wb") as dst:
            while chunk := src.read(cache.CHUNK):
                hasher.update(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
            size = dst.tell()
        if size != deb.size or (deb.sha256 is not None and hasher.hexdigest() != deb.sha256):
            partial.unlink()
            return False
        os.replace(partial, directory / deb.filename)
    except OSError:
        partial.unlink(missing_ok=True)
        return False
    return True
