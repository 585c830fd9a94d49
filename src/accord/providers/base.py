"""The provider contract: the code for one resource kind.

A provider's phases and what each promises (peace's check → apply → verify, Symphony's stage):

``observe(ctx, spec) -> state | None``
    Read-only; never mutates anything. ``None`` means the thing is absent.
``diff(spec, current) -> Change``
    Pure. A no-op carries a human reason ("content matches sha256 3a7b…"); a change lists the
    fields that differ.
``stage(ctx, spec)``
    Optional (``stages = True``). Prepares what does not change the live system — downloads
    into the content-addressed cache with a digest check. Idempotent and resumable; after it,
    ``apply`` needs no network. ``staged(ctx, spec)`` says whether it has been done.
``apply(ctx, spec, current)``
    Converges from any current state, a half-finished earlier apply included. Writes are atomic
    where the OS allows (temp file, fsync, rename).
``snapshot(ctx, spec, current) -> memo | None``
    Records what is needed to put the current state back (``None`` when absent). Taken when
    accord first adopts a resource and, with the revert policy, before each apply.
``delete(ctx, spec, prior)``
    Idempotent. Puts back ``prior`` (a snapshot) if given, else removes what the resource
    manages. Used to prune resources that left the manifest and to revert a failed run.
``details(spec, current) -> dict``
    Pure. A few facts about the observed thing for status reports (a package's installed
    version, a unit's active state, a container's start time and restarts): JSON values, keyed
    by short snake_case names. Default: none.
``triggers(ctx, spec) -> ids`` and ``refresh(ctx, spec, current) -> note``
    Optional, for a resource that must react when others change (a unit restarted when its
    config file changes: Puppet's ``subscribe``, Ansible's ``notify``). ``triggers`` names
    resource ids, which must be among those the spec references (``Spec.references``), so the
    engine orders the resource after them; it may name none where this run cannot refresh (a
    unit under a root that is not the live system). In an apply run where one of them applied
    a change (or was refreshed), the engine calls ``refresh`` once, after this resource's own
    ``apply`` or no-op and before verification; ``ctx.triggered`` names those triggers, in
    ``apply`` as well, so that ``apply`` can leave to ``refresh`` what it would otherwise do
    twice (start a unit, then restart it). Never called on a dry run or stage. A refresh that
    did not happen (it failed, or the run died) is owed and done by the next run, so
    ``refresh`` must be safe to repeat. ``refresh_verb`` names it in plans ("restart").

Failures are typed: raise :class:`~accord.errors.TransientError` for what a retry may fix and
:class:`~accord.errors.PermanentError` for what it will not. Anything else is treated as
permanent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from accord.model.plan import Change
from accord.model.specs import Spec
from accord.providers.cache import Cache
from accord.providers.paths import Roots

S = TypeVar("S", bound=Spec)
O = TypeVar("O")  # noqa: E741 - the observed state
Memo = dict[str, Any]
"""JSON-serializable data a provider keeps between runs (e.g. a snapshot of prior content)."""

Progress = Callable[[int, int | None], None]
"""Called with (bytes done, bytes total or None) during long work such as downloads."""


def _no_progress(done: int, total: int | None) -> None:
    """The default progress sink: nobody is watching."""


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a provider phase may use besides the spec. One per run, bound per resource."""

    roots: Roots
    state_dir: Path
    cache: Cache
    base_dir: Path = field(default_factory=Path.cwd)  # relative sources resolve against this
    allow_commands: bool = False
    resource_id: str = ""
    progress: Progress = _no_progress
    output: Callable[[str], None] | None = None  # receives captured command output
    triggered: tuple[str, ...] = ()  # triggers that changed in this run: refresh follows apply

    def bind(self, resource_id: str, **changes: Any) -> Context:
        """A copy of this context for one resource, with any other fields changed."""
        values = {name: getattr(self, name) for name in _CONTEXT_FIELDS}
        values["resource_id"] = resource_id
        values.update(changes)  # unknown names fail in the constructor, as they should
        return Context(**values)  # 3x cheaper than dataclasses.replace: once per resource


_CONTEXT_FIELDS = tuple(f.name for f in dataclasses.fields(Context))


class Provider(Generic[S, O]):
    """Base class of providers. Subclasses set ``kind`` and ``spec_model`` and the phases."""

    kind: ClassVar[str]
    spec_model: ClassVar[type[Spec]]
    stages: ClassVar[bool] = False
    reversible: ClassVar[bool] = True  # can delete()/snapshot() put things back?
    verifiable: ClassVar[bool] = True  # does observing after apply show the goal was reached?
    refresh_verb: ClassVar[str] = "refresh"  # what ``refresh`` does, as a plan says it

    async def observe(self, ctx: Context, spec: S) -> O | None:
        raise NotImplementedError

    def diff(self, spec: S, current: O | None) -> Change:
        raise NotImplementedError

    async def staged(self, ctx: Context, spec: S) -> bool:
        """Whether ``stage`` has nothing left to do."""
        return True

    async def stage(self, ctx: Context, spec: S) -> None:
        """Prepare without touching the live system. Default: nothing to prepare."""

    async def apply(self, ctx: Context, spec: S, current: O | None) -> None:
        raise NotImplementedError

    async def snapshot(self, ctx: Context, spec: S, current: O | None) -> Memo | None:
        """Default: nothing to keep; ``delete`` will remove."""
        return None

    async def delete(self, ctx: Context, spec: S, prior: Memo | None) -> str | None:
        """Returns a short note for the status (\"removed\", \"restored prior content\")."""
        raise NotImplementedError

    def details(self, spec: S, current: O | None) -> dict[str, Any]:
        """Facts about the observed thing for status reports; see the module docstring."""
        return {}

    def triggers(self, ctx: Context, spec: S) -> tuple[str, ...]:
        """Ids whose change in a run calls ``refresh``; see the module docstring. Default: none."""
        return ()

    async def refresh(self, ctx: Context, spec: S, current: O | None) -> str:
        """React to a trigger's change; returns what was done ("restarted"), for the status."""
        return "nothing to refresh"
