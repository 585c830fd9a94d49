"""Converge this machine: the state dir, its lock, the store, the providers, one call.

The state dir holds the default SQLite store (``accord.db``), the content-addressed cache and a
lock file. The lock (``flock``) serializes runs on one state dir and is released by the kernel
when the process dies, however it dies; that is what lets the journal tell a crashed run from
a live one.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from accord import errors
from accord.engine.converge import Converge, Options
from accord.engine.journal import Journal
from accord.engine.pidlock import PidLock
from accord.engine.report import Reporter
from accord.lifecycle.definition import Facts
from accord.model.loading import parse_manifest
from accord.model.manifest import Manifest, StateGoal
from accord.model.plan import Plan
from accord.model.status import RunRecord, RunState
from accord.providers import registry as registry_module
from accord.providers.base import Context
from accord.providers.cache import Cache
from accord.providers.paths import Roots
from accord.providers.registry import Registry
from accord.store import Store, open_store


def default_state_dir() -> Path:
    """``$ACCORD_STATE_DIR``, else /var/lib/accord for root, else the XDG state home."""
    if env := os.environ.get("ACCORD_STATE_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/accord")
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "accord"


def load_manifest(path: Path, registry: Registry | None = None) -> Manifest:
    """Read and validate a manifest file; ``InputError`` if it is missing or invalid."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise errors.InputError(f"{path}: {exc.strerror or exc}") from None
    kinds = (registry or registry_module.default()).kinds()
    return parse_manifest(text, source=str(path), kinds=kinds)


class LocalSession:
    """An open state dir: use as ``async with LocalSession(...) as session``."""

    def __init__(
        self,
        *,
        roots: Sequence[Path | str] = ("/",),
        state_dir: Path | None = None,
        store_url: str | None = None,
        allow_commands: bool = False,
        registry: Registry | None = None,
        lock: bool = True,
    ) -> None:
        self.state_dir = (state_dir or default_state_dir()).absolute()
        self.store_url = store_url or f"sqlite:///{self.state_dir / 'accord.db'}"
        self.roots = Roots(list(roots))
        self.allow_commands = allow_commands
        self.registry = registry or registry_module.default()
        self._locking = lock
        self._lock: PidLock | None = None
        self.store: Store

    async def __aenter__(self) -> LocalSession:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self._locking:
            self._take_lock()
        self.store = await open_store(self.store_url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.store.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def context(self, base_dir: Path) -> Context:
        return Context(
            roots=self.roots,
            state_dir=self.state_dir,
            cache=Cache(self.state_dir / "cache"),
            base_dir=base_dir,
            allow_commands=self.allow_commands,
        )

    async def converge(
        self,
        manifest: Manifest,
        *,
        base_dir: Path,
        options: Options | None = None,
        reporter: Reporter | None = None,
        stop: asyncio.Event | None = None,
    ) -> tuple[Plan, RunRecord]:
        """Run the engine over ``manifest`` toward ``options.goal``."""
        engine = Converge(
            store=self.store,
            registry=self.registry,
            context=self.context(base_dir),
            options=options,
            reporter=reporter,
            stop=stop,
        )
        return await engine.run(manifest)

    def apply_in_progress(self) -> bool:
        """Whether another process holds this state dir's run lock right now."""
        return self._lock is None and PidLock.held(self.state_dir / "lock")

    async def facts(self, *, reason: str = "", roles: frozenset[str] = frozenset()) -> Facts:
        """What lifecycle guards see on this machine: its runs and its run lock.

        ``converged`` is True when the latest apply of every manifest run here succeeded,
        None when nothing was ever applied here.
        """
        latest = [r for r in await Journal(self.store).statuses() if r.goal is StateGoal.APPLY]
        converged = all(r.state is RunState.SUCCEEDED for r in latest) if latest else None
        return Facts(
            converged=converged,
            apply_in_progress=self.apply_in_progress(),
            reason=reason,
            roles=roles,
        )

    def _take_lock(self) -> None:
        path = self.state_dir / "lock"
        self._lock = PidLock.take(
            path, busy=lambda pid: f"another accord run (pid {pid}) holds {path}; wait for it"
        )
