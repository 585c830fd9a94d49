"""Plans: what a run would change, resource by resource, and why."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from accord.model.manifest import ResourceId, StateGoal


class Action(enum.StrEnum):
    NOOP = "noop"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class FieldChange(BaseModel):
    """One field that differs: what is there and what is wanted."""

    model_config = ConfigDict(frozen=True)

    field: str
    current: Any = None
    desired: Any = None


class Change(BaseModel):
    """A provider's verdict for one resource. Every verdict, a no-op included, has a reason."""

    model_config = ConfigDict(frozen=True)

    action: Action
    reason: str
    fields: tuple[FieldChange, ...] = ()

    @property
    def is_noop(self) -> bool:
        return self.action is Action.NOOP

    @classmethod
    def noop(cls, reason: str) -> Change:
        return _construct(cls, {"action": Action.NOOP, "reason": reason, "fields": ()})

    def describe(self) -> str:
        """One line: the reason, then each differing field."""
        parts = [f"{f.field}: {f.current!r} → {f.desired!r}" for f in self.fields]
        return "; ".join([self.reason, *parts]) if parts else self.reason


class Refresh(BaseModel):
    """What a resource does when one of its triggers changes in a run (a unit's ``restart_on``).

    ``expected`` lists the triggers this plan changes and those that changed in an earlier run
    whose refresh never happened (it failed, was blocked, or the run died): with any of them,
    the refresh will run; without, it runs only if a trigger changes after all.
    """

    model_config = ConfigDict(frozen=True)

    action: str  # what the provider calls its refresh: "restart"
    triggers: tuple[ResourceId, ...]
    expected: tuple[ResourceId, ...] = ()
    pending: tuple[ResourceId, ...] = ()  # the earlier run's triggers among ``expected``

    def describe(self) -> str:
        """``restart if 'config' changes`` or ``restart: 'config' changes``."""
        if not self.expected:
            return f"{self.action} if {_either(self.triggers)} changes"
        now = [t for t in self.expected if t not in self.pending]
        parts = [f"{_both(now)} {'change' if len(now) > 1 else 'changes'}"] if now else []
        if self.pending:
            parts.append(
                f"{_both(self.pending)} changed in an earlier run that did not {self.action} it"
            )
        return f"{self.action}: {'; '.join(parts)}"


def _either(ids: Sequence[str]) -> str:
    return " or ".join(repr(i) for i in ids)


def _both(ids: Sequence[str]) -> str:
    return " and ".join(repr(i) for i in ids)


class PlannedStep(BaseModel):
    """The plan for one resource."""

    model_config = ConfigDict(frozen=True)

    id: ResourceId
    kind: str
    change: Change
    stage: bool = False  # the provider has something to prepare before apply
    refresh: Refresh | None = None  # the resource has triggers (restart_on)

    @classmethod
    def of(
        cls, id: ResourceId, kind: str, change: Change, stage: bool, refresh: Refresh | None = None
    ) -> PlannedStep:
        """Build from already-valid parts without re-validating (once per resource per run)."""
        return _construct(
            cls, {"id": id, "kind": kind, "change": change, "stage": stage, "refresh": refresh}
        )

    @property
    def refreshes(self) -> bool:
        """Whether the plan expects this resource's refresh (a restart) to run."""
        return self.refresh is not None and bool(self.refresh.expected)

    def describe(self) -> str:
        """The change's line, then what a trigger will make the resource do."""
        if self.refresh is None:
            return self.change.describe()
        return f"{self.change.describe()}; {self.refresh.describe()}"


class Plan(BaseModel):
    """Every resource's change, in manifest order, plus what will be pruned."""

    model_config = ConfigDict(frozen=True)

    manifest: str
    generation: int
    goal: StateGoal
    steps: tuple[PlannedStep, ...]
    prune: tuple[PlannedStep, ...] = ()

    def counts(self) -> dict[str, int]:
        """How many steps of each action, prunes included."""
        result = {a.value: 0 for a in Action}
        for step in (*self.steps, *self.prune):
            result[step.change.action.value] += 1
        return result

    @property
    def changes(self) -> tuple[PlannedStep, ...]:
        """Steps that change something: their own change, or an expected refresh."""
        return tuple(s for s in (*self.steps, *self.prune) if not s.change.is_noop or s.refreshes)


M = TypeVar("M", bound=BaseModel)


def _construct(cls: type[M], values: dict[str, Any]) -> M:
    """``model_construct`` for hot paths: ``values`` must hold every field, already valid.

    Half the cost of ``model_construct`` (which also resolves defaults and aliases); used for
    the two objects a run makes per resource, where 10,000 resources make it count.
    """
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", set(values))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model
