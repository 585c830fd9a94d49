"""The container engine seam: find podman or docker, run its CLI, translate what it says.

accord talks to the engines through their command-line tools, never their sockets: the CLIs are
what an operator debugs with, they work the same rootless and rootful, and podman has no daemon
to talk to. Everything the ``Container`` provider learns comes from ``container inspect`` and
``image inspect`` JSON, which podman keeps compatible with docker's for the fields used here
(``Name`` has docker's leading ``/`` only there; image ids have docker's ``sha256:`` prefix only
there — both are normalized away).

Finding the engine. ``runtime: auto`` takes podman if it is on ``PATH``, else docker, and sticks
to that choice: falling back to the other engine when the first does not answer would let one
flaky moment put a second copy of every container into the other engine. The CLI alone proves
nothing — a docker CLI without a daemon is common (CI images, this repository's dev
container) — so a cheap ``version`` call, which needs the engine's server side, must succeed
before the engine is used. Engines that answered are remembered per ``PATH``; a daemon that dies
later shows up as a failed call, translated like any other.

Failures. Every call has a timeout (past it, the CLI is killed with its whole process group:
:mod:`~accord.providers.process`) and its exit status is checked: a docker CLI with no daemon
still prints ``[]`` for ``inspect``, so the output alone would read as "absent". "Not found"
answers (``No such container``, ``image not known``, …) become ``None``; an engine that is not
running, a timeout, and a registry that cannot be reached are transient; anything else (a bad
mount, a port in use, a refused pull) is permanent, quoting the engine's own message.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from accord import errors
from accord.providers import process

RUNTIMES = ("podman", "docker")  # the order ``auto`` looks for them

QUICK = 30.0  # inspect, version, start, rename, rm: seconds
STOP = 120.0  # the engine's own stop timeout (10 s by default) plus room
PULL = 3600.0  # large images on slow links; the engine's step timeout usually comes first

_MISSING = re.compile(
    r"no such (container|object|image)|image not known|no container with name or id", re.I
)
_DOWN = re.compile(
    r"cannot connect to the docker daemon|is the docker daemon running"
    r"|cannot connect to podman|unable to connect to podman"
    r"|error during connect|connect: connection refused",
    re.I,
)
# A pull that failed for one of these will fail the same way next time: permanent. Any other
# pull failure (DNS, TLS, timeouts, a registry's 5xx) is worth a retry.
_PULL_PERMANENT = re.compile(
    r"manifest unknown|not found|denied|unauthorized|invalid reference format"
    r"|repository does not exist|authentication required",
    re.I,
)
MESSAGE_TAIL = 600  # characters of the engine's message quoted in an error


@dataclass(frozen=True, slots=True)
class Result:
    """How one CLI call ended."""

    code: int
    stdout: str
    stderr: str

    @property
    def message(self) -> str:
        """What the engine said, for an error: stderr, else stdout, trimmed to its tail."""
        text = (self.stderr.strip() or self.stdout.strip())[-MESSAGE_TAIL:]
        return text or f"exit status {self.code}"


@dataclass(frozen=True, slots=True)
class Engine:
    """One container engine's CLI: ``runtime`` is ``podman`` or ``docker``."""

    runtime: str
    path: str

    async def run(self, *args: str, seconds: float = QUICK) -> Result:
        """Run ``args`` (no shell); a timeout or a cancellation kills the CLI's process group."""
        try:
            done = await process.run([self.path, *args], seconds=seconds, cap=None)
        except OSError as exc:  # vanished or not executable since it was found
            raise errors.PermanentError(f"cannot run {self.path}: {exc.strerror or exc}") from exc
        if done.code is None:
            raise errors.TransientError(
                f"`{self.describe(args)}` did not finish within {seconds:g} s; it was killed"
            )
        return Result(code=done.code, stdout=done.stdout, stderr=done.stderr)

    async def call(
        self, *args: str, seconds: float = QUICK, output: Callable[[str], None] | None = None
    ) -> str:
        """Run ``args``; return stdout, or raise the typed failure. ``output`` receives the
        command and what it printed (for the journal)."""
        result = await self.run(*args, seconds=seconds)
        if output is not None:
            printed = (result.stdout + result.stderr).strip()
            output(f"$ {self.describe(args)}" + (f"\n{printed}" if printed else ""))
        if result.code != 0:
            raise self.failure(args, result)
        return result.stdout

    async def remove(self, name: str, *, output: Callable[[str], None] | None = None) -> None:
        """``rm --force``; a container that is already gone is fine (podman says so, docker
        does not)."""
        args = ("rm", "--force", name)
        result = await self.run(*args)
        if result.code != 0 and not (
            _MISSING.search(result.stderr) and not _DOWN.search(result.stderr)
        ):
            raise self.failure(args, result)
        if output is not None:
            output(f"$ {self.describe(args)}")

    async def inspect_container(self, name: str) -> dict[str, Any] | None:
        """``container inspect``: the container called exactly ``name``, or ``None``."""
        item = await self._inspect(("container", "inspect", name))
        # The engines also match an id prefix; a container whose id starts with our name is
        # not ours.
        if item is None or str(item.get("Name", "")).lstrip("/") != name:
            return None
        return item

    async def inspect_image(self, reference: str) -> dict[str, Any] | None:
        """``image inspect``: the local image ``reference`` names, or ``None``."""
        return await self._inspect(("image", "inspect", reference))

    async def _inspect(self, args: tuple[str, ...]) -> dict[str, Any] | None:
        result = await self.run(*args)
        if result.code != 0:
            if _MISSING.search(result.stderr) and not _DOWN.search(result.stderr):
                return None
            raise self.failure(args, result)
        try:
            items = json.loads(result.stdout)
        except ValueError as exc:
            raise errors.PermanentError(
                f"`{self.describe(args)}` printed no JSON: {result.stdout[:200]!r}"
            ) from exc
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise errors.PermanentError(f"`{self.describe(args)}` printed no list of objects")
        return items[0] if items else None

    def failure(self, args: tuple[str, ...] | list[str], result: Result) -> errors.ProviderError:
        """The typed error for a failed call (see the module docstring)."""
        said = f"`{self.describe(args)}` failed: {result.message}"
        if _DOWN.search(result.message):
            return errors.TransientError(
                f"the {self.runtime} engine is not running ({self.path}): {result.message}"
            )
        if args and args[0] == "pull" and not _PULL_PERMANENT.search(result.message):
            return errors.TransientError(said)
        return errors.PermanentError(said)

    def describe(self, args: tuple[str, ...] | list[str]) -> str:
        return shlex.join([self.runtime, *args])


@dataclass
class Engines:
    """Finds the engine a spec's ``runtime`` names; remembers the ones that answered."""

    found: dict[tuple[str, str], Engine] = field(default_factory=dict)

    async def get(self, runtime: str) -> Engine:
        search = os.environ.get("PATH", os.defpath)
        known = self.found.get((runtime, search))
        if known is not None:
            return known
        if runtime == "auto":
            name = next((r for r in RUNTIMES if shutil.which(r, path=search)), RUNTIMES[-1])
        else:
            name = runtime
        path = shutil.which(name, path=search)
        if path is None:
            looked = "neither podman nor docker" if runtime == "auto" else name
            raise errors.PermanentError(f"no container engine: {looked} is on PATH")
        engine = Engine(runtime=name, path=path)
        result = await engine.run("version", "--format", "{{json .}}")
        if result.code != 0:
            # A CLI without its engine (no daemon, no socket, no permission): a daemon that is
            # starting up will answer on a retry; a permission problem will not.
            kind = (
                errors.PermanentError
                if "permission denied" in result.message.lower()
                else (errors.TransientError)
            )
            raise kind(f"the {name} engine is not running ({path}): {result.message}")
        self.found[(runtime, search)] = engine
        return engine
