"""Fakes held to the real contracts: a provider whose "machine" is a dict.

``FakeProvider`` serves kind ``Fake`` (spec ``{key, value}``). Tests script its misbehaviour
per key: fail transiently N times, fail permanently, hang, or "apply" without converging (so
verification catches it). It records every call, so tests can assert what the engine did.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field

from accord import errors
from accord.model.plan import Action, Change, FieldChange
from accord.model.specs import Spec
from accord.providers.base import Context, Memo, Provider


class FakeSpec(Spec):
    identity_field: ClassVar[str] = "key"

    key: str = Field(min_length=1)
    value: str


@dataclass
class Script:
    """How the fake misbehaves for one key."""

    transient_failures: int = 0  # apply raises TransientError this many times first
    permanent: bool = False  # apply always raises PermanentError
    hang: float = 0.0  # apply sleeps this long first
    sticky: bool = False  # apply "succeeds" but changes nothing


@dataclass
class FakeProvider(Provider[FakeSpec, str]):
    kind: ClassVar[str] = "Fake"
    spec_model: ClassVar[type[Spec]] = FakeSpec

    data: dict[str, str] = field(default_factory=dict)
    scripts: dict[str, Script] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (phase, key)

    async def observe(self, ctx: Context, spec: FakeSpec) -> str | None:
        self.calls.append(("observe", spec.key))
        return self.data.get(spec.key)

    def diff(self, spec: FakeSpec, current: str | None) -> Change:
        if current is None:
            return Change(action=Action.CREATE, reason=f"{spec.key} is absent")
        if current != spec.value:
            field_change = FieldChange(field="value", current=current, desired=spec.value)
            return Change(
                action=Action.UPDATE, reason=f"{spec.key} differs", fields=(field_change,)
            )
        return Change.noop(f"{spec.key} = {spec.value!r}")

    async def apply(self, ctx: Context, spec: FakeSpec, current: str | None) -> None:
        self.calls.append(("apply", spec.key))
        script = self.scripts.get(spec.key, Script())
        if script.hang:
            await asyncio.sleep(script.hang)
        if script.transient_failures > 0:
            script.transient_failures -= 1
            raise errors.TransientError(f"{spec.key}: busy")
        if script.permanent:
            raise errors.PermanentError(f"{spec.key}: broken")
        if not script.sticky:
            self.data[spec.key] = spec.value

    async def snapshot(self, ctx: Context, spec: FakeSpec, current: str | None) -> Memo | None:
        return None if current is None else {"value": current}

    def details(self, spec: FakeSpec, current: str | None) -> dict[str, Any]:
        return {} if current is None else {"length": len(current)}

    async def delete(self, ctx: Context, spec: FakeSpec, prior: Memo | None) -> str:
        self.calls.append(("delete", spec.key))
        if prior is None:
            self.data.pop(spec.key, None)
            return "removed"
        self.data[spec.key] = prior["value"]
        return "restored"
