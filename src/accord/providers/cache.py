"""The content-addressed cache under the state dir: staged downloads and snapshots.

Layout: ``<state_dir>/cache/sha256/<2 hex>/<64 hex>``. An entry appears only by an atomic
rename after its digest was checked, so a present entry is always complete and correct. A
download in progress lives beside it as ``<hex>.partial`` and is resumed, not restarted.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from accord import errors
from accord.providers import fsutil

CHUNK = 1024 * 1024


class Cache:
    """A directory of verified blobs, named by sha256."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, digest: str) -> Path:
        return self.directory / "sha256" / digest[:2] / digest

    def partial(self, digest: str) -> Path:
        return self.directory / "sha256" / digest[:2] / f"{digest}.partial"

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def add_bytes(self, data: bytes) -> str:
        """Store ``data``; return its digest."""
        digest = hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            fsutil.atomic_write(self.path(digest), data, mode=0o600)
        return digest

    def add_file(self, source: Path) -> str:
        """Copy a file into the cache (hashing as it copies); return its digest."""
        name = hashlib.sha256(str(source).encode()).hexdigest()[:16]
        partial = self.directory / f"incoming-{name}.partial"  # fixed per source: no debris
        partial.parent.mkdir(parents=True, exist_ok=True)
        hasher = hashlib.sha256()
        with open(source, "rb") as src, open(partial, "wb") as dst:
            while chunk := src.read(CHUNK):
                hasher.update(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        digest = hasher.hexdigest()
        self.path(digest).parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, self.path(digest))
        return digest

    def commit(self, partial: Path, digest: str) -> Path:
        """Verify a finished download and move it into place; a mismatch is permanent."""
        actual = file_sha256(partial)
        if actual != digest:
            partial.unlink(missing_ok=True)
            raise errors.PermanentError(f"sha256 mismatch: expected {digest}, downloaded {actual}")
        target = self.path(digest)
        os.replace(partial, target)
        return target


def file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()
