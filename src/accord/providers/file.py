"""``File``: a regular file with inline content or content from a staged artifact source."""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from accord import errors
from accord.model.plan import Action, Change, FieldChange
from accord.model.specs import FileSpec, Spec
from accord.providers import digests, download, fsutil, priors
from accord.providers.base import Context, Memo, Provider

DEFAULT_MODE = 0o644


@dataclass(frozen=True, slots=True)
class FileState:
    """What is at the path. ``sha256`` is None when the size alone shows the content differs."""

    type: str  # file | directory | symlink | other
    size: int = 0
    sha256: str | None = None
    mode: int = 0
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True, slots=True)
class Want:
    """A file-like spec reduced to what the shared code compares and writes."""

    path: str
    sha256: str
    size: int | None  # known for inline content, unknown for artifacts until staged
    data: bytes | None  # inline content
    url: str | None
    mode: int | None
    owner: str | int | None
    group: str | int | None


class FileLikeProvider(Provider[Spec, FileState]):
    """Shared by ``File`` and ``Artifact``: both place verified bytes at a path."""

    stages: ClassVar[bool] = True

    def want(self, spec: Spec) -> Want:
        raise NotImplementedError

    async def observe(self, ctx: Context, spec: Spec) -> FileState | None:
        want = self.want(spec)
        path = ctx.roots.check(want.path, resource=ctx.resource_id)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):  # a file where a parent should be
            return None
        if not stat.S_ISREG(st.st_mode):
            return FileState(type=priors.snapshot_type(path) or "other")
        size = want.size if want.size is not None else _cached_size(ctx, want.sha256)
        digest = None
        if size is None or st.st_size == size:
            digest = await digests.MEMO.sha256(str(path), st)
        return FileState(
            type="file",
            size=st.st_size,
            sha256=digest,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
        )

    def diff(self, spec: Spec, current: FileState | None) -> Change:
        want = self.want(spec)
        if current is None:
            return Change(action=Action.CREATE, reason=f"{want.path} is absent")
        if current.type != "file":
            return Change(
                action=Action.UPDATE,
                reason=f"{want.path} is a {current.type}, not a file",
                fields=(FieldChange(field="type", current=current.type, desired="file"),),
            )
        fields = []
        if current.sha256 != want.sha256:
            now = current.sha256 or f"{current.size} bytes"
            fields.append(FieldChange(field="sha256", current=now, desired=want.sha256))
        fields.extend(owner_fields(want.mode, want.owner, want.group, current))
        if fields:
            return Change(action=Action.UPDATE, reason=f"{want.path} differs", fields=tuple(fields))
        return Change.noop(f"content matches sha256 {want.sha256[:12]}, mode {current.mode:04o}")

    async def staged(self, ctx: Context, spec: Spec) -> bool:
        want = self.want(spec)
        return want.data is not None or ctx.cache.has(want.sha256)

    async def stage(self, ctx: Context, spec: Spec) -> None:
        want = self.want(spec)
        if want.url is not None:
            await download.fetch(ctx, want.url, want.sha256)

    async def apply(self, ctx: Context, spec: Spec, current: FileState | None) -> None:
        want = self.want(spec)
        path = ctx.roots.resolve(want.path, resource=ctx.resource_id)
        ctx.roots.recheck(path, resource=ctx.resource_id)
        if current is not None and current.type == "directory":
            raise errors.PermanentError(f"{path} is a directory; refusing to replace it")
        try:
            if current is None or current.type != "file" or current.sha256 != want.sha256:
                self._write(ctx, path, want, current)
            else:
                if want.mode is not None and current.mode != want.mode:
                    os.chmod(path, want.mode, follow_symlinks=False)
                fsutil.ensure_owner(path, want.owner, want.group)
        except OSError as exc:
            raise fsutil.os_error(exc, "write", path) from exc

    def _write(self, ctx: Context, path: Path, want: Want, current: FileState | None) -> None:
        # What the spec leaves unmanaged keeps its current value: a rewrite replaces the inode,
        # so mode and owner must be carried over explicitly.
        kept = current if current is not None and current.type == "file" else None
        mode = want.mode if want.mode is not None else (kept.mode if kept else DEFAULT_MODE)
        uid = fsutil.uid_of(want.owner) if want.owner is not None else (kept.uid if kept else -1)
        gid = fsutil.gid_of(want.group) if want.group is not None else (kept.gid if kept else -1)
        if want.data is not None:
            fsutil.atomic_write(path, want.data, mode=mode, uid=uid, gid=gid)
            return
        cached = ctx.cache.path(want.sha256)
        if not cached.is_file():
            raise errors.PermanentError(f"{want.url} is not staged (sha256 {want.sha256[:12]})")
        fsutil.atomic_write(path, copy_from=cached, mode=mode, uid=uid, gid=gid)

    async def snapshot(self, ctx: Context, spec: Spec, current: FileState | None) -> Memo | None:
        path = ctx.roots.resolve(self.want(spec).path, resource=ctx.resource_id)
        return priors.snapshot(ctx, path)

    async def delete(self, ctx: Context, spec: Spec, prior: Memo | None) -> str:
        path = ctx.roots.resolve(self.want(spec).path, resource=ctx.resource_id)
        ctx.roots.recheck(path, resource=ctx.resource_id)
        return priors.restore(ctx, path, prior)


class FileProvider(FileLikeProvider):
    kind: ClassVar[str] = "File"
    spec_model: ClassVar[type[Spec]] = FileSpec

    def want(self, spec: Spec) -> Want:
        return _file_want(spec)


@functools.lru_cache(maxsize=65536)  # observe, diff and apply all ask; hashing once is enough
def _file_want(spec: Spec) -> Want:
    assert isinstance(spec, FileSpec)
    if spec.source is not None:
        return Want(
            spec.path, spec.source.sha256, None, None, spec.source.url,
            spec.mode, spec.owner, spec.group,
        )  # fmt: skip
    data = (spec.content or "").encode()
    return Want(
        spec.path, hashlib.sha256(data).hexdigest(), len(data), data, None,
        spec.mode, spec.owner, spec.group,
    )  # fmt: skip


def owner_fields(
    mode: int | None, owner: str | int | None, group: str | int | None, current: FileState
) -> list[FieldChange]:
    """Mode, owner and group differences; ``None`` means unmanaged."""
    fields = []
    if mode is not None and current.mode != mode:
        fields.append(
            FieldChange(field="mode", current=f"{current.mode:04o}", desired=f"{mode:04o}")
        )
    if owner is not None and current.uid != fsutil.uid_of(owner):
        fields.append(FieldChange(field="owner", current=current.uid, desired=owner))
    if group is not None and current.gid != fsutil.gid_of(group):
        fields.append(FieldChange(field="group", current=current.gid, desired=group))
    return fields


def _cached_size(ctx: Context, digest: str) -> int | None:
    try:
        return ctx.cache.path(digest).stat().st_size
    except FileNotFoundError:
        return None
