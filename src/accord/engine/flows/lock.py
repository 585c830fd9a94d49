"""One lock per flow run: how a live run is told from a run whose process died.

The process executing a run holds ``flock`` on ``<lock dir>/<run>.lock`` from before its first
write until after its last. The kernel releases the lock when the process dies, however it dies
(``kill -9`` included), so whoever takes the lock afterwards knows the previous owner is gone:
a record it then finds ``running``, ``waiting`` or ``reverting`` is a crashed run. No pid
comparison (pids are reused) and no lease timing is involved.

Locks are local to one machine: every process that runs or resumes flows on a store must use
the same lock directory (the CLI uses ``<state dir>/flows``). A store shared by several
machines would need a lease in the store instead; that is future work.

A finished run's lock file is removed. That is safe although another process may have the old
file open: the record is terminal before the file goes, and a resumer reads the record only
after taking the lock, so it refuses to resume whichever file it locked.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from accord import errors
from accord.store.base import key_part


class RunLock:
    """An exclusive, non-blocking lock on one run. Use :meth:`take`, then :meth:`release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def take(cls, directory: Path, run_id: str) -> RunLock:
        """Lock ``run_id``; ``AccordError`` naming the holder's pid if a live process has it."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{key_part(run_id)}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise errors.AccordError(
                f"flow run {run_id} is being run by a live process (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return cls(path, fd)

    def release(self, *, finished: bool) -> None:
        """Unlock; remove the file too if the run is ``finished`` (nothing will resume it)."""
        if self._fd is None:
            return
        if finished:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)  # closing releases the flock
        self._fd = None
