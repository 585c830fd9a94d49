"""Small filesystem helpers shared by the file-like providers: atomic writes and ownership."""

from __future__ import annotations

import functools
import grp
import os
import pwd
import shutil
from pathlib import Path

from accord import errors


def atomic_write(
    path: Path,
    data: bytes | None = None,
    *,
    copy_from: Path | None = None,
    mode: int = 0o644,
    uid: int = -1,
    gid: int = -1,
) -> None:
    """Write a file so that readers see the old or the new content, never a torn one.

    Temp file in the same directory, permissions and owner set on it, fsync, rename over the
    target. A crash leaves at worst a ``.accord-*.tmp`` file, which the next write replaces.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fixed name, not a per-process one: runs on a state dir are serialized, and the next write
    # of this path reuses (and so removes) a temp file that a killed run left behind.
    temp = path.parent / f".accord-{path.name}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            if copy_from is not None:
                with open(copy_from, "rb") as source:
                    shutil.copyfileobj(source, handle, 1024 * 1024)
            elif data is not None:
                handle.write(data)
            handle.flush()
            if uid != -1 or gid != -1:
                os.fchown(handle.fileno(), uid, gid)
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def ensure_owner(path: Path, owner: str | int | None, group: str | int | None) -> None:
    """chown without following a final symlink; ``None`` leaves that id alone."""
    uid = uid_of(owner) if owner is not None else -1
    gid = gid_of(group) if group is not None else -1
    if uid != -1 or gid != -1:
        os.chown(path, uid, gid, follow_symlinks=False)


@functools.lru_cache(maxsize=256)
def uid_of(owner: str | int) -> int:
    if isinstance(owner, int):
        return owner
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        if owner.isdigit():  # like chown: a name first, then a numeric id
            return int(owner)
        raise errors.PermanentError(f"unknown user {owner!r}") from None


@functools.lru_cache(maxsize=256)
def gid_of(group: str | int) -> int:
    if isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise errors.PermanentError(f"unknown group {group!r}") from None


def os_error(exc: OSError, action: str, path: Path) -> errors.ProviderError:
    """Classify an OSError: running out of space or a busy file may pass; the rest will not."""
    message = f"{action} {path}: {exc.strerror or exc}"
    if exc.errno in (28, 16, 11, 4):  # ENOSPC, EBUSY, EAGAIN, EINTR
        return errors.TransientError(message)
    return errors.PermanentError(message)
