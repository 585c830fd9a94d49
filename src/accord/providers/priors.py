"""Snapshot and restore whatever sits at a path, so that accord can hand a path back.

Used when accord first adopts a path that already existed (pruning the resource later restores
it) and by the revert policy (put back what a failed run changed). File content goes into the
content-addressed cache; the memo records digest, mode and owner, or a link's target.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from accord import errors
from accord.providers import fsutil
from accord.providers.base import Context, Memo


def snapshot(ctx: Context, path: Path) -> Memo | None:
    """A memo of what is at ``path`` now; ``None`` if nothing is."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    owner = {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    if stat.S_ISLNK(st.st_mode):
        return {"type": "symlink", "target": os.readlink(path)}
    if stat.S_ISREG(st.st_mode):
        return {"type": "file", "sha256": ctx.cache.add_file(path), **owner}
    if stat.S_ISDIR(st.st_mode):
        return {"type": "directory", **owner}
    raise errors.PermanentError(f"{path}: cannot keep a prior copy of a special file")


def restore(ctx: Context, path: Path, prior: Memo | None) -> str:
    """Put ``prior`` back at ``path`` (or remove what is there if ``prior`` is None)."""
    try:
        return _restore(ctx, path, prior)
    except OSError as exc:
        raise fsutil.os_error(exc, "restore", path) from exc


def _restore(ctx: Context, path: Path, prior: Memo | None) -> str:
    current = snapshot_type(path)
    if prior is None:
        if current is None:
            return "already absent"
        if current == "directory":
            try:
                path.rmdir()
            except OSError:
                return "kept: directory is not empty"
            return "removed"
        path.unlink()
        return "removed"
    kind = prior["type"]
    if kind == "file":
        cached = ctx.cache.path(prior["sha256"])
        if not cached.is_file():
            raise errors.PermanentError(f"{path}: the prior content {prior['sha256']} is gone")
        if current == "directory":
            raise errors.PermanentError(f"{path}: a directory is in the way of the prior file")
        fsutil.atomic_write(
            path, copy_from=cached, mode=prior["mode"], uid=prior["uid"], gid=prior["gid"]
        )
        return "restored prior content"
    if kind == "symlink":
        if current == "directory":
            try:
                path.rmdir()  # what accord made in the link's place; never unmanaged content
            except OSError:
                raise errors.PermanentError(
                    f"{path}: a non-empty directory is in the way of the prior link"
                ) from None
        replace_symlink(path, prior["target"])
        return f"restored link to {prior['target']}"
    if kind == "directory":
        if current != "directory":
            if current is not None:
                path.unlink()
            path.mkdir(parents=True)
        os.chmod(path, prior["mode"])
        os.chown(path, prior["uid"], prior["gid"], follow_symlinks=False)
        return "restored prior mode and owner"
    raise errors.PermanentError(f"{path}: unknown prior type {kind!r}")


def snapshot_type(path: str | os.PathLike[str]) -> str | None:
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def replace_symlink(path: Path, target: str) -> None:
    """Point ``path`` at ``target`` atomically (make the link beside it, rename over)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".accord-{path.name}.lnk"  # fixed name: see fsutil.atomic_write
    temp.unlink(missing_ok=True)
    os.symlink(target, temp)
    os.replace(temp, path)
