"""What a converge run reports (``accord.engine.converge``): its failures and its run record.

A failure is kept as a serializable ``ErrorRecord`` on the resource's slot (or pruned status).
At the end of a run, or when it pauses, waits or is interrupted, the ``RunRecord`` is filled
from the slots and the pruned statuses: counts of every phase, the statuses worth listing, and
the conditions.
"""

from __future__ import annotations

from accord import errors
from accord.engine.slot import Slot
from accord.model.status import (
    Condition,
    ConditionStatus,
    ErrorRecord,
    Phase,
    ResourceStatus,
    RunRecord,
)

MAX_REPORTED = 1000  # resource statuses kept in a run record beyond the counts


def record(run: RunRecord, slots: list[Slot], pruned: list[ResourceStatus]) -> RunRecord:
    """Fill the run record: counts of every phase, statuses of what is not plainly done.

    A resource whose provider reports details (a package's version, a unit's state) is
    always listed, so that fleet status can show them; plain files are not, so that a
    manifest of 10,000 converged files makes a small record.
    """
    counts: dict[str, int] = {}
    for phase in [s.phase for s in slots] + [p.phase for p in pruned]:
        counts[phase.value] = counts.get(phase.value, 0) + 1
    changed = [s for s in slots if s.refreshed or (s.change and not s.change.is_noop)]
    notable = []
    for s in slots:
        details = s.provider.details(s.resource.spec, s.current)
        plain = s.phase is Phase.APPLIED and s.change is not None and s.change.is_noop
        if details or not plain or s.refreshed:
            notable.append(s.to_status(details))
    notable += pruned
    run.counts = counts
    run.changed = sum(1 for s in changed if s.phase is Phase.APPLIED)
    run.resources = tuple(notable[:MAX_REPORTED])
    run.conditions = conditions(run, notable)
    return run


def conditions(run: RunRecord, statuses: list[ResourceStatus]) -> tuple[Condition, ...]:
    """Conditions from the notable statuses; every other resource is plainly converged."""
    generation = run.generation
    bad = [s.id for s in statuses if s.phase in (Phase.FAILED, Phase.BLOCKED)]
    pending = [s.id for s in statuses if s.phase in (Phase.PENDING, Phase.INTERRUPTED)]
    staged_ok = not bad and not pending
    applied_ok = staged_ok and all(s.phase in (Phase.APPLIED, Phase.PRUNED) for s in statuses)

    def condition(kind: str, ok: bool, reason_ok: str, reason_bad: str, message: str) -> Condition:
        return Condition(
            type=kind,
            status=ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
            reason=reason_ok if ok else reason_bad,
            message=message,
            observed_generation=generation,
        )

    failed_message = f"{len(bad)} failed or blocked: {', '.join(bad[:5])}" if bad else ""
    return (
        condition("Staged", staged_ok, "AllStaged", "NotStaged", failed_message),
        condition("Applied", applied_ok, "AllApplied", "NotApplied", failed_message),
        condition("Ready", applied_ok, "Converged", "NotConverged", failed_message),
        condition("Degraded", bool(bad), "ResourcesFailed", "Healthy", failed_message),
    )


def fail(slot: Slot, exc: BaseException) -> None:
    slot.phase = Phase.FAILED
    slot.error = error_record(exc)


def error_record(exc: BaseException) -> ErrorRecord:
    return ErrorRecord(
        type=type(exc).__name__,
        message=str(exc) or type(exc).__name__,
        transient=isinstance(exc, errors.TransientError),
    )
