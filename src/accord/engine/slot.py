"""One resource's working state during a converge run (``accord.engine.converge``).

A ``Slot`` is mutated as the run goes (observe, stage, apply, verify, revert); a
``ResourceStatus`` is built from it only to report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accord.engine.inventory import Managed
from accord.model.manifest import Resource, StateFlag
from accord.model.plan import Action, Change, FieldChange
from accord.model.status import ErrorRecord, Phase, ResourceStatus
from accord.providers.base import Context, Memo
from accord.providers.registry import AnyProvider


@dataclass(slots=True)
class Slot:
    """One resource's working state during a run; a ``ResourceStatus`` is built only to report."""

    resource: Resource
    provider: AnyProvider
    ctx: Context
    current: Any = None
    change: Change | None = None
    phase: Phase = Phase.PENDING
    flag: StateFlag | None = None
    attempts: int = 0
    duration_s: float = 0.0
    error: ErrorRecord | None = None
    diff: tuple[FieldChange, ...] = ()  # what verification still found different
    output: str | None = None
    before: Memo | None = None  # pre-apply snapshot for the revert policy
    reverted_record: Managed | None = None  # inventory record to restore on revert
    was_managed: bool = False
    note: str = ""  # overrides the change's reason (blocked, reverted, …)
    unstaged: bool = False  # its provider stages, and has not staged this spec yet
    triggers: tuple[str, ...] = ()  # ids whose change refreshes this resource (restart_on)
    refreshed: str = ""  # what the refresh did in this run ("restarted")
    during: str = "apply"  # the phase a failure of the step happened in

    def to_status(self, details: dict[str, Any] | None = None) -> ResourceStatus:
        change = self.change
        if details is None:
            details = self.provider.details(self.resource.spec, self.current)
        return ResourceStatus(
            id=self.resource.id,
            kind=self.resource.kind,
            phase=self.phase,
            flag=self.flag,
            action=change.action if change else Action.NOOP,
            reason=self.note or (change.reason if change else ""),
            attempts=self.attempts,
            duration_s=round(self.duration_s, 6),
            error=self.error,
            diff=self.diff,
            output=self.output,
            details=details,
        )
