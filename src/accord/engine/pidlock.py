"""A lock file that tells a live holder from a dead one, however it died.

``flock`` is released by the kernel when its holder exits — ``kill -9`` included — so whoever
takes the lock afterwards knows the previous owner is gone; no pid comparison (pids are reused)
and no lease timing is involved. The holder's pid is written into the file only to name it in
the message a second taker gets. Locks are local to one machine.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from accord import errors


class PidLock:
    """An exclusive, non-blocking lock on one file. Use :meth:`take`, then :meth:`release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def take(cls, path: Path, *, busy: Callable[[str], str]) -> PidLock:
        """Lock ``path``; if a live process holds it, ``AccordError(busy(its pid))``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise errors.AccordError(busy(holder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return cls(path, fd)

    @staticmethod
    def held(path: Path) -> bool:
        """Whether a live process holds ``path`` now (for display: only ``take`` decides)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also drops the probe's shared lock if it got one
        return False

    def release(self, *, remove: bool = False) -> None:
        """Unlock (closing the descriptor releases the flock); ``remove`` deletes the file."""
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
