"""Typed status: per-resource phases, Kubernetes-style conditions and run records."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from accord.model.manifest import ResourceId, StateFlag, StateGoal
from accord.model.plan import Action, FieldChange


def utcnow() -> datetime:
    return datetime.now(UTC)


class Phase(enum.StrEnum):
    """Where one resource is in a run."""

    PENDING = "pending"  # not reached yet
    STAGED = "staged"  # prepared; waiting for apply
    APPLIED = "applied"  # converged (changed, or already right)
    FAILED = "failed"
    BLOCKED = "blocked"  # a dependency failed; not attempted
    INTERRUPTED = "interrupted"  # the run stopped before reaching it
    REVERTED = "reverted"  # applied, then put back by the revert policy
    PRUNED = "pruned"  # left the manifest; removed or restored to its prior state


class ErrorRecord(BaseModel):
    """A failure as data: serializable, with its classification."""

    model_config = ConfigDict(frozen=True)

    type: str
    message: str
    transient: bool = False


class ResourceStatus(BaseModel):
    """What happened to one resource in a run."""

    id: ResourceId
    kind: str
    phase: Phase = Phase.PENDING
    flag: StateFlag | None = None
    action: Action = Action.NOOP
    reason: str = ""
    attempts: int = 0
    duration_s: float = 0.0
    error: ErrorRecord | None = None
    diff: tuple[FieldChange, ...] = ()  # what verification still found different
    output: str | None = None  # Command's captured output, size-capped
    details: dict[str, Any] = Field(default_factory=dict)  # per-kind facts (Provider.details)


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(BaseModel):
    """A Kubernetes-style condition."""

    model_config = ConfigDict(frozen=True)

    type: str  # Ready, Staged, Applied, Drifted, Degraded, Stale
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: datetime = Field(default_factory=utcnow)
    observed_generation: int = 0


class RunState(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # Ctrl-C or the window closed: running steps finished
    WAITING = "waiting"  # staged; the apply gate is closed (see ``gate`` and ``opens_at``)
    PAUSED = "paused"  # the node's lifecycle state pauses desired state: nothing was done
    CRASHED = "crashed"  # found unfinished by a later run (the process died)


class RunRecord(BaseModel):
    """One run of the engine over a manifest, as stored and as shown by ``accord status``."""

    run_id: str
    manifest: str
    generation: int
    goal: StateGoal
    state: RunState = RunState.RUNNING
    pid: int = 0
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    resumes: str | None = None  # the crashed or interrupted run this one picks up
    gate: str | None = None  # why apply was (not) allowed
    opens_at: datetime | None = None  # when waiting: when the gate is expected to open
    counts: dict[str, int] = Field(default_factory=dict)  # resources per phase
    changed: int = 0  # resources this run changed (the rest of "applied" was already right)
    conditions: tuple[Condition, ...] = ()
    resources: tuple[ResourceStatus, ...] = ()
