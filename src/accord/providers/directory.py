"""``Directory``: a directory with mode and owner; parents are created as needed."""

from __future__ import annotations

import os
import stat
from typing import ClassVar

from accord import errors
from accord.model.plan import Action, Change, FieldChange
from accord.model.specs import DirectorySpec, Spec
from accord.providers import fsutil, priors
from accord.providers.base import Context, Memo, Provider
from accord.providers.file import FileState, owner_fields

DEFAULT_MODE = 0o755


class DirectoryProvider(Provider[DirectorySpec, FileState]):
    kind: ClassVar[str] = "Directory"
    spec_model: ClassVar[type[Spec]] = DirectorySpec

    async def observe(self, ctx: Context, spec: DirectorySpec) -> FileState | None:
        path = ctx.roots.resolve(spec.path, resource=ctx.resource_id)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):  # a file where a parent should be
            return None
        if not stat.S_ISDIR(st.st_mode):
            return FileState(type=priors.snapshot_type(path) or "other")
        return FileState(
            type="directory", mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid
        )

    def diff(self, spec: DirectorySpec, current: FileState | None) -> Change:
        if current is None:
            return Change(action=Action.CREATE, reason=f"{spec.path} is absent")
        if current.type != "directory":
            return Change(
                action=Action.UPDATE,
                reason=f"{spec.path} is a {current.type}, not a directory",
                fields=(FieldChange(field="type", current=current.type, desired="directory"),),
            )
        fields = owner_fields(spec.mode, spec.owner, spec.group, current)
        if fields:
            return Change(action=Action.UPDATE, reason=f"{spec.path} differs", fields=tuple(fields))
        return Change.noop(f"directory exists, mode {current.mode:04o}")

    async def apply(self, ctx: Context, spec: DirectorySpec, current: FileState | None) -> None:
        path = ctx.roots.resolve(spec.path, resource=ctx.resource_id)
        ctx.roots.recheck(path, resource=ctx.resource_id)
        try:
            if current is not None and current.type == "symlink":
                path.unlink()  # a link where a directory belongs: replace the link, not its target
            elif current is not None and current.type != "directory":
                raise errors.PermanentError(f"{path} is a {current.type}; refusing to replace it")
            path.mkdir(parents=True, exist_ok=True)
            want = spec.mode if spec.mode is not None else None
            if want is None and (current is None or current.type != "directory"):
                want = DEFAULT_MODE  # mkdir's mode is masked by the umask; say it explicitly
            if want is not None:
                os.chmod(path, want)
            fsutil.ensure_owner(path, spec.owner, spec.group)
        except OSError as exc:
            raise fsutil.os_error(exc, "create directory", path) from exc

    async def snapshot(
        self, ctx: Context, spec: DirectorySpec, current: FileState | None
    ) -> Memo | None:
        path = ctx.roots.resolve(spec.path, resource=ctx.resource_id)
        return priors.snapshot(ctx, path)

    async def delete(self, ctx: Context, spec: DirectorySpec, prior: Memo | None) -> str:
        """Remove the directory only if empty: unmanaged files inside are never deleted."""
        path = ctx.roots.resolve(spec.path, resource=ctx.resource_id)
        ctx.roots.recheck(path, resource=ctx.resource_id)
        return priors.restore(ctx, path, prior)
