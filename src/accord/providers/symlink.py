"""``Symlink``: a symbolic link at ``path`` pointing to ``target`` (confined to the roots too)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import ClassVar

from accord import errors
from accord.model.plan import Action, Change, FieldChange
from accord.model.specs import Spec, SymlinkSpec
from accord.providers import fsutil, priors
from accord.providers.base import Context, Memo, Provider


@dataclass(frozen=True, slots=True)
class LinkState:
    type: str  # symlink | file | directory | other
    target: str | None = None


class SymlinkProvider(Provider[SymlinkSpec, LinkState]):
    kind: ClassVar[str] = "Symlink"
    spec_model: ClassVar[type[Spec]] = SymlinkSpec

    async def observe(self, ctx: Context, spec: SymlinkSpec) -> LinkState | None:
        path = ctx.roots.resolve(spec.path, resource=ctx.resource_id)
        self._check_target(ctx, spec)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):  # a file where a parent should be
            return None
        if stat.S_ISLNK(st.st_mode):
            return LinkState(type="symlink", target=os.readlink(path))
        return LinkState(type=priors.snapshot_type(path) or "other")

    def diff(self, spec: SymlinkSpec, current: LinkState | None) -> Change:
        if current is None:
            return Change(action=Action.CREATE, reason=f"{spec.path} is absent")
        if current.type != "symlink":
            return Change(
                action=Action.UPDATE,
                reason=f"{spec.path} is a {current.type}, not a link",
                fields=(FieldChange(field="type", current=current.type, desired="symlink"),),
            )
        if current.target != spec.target:
            return Change(
                action=Action.UPDATE,
                reason=f"{spec.path} points elsewhere",
                fields=(FieldChange(field="target", current=current.target, desired=spec.target),),
            )
        return Change.noop(f"links to {spec.target}")

    async def apply(self, ctx: Context, spec: SymlinkSpec, current: LinkState | None) -> None:
        path = ctx.roots.resolve(spec.path, resource=ctx.resource_id)
        ctx.roots.recheck(path, resource=ctx.resource_id)
        if current is not None and current.type == "directory":
            raise errors.PermanentError(f"{path} is a directory; refusing to replace it")
        if current == LinkState(type="symlink", target=spec.target):
            return
        try:
            priors.replace_symlink(path, spec.target)
        except OSError as exc:
            raise fsutil.os_error(exc, "link", path) from exc

    async def snapshot(
        self, ctx: Context, spec: SymlinkSpec, current: LinkState | None
    ) -> Memo | None:
        return priors.snapshot(ctx, ctx.roots.resolve(spec.path, resource=ctx.resource_id))

    async def delete(self, ctx: Context, spec: SymlinkSpec, prior: Memo | None) -> str:
        path = ctx.roots.resolve(spec.path, resource=ctx.resource_id)
        ctx.roots.recheck(path, resource=ctx.resource_id)
        return priors.restore(ctx, path, prior)

    def _check_target(self, ctx: Context, spec: SymlinkSpec) -> None:
        """A link may not point out of the roots, or it becomes a way to write outside them."""
        base = os.path.dirname(ctx.roots.resolve(spec.path, resource=ctx.resource_id))
        target = os.path.normpath(os.path.join(base, spec.target))
        if not ctx.roots.contains(target):
            raise errors.PathEscapeError(
                f"resource {ctx.resource_id!r}: link target {spec.target!r} is outside the roots"
            )
