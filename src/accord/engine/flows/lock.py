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

from pathlib import Path

from accord.engine.pidlock import PidLock
from accord.store.base import key_part


class RunLock:
    """An exclusive, non-blocking lock on one run. Use :meth:`take`, then :meth:`release`."""

    def __init__(self, lock: PidLock) -> None:
        self._lock = lock

    @classmethod
    def take(cls, directory: Path, run_id: str) -> RunLock:
        """Lock ``run_id``; ``AccordError`` naming the holder's pid if a live process has it."""
        return cls(
            PidLock.take(
                _path(directory, run_id),
                busy=lambda pid: f"flow run {run_id} is being run by a live process (pid {pid})",
            )
        )

    @staticmethod
    def held(directory: Path, run_id: str) -> bool:
        """Whether a live process holds the run's lock (for display only)."""
        return PidLock.held(_path(directory, run_id))

    def release(self, *, finished: bool) -> None:
        """Unlock; remove the file too if the run is ``finished`` (nothing will resume it)."""
        self._lock.release(remove=finished)


def _path(directory: Path, run_id: str) -> Path:
    return directory / f"{key_part(run_id)}.lock"
