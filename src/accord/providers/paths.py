"""Confine every managed path to the configured roots.

A path in a manifest is either absolute, in which case it must lie inside one of the roots, or
relative, in which case it is taken from the first root. ``..`` is refused outright, and the
parent directory's real path (symlinks resolved) must stay inside the same root, so a symlinked
directory cannot carry a write out of the root. The final component itself is never followed:
providers ``lstat`` it and replace a link rather than write through it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from accord import errors


class Roots:
    """The directories a run may touch."""

    def __init__(self, roots: Sequence[Path | str]) -> None:
        if not roots:
            raise errors.InputError("at least one root is required")
        self.roots: tuple[str, ...] = tuple(os.path.realpath(r) for r in roots)
        # The spelling the user gave (it may go through a symlink) → the real root.
        self._spellings = {
            os.path.normpath(os.path.abspath(given)): real
            for given, real in zip(roots, self.roots, strict=True)
            if os.path.normpath(os.path.abspath(given)) != real
        }
        self._parents: dict[str, str] = {}  # parent dir → its real path, per run
        self._resolved: dict[str, str] = {}  # manifest path → checked absolute path

    @property
    def primary(self) -> Path:
        return Path(self.roots[0])

    def resolve(self, path: str, *, resource: str = "") -> Path:
        """The absolute path for a manifest path, or ``PathEscapeError`` naming the resource."""
        return Path(self.check(path, resource=resource))

    def check(self, path: str, *, resource: str = "") -> str:
        """``resolve`` as a string: what observe needs, without building a ``Path`` each time."""
        known = self._resolved.get(path)
        if known is not None:
            return known
        where = f"resource {resource!r}: " if resource else ""
        if ".." in path.split("/"):
            raise errors.PathEscapeError(f"{where}path {path!r} contains '..'")
        full = self._respell(os.path.normpath(os.path.join(self.roots[0], path)))
        root = self._root_of(full)
        if root is None:
            raise errors.PathEscapeError(
                f"{where}path {path!r} is outside the roots {', '.join(self.roots)}"
            )
        if full == root:
            self._resolved[path] = full  # a root is real by construction
            return full
        parent = os.path.dirname(full)
        real = self._parents.get(parent)
        if real is None:
            real = self._parents[parent] = os.path.realpath(parent)
        if not _inside(real, root):
            raise errors.PathEscapeError(
                f"{where}path {path!r} escapes root {root} through a symlink ({parent} → {real})"
            )
        self._resolved[path] = full
        return full

    def recheck(self, path: Path, *, resource: str = "") -> None:
        """Re-resolve the parent right before a write (the tree may have changed since observe)."""
        self._parents.pop(str(path.parent), None)
        self._resolved.clear()
        self.resolve(str(path), resource=resource)

    def contains(self, path: str) -> bool:
        """Whether an absolute path lies lexically inside a root."""
        return self._root_of(self._respell(os.path.normpath(path))) is not None

    def _respell(self, full: str) -> str:
        for given, real in self._spellings.items():
            if _inside(full, given):
                return real + full[len(given) :]
        return full

    def _root_of(self, full: str) -> str | None:
        for root in self.roots:
            if _inside(full, root):
                return root
        return None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
