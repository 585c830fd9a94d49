"""``Command``: the audited escape hatch — run an argv, guarded for idempotency.

A command runs only when the run allows commands (``--allow-commands``); otherwise ``observe``
and ``apply`` raise ``PolicyError``. It is never run through a shell. Its guards decide whether
it is needed: ``creates`` (skip when that path exists) and ``unless`` (skip when that argv exits
0). Without a guard it runs on every apply, and the plan says so. ``observe`` runs the
``unless`` argv, which the manifest's author promises is read-only.

Each run (:mod:`~accord.providers.process`) gets ``os.environ`` plus ``spec.env``, the resolved
``cwd`` (default: the first root), a timeout that kills its whole process group, and its stdout
and stderr captured together (at most 64 KiB: head and tail). It ends when its output closes, so
a background process that keeps stdout open holds it until the timeout.
A non-zero exit and a timeout are permanent failures. Commands are not undone: ``delete`` does
nothing and says so.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from typing import ClassVar

from accord import errors
from accord.model.plan import Action, Change
from accord.model.specs import CommandSpec, Spec
from accord.providers import process
from accord.providers.base import Context, Memo, Provider

ERROR_TAIL = 2000  # characters of output quoted in an error message


@dataclass(frozen=True, slots=True)
class CommandState:
    """What the guards said when observed."""

    creates: str | None = None  # the resolved ``creates`` path
    creates_exists: bool = False
    unless_exit: int | None = None  # exit code of the ``unless`` argv; None if it did not run


class CommandProvider(Provider[CommandSpec, CommandState]):
    kind: ClassVar[str] = "Command"
    spec_model: ClassVar[type[Spec]] = CommandSpec
    reversible: ClassVar[bool] = False
    verifiable: ClassVar[bool] = False  # a command's effect is its guard, not a state

    async def observe(self, ctx: Context, spec: CommandSpec) -> CommandState:
        _require_allowed(ctx)
        creates = None
        if spec.creates is not None:
            creates = str(ctx.roots.resolve(spec.creates, resource=ctx.resource_id))
            if os.path.lexists(creates):
                return CommandState(creates=creates, creates_exists=True)
        if spec.unless is None:
            return CommandState(creates=creates)
        result = await _run(ctx, spec, spec.unless)
        if result.code is None:
            raise _timed_out(ctx, spec, spec.unless)
        return CommandState(creates=creates, unless_exit=result.code)

    def diff(self, spec: CommandSpec, current: CommandState | None) -> Change:
        current = current or CommandState()
        creates = current.creates or spec.creates
        if current.creates_exists:
            return Change.noop(f"creates {creates} exists")
        unless = f"unless `{shlex.join(spec.unless)}`" if spec.unless else ""
        if current.unless_exit == 0:
            return Change.noop(f"{unless} exited 0")
        reasons = []
        if spec.creates is not None:
            reasons.append(f"creates {creates} is absent")
        if spec.unless is not None:
            ran = "was not run" if current.unless_exit is None else f"exited {current.unless_exit}"
            reasons.append(f"{unless} {ran}")
        reason = "; ".join(reasons) or "no creates/unless guard: runs on every apply"
        return Change(action=Action.CREATE, reason=reason)

    async def apply(self, ctx: Context, spec: CommandSpec, current: CommandState | None) -> None:
        _require_allowed(ctx)
        result = await _run(ctx, spec, spec.argv)
        if ctx.output is not None:
            ctx.output(result.stdout)
        if result.code is None:
            raise _timed_out(ctx, spec, spec.argv)
        if result.code != 0:
            ended = (
                f"exited {result.code}" if result.code > 0 else f"killed by signal {-result.code}"
            )
            tail = result.stdout[-ERROR_TAIL:].strip()
            raise errors.PermanentError(
                f"resource {ctx.resource_id!r}: `{shlex.join(spec.argv)}` {ended}"
                + (f":\n{tail}" if tail else "")
            )
        if spec.creates is not None:
            path = ctx.roots.resolve(spec.creates, resource=ctx.resource_id)
            if not os.path.lexists(path):
                raise errors.PermanentError(
                    f"resource {ctx.resource_id!r}: command exited 0 but did not create {path}"
                )

    async def snapshot(
        self, ctx: Context, spec: CommandSpec, current: CommandState | None
    ) -> Memo | None:
        """Nothing to keep: what a command did cannot be captured, so it cannot be put back."""
        return None

    async def delete(self, ctx: Context, spec: CommandSpec, prior: Memo | None) -> str:
        """Do nothing: a command's effects are unknown to accord, so pruning cannot undo them."""
        return "commands are not undone"


def _require_allowed(ctx: Context) -> None:
    if not ctx.allow_commands:
        raise errors.PolicyError(
            f"resource {ctx.resource_id!r} is a Command; pass --allow-commands to run commands"
        )


def _timed_out(ctx: Context, spec: CommandSpec, argv: list[str]) -> errors.PermanentError:
    # Permanent: a command that hung once will most likely hang again, and re-running a
    # half-done command on a timer is exactly what an escape hatch must not do unasked.
    return errors.PermanentError(
        f"resource {ctx.resource_id!r}: `{shlex.join(argv)}` timed out after {spec.timeout:g} s"
        " and was killed"
    )


async def _run(ctx: Context, spec: CommandSpec, argv: list[str]) -> process.Finished:
    """Run ``argv`` (no shell) with the spec's env, cwd and timeout; capture its output."""
    where = f"resource {ctx.resource_id!r}: `{shlex.join(argv)}`"
    if spec.cwd is None:
        cwd = ctx.roots.primary
    else:
        cwd = ctx.roots.resolve(spec.cwd, resource=ctx.resource_id)
    if not cwd.is_dir():  # else it reads as "no such file", as if argv[0] were missing
        raise errors.PermanentError(f"{where}: cwd {cwd} is not a directory")
    env = {**os.environ, **spec.env}
    try:
        return await process.run(argv, seconds=spec.timeout, env=env, cwd=cwd, merge=True)
    except OSError as exc:  # not found, not executable: a retry will not help
        raise errors.PermanentError(f"{where}: cannot start: {exc.strerror or exc}") from exc
