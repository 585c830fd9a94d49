"""Run ``systemctl``: one argv, no shell, a timeout, and its failures classified.

Each call is a :mod:`~accord.providers.process` run (its process group killed at the timeout).
``systemctl`` is whatever the name resolves to on ``PATH`` when the call is made, so tests can
put a recording stand-in first (``accord.testing.systemctl``). Calls with ``--root=DIR`` work
offline on a directory tree (unit files, enablement links); the others talk to the running
service manager. A transcript of each call that changed something goes to ``ctx.output`` (the
journal keeps it with the resource's ``applied`` event).
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass

from accord import errors
from accord.providers import process
from accord.providers.base import Context

TIMEOUT = 180.0  # above systemd's own default start timeout (90 s) plus stopping the old process
SHOWN = ("ActiveState", "SubState", "ActiveEnterTimestamp", "LoadState", "NeedDaemonReload")
ERROR_TAIL = 2000  # characters of stderr quoted in an error

BOOTED = "/run/systemd/system"  # exists while systemd is the running init: sd_booted(3)

# Messages of a machine where systemd is not the running init (a container, a CI job, a chroot):
# no retry will reach a service manager there. systemctl says both lines; the second alone
# (EHOSTDOWN from its bus connection) would otherwise pass for the transient message below.
_NOT_BOOTED = ("has not been booted with systemd", "Failed to connect to bus: Host is down")

# Messages of a service manager that is briefly unreachable (it is re-executing, reloading, or
# D-Bus restarts): a retry may help. Everything else (no such unit, a failed start) will not.
_TRANSIENT = (
    "Failed to connect to bus",
    "Transport endpoint is not connected",
    "Connection timed out",
    "Connection reset by peer",
)


@dataclass(frozen=True, slots=True)
class Result:
    """How one call ended."""

    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def transcript(self) -> str:
        out = "\n".join(text.rstrip() for text in (self.stdout, self.stderr) if text.strip())
        return f"$ {shlex.join(self.argv)}" + (f"\n{out}" if out else "")


async def run(ctx: Context, *args: str, check: bool = True, record: bool = False) -> Result:
    """Run ``systemctl ARGS``; with ``check``, a non-zero exit raises a classified error.

    ``record`` sends the transcript to ``ctx.output`` (for calls that change something).
    """
    found = shutil.which("systemctl")
    if found is None:
        raise errors.PermanentError(
            f"resource {ctx.resource_id!r}: systemctl not found on PATH (install systemd: the"
            " SystemdUnit kind needs systemctl, also to enable units under another root)"
        )
    argv = ("systemctl", *args)
    env = {**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
    try:
        done = await process.run([found, *args], seconds=TIMEOUT, env=env, cap=None)
    except OSError as exc:
        raise errors.PermanentError(
            f"resource {ctx.resource_id!r}: cannot run {found}: {exc.strerror or exc}"
        ) from exc
    if done.code is None:
        # Permanent: systemd's own start and stop timeouts have fired long before this one, so
        # a call still hanging is stuck, and repeating it on a timer would only queue more jobs.
        raise errors.PermanentError(
            f"resource {ctx.resource_id!r}: `{shlex.join(argv)}` timed out after {TIMEOUT:g} s"
        )
    result = Result(argv, done.code, done.stdout, done.stderr)
    if record and ctx.output is not None:
        ctx.output(result.transcript())
    if check and result.code != 0:
        raise failure(ctx, result)
    return result


def failure(ctx: Context, result: Result) -> errors.ProviderError:
    """A failed call as a typed error: transient when the manager was briefly unreachable,
    permanent when systemd does not run here at all (or for anything else)."""
    said = (result.stderr.strip() or result.stdout.strip())[-ERROR_TAIL:]
    message = f"resource {ctx.resource_id!r}: `{shlex.join(result.argv)}` exited {result.code}"
    message += f": {said}" if said else ""
    if any(marker in said for marker in _NOT_BOOTED):
        return errors.PermanentError(
            f"{message} (systemd is not running here: its running state cannot be managed)"
        )
    if any(marker in said for marker in _TRANSIENT):
        return errors.TransientError(message)
    return errors.PermanentError(message)


def booted() -> bool:
    """Whether systemd is the running service manager here, as ``sd_booted(3)`` decides: the
    directory ``/run/systemd/system`` exists. Not in most containers and CI jobs, where every
    call without ``--root`` fails ("System has not been booted with systemd")."""
    return os.path.isdir(BOOTED)


async def is_enabled(ctx: Context, root: str, name: str) -> str:
    """``systemctl --root=ROOT is-enabled NAME``: enabled, disabled, static, masked, …,
    ``not-found`` when no unit file of that name exists under the root, or ``unknown: …`` with
    what systemctl said when it could not tell (a directory where the unit file should be):
    observing stays total, and ``enable`` will fail with the same words."""
    result = await run(ctx, f"--root={root}", "is-enabled", "--", name, check=False)
    state = result.stdout.strip().splitlines()
    if state:
        return state[0].strip()
    said = result.stderr.strip().splitlines()
    if not said or "No such file or directory" in said[-1]:
        return "not-found"
    return f"unknown: {said[-1]}"


async def show(ctx: Context, name: str) -> dict[str, str]:
    """The unit's runtime properties (``SHOWN``) from the running service manager."""
    result = await run(ctx, "show", "-p", ",".join(SHOWN), "--", name)
    found = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key] = value
    return found
