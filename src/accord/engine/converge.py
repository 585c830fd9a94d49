"""Converge one machine to a manifest: observe → plan → stage → apply → verify → prune.

The state goal decides where a run stops (Symphony): ``dry_run`` after the plan, writing
nothing anywhere; ``stage`` after staging, having changed nothing live; ``apply`` at the end.
Each resource is applied only if its diff is non-empty (peace: check, apply what differs,
verify), in dependency order through the executor. A resource whose apply fails blocks only
its dependents. After apply, every changed resource is observed again: a remaining diff is a
failure that shows the diff.

Retries: a ``TransientError`` is retried with backoff; each retry observes afresh, so it
converges from whatever the failed attempt left behind.

Refresh (``restart_on``): when a resource's trigger applied a change in this run, its
provider's ``refresh`` runs once, after its own apply or no-op and before verification; an owed
refresh survives failures and crashes (``accord.engine.refresh``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from accord import errors
from accord.engine import executor
from accord.engine.gate import Gate, GateDecision
from accord.engine.graph import Graph
from accord.engine.inventory import Inventory, Managed
from accord.engine.journal import Journal
from accord.engine.refresh import Refreshes, because, owed, planned, reverting, triggers_of
from accord.engine.report import NullReporter, Reporter
from accord.engine.retry import RetryPolicy, retrying
from accord.model.manifest import Manifest, Resource, StateFlag, StateGoal
from accord.model.plan import Action, Change, FieldChange, Plan, PlannedStep
from accord.model.status import (
    Condition,
    ConditionStatus,
    ErrorRecord,
    Phase,
    ResourceStatus,
    RunRecord,
    RunState,
)
from accord.providers.base import Context, Memo
from accord.providers.registry import AnyProvider, Registry
from accord.store.base import Store

T = TypeVar("T")
MAX_REPORTED = 1000  # resource statuses kept in a run record beyond the counts
KEEP: Memo = {"keep": True}  # the prior of a resource that was already converged when adopted


@dataclass(frozen=True, slots=True)
class Options:
    goal: StateGoal = StateGoal.APPLY
    concurrency: int = 8
    step_timeout: float | None = 600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    on_failure: Literal["continue", "revert"] = "continue"
    prune: bool = True
    gate: Gate | None = None  # windows, lifecycle policy, force; None: always open


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


class Converge:
    """One run of one manifest against one store."""

    def __init__(
        self,
        *,
        store: Store,
        registry: Registry,
        context: Context,
        options: Options | None = None,
        reporter: Reporter | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.context = context
        self.options = options or Options()
        self.reporter: Reporter = reporter or NullReporter()
        self.stop = stop or asyncio.Event()
        self.journal = Journal(store)
        self.pruned: list[ResourceStatus] = []
        self.window_closed = False
        self.heirs: dict[str, str] = {}  # pruned id → the new id that manages the same path
        self.debts: dict[str, tuple[str, ...]] = {}  # refreshes owed by earlier runs, by id

    # -- planning (read-only) ------------------------------------------------------------

    async def plan(self, manifest: Manifest) -> tuple[Plan, list[Slot], dict[str, Managed]]:
        """Observe everything and diff it. Reads the store and the machine; writes nothing."""
        self._check_policy(manifest)
        slots = [
            Slot(r, self.registry.get(r.kind), self.context.bind(r.id)) for r in manifest.resources
        ]
        problems: list[errors.InputError] = []

        async def observe(slot: Slot) -> None:
            try:
                slot.current = await slot.provider.observe(slot.ctx, slot.resource.spec)
                slot.change = slot.provider.diff(slot.resource.spec, slot.current)
                # Here, not in the plan loop: a staged() that fails is this resource's failure.
                slot.unstaged = (
                    slot.provider.stages
                    and not slot.change.is_noop
                    and not await slot.provider.staged(slot.ctx, slot.resource.spec)
                )
            except errors.InputError as exc:
                problems.append(exc)
            except Exception as exc:  # noqa: BLE001 - recorded as the resource's failure
                self._fail(slot, exc)

        await _bounded(observe, slots, self.options.concurrency)
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise errors.InputError("\n".join(sorted(str(p) for p in problems)))
        asked = triggers_of([(s.provider, s.ctx, s.resource) for s in slots])
        for slot, named in zip(slots, asked, strict=True):
            slot.triggers = named
        inventory = Inventory(self.store, manifest.metadata.name)
        managed = await inventory.load()
        ids = {r.id for r in manifest.resources}
        heirs = _heirs(manifest, [m for m in managed.values() if m.id not in ids])
        for old, new in heirs.items():
            if new not in managed:  # the new id inherits what accord found before the old one
                managed[new] = dataclasses.replace(managed[old], id=new)
        refreshing = any(s.triggers for s in slots)
        self.debts = await owed(inventory, managed) if refreshing else {}
        changes: dict[str, Change | None] = (
            {s.resource.id: s.change for s in slots} if refreshing else {}
        )
        steps = []
        for slot in slots:
            change = slot.change or Change(action=Action.UPDATE, reason="observe failed")
            refresh = None
            if slot.triggers:
                verb = slot.provider.refresh_verb
                refresh = planned(slot.resource.id, slot.triggers, verb, changes, self.debts)
            steps.append(
                PlannedStep.of(slot.resource.id, slot.resource.kind, change, slot.unstaged, refresh)
            )
        prune = tuple(
            PlannedStep(
                id=m.id,
                kind=m.kind,
                change=Change(action=Action.DELETE, reason=_prune_reason(m.id, heirs)),
            )
            for m in managed.values()
            if m.id not in ids
        )
        self.heirs = heirs
        plan = Plan(
            manifest=manifest.metadata.name,
            generation=manifest.metadata.generation,
            goal=self.options.goal,
            steps=tuple(steps),
            prune=prune if self.options.prune else (),
        )
        return plan, slots, managed

    def _check_policy(self, manifest: Manifest) -> None:
        if self.context.allow_commands:
            return
        commands = [r.id for r in manifest.resources if r.kind == "Command"]
        if commands:
            raise errors.PolicyError(
                f"resources {', '.join(map(repr, commands))} are Commands; "
                "this run does not allow commands (pass --allow-commands)"
            )

    # -- the run -----------------------------------------------------------------------

    async def run(self, manifest: Manifest) -> tuple[Plan, RunRecord]:
        """Run to the goal. Input errors raise before anything is written or changed."""
        graph = Graph.compile((r.id, r.predecessors) for r in manifest.resources)
        plan, slots, managed = await self.plan(manifest)
        self.reporter.planned(plan)
        meta = manifest.metadata
        if self.options.goal is StateGoal.DRY_RUN:
            return plan, self._record(
                RunRecord(run_id="dry-run", manifest=meta.name, generation=meta.generation,
                          goal=StateGoal.DRY_RUN, state=RunState.SUCCEEDED),
                slots, plan,
            )  # fmt: skip
        gate = self.options.gate
        decision = gate.decide(datetime.now(UTC)) if gate else GateDecision(open=True, reason="")
        run = await self.journal.begin(meta.name, meta.generation, self.options.goal)
        run.gate = decision.reason
        if decision.paused:
            await self.journal.event(run.run_id, "paused", reason=decision.reason)
            await self.journal.finish(self._record(run, slots, plan), RunState.PAUSED)
            return plan, run
        try:
            await self._stage(run, slots, plan)
            if self.options.goal is StateGoal.APPLY and not decision.open:
                return plan, await self._wait(run, slots, plan, decision)
            if self.options.goal is StateGoal.APPLY:
                inventory = Inventory(self.store, meta.name)
                await self._apply(run, graph, slots, managed, inventory, decision)
                failed = any(s.phase is Phase.FAILED for s in slots)
                if failed and self.options.on_failure == "revert":
                    await self._revert(run, slots, inventory)
                if plan.prune and not self.stop.is_set() and not self.window_closed:
                    await self._prune(run, plan, managed, inventory)
        except asyncio.CancelledError:
            await self.journal.finish(self._record(run, slots, plan), RunState.INTERRUPTED)
            raise
        state = RunState.SUCCEEDED
        if self.stop.is_set() or self.window_closed:
            state = RunState.INTERRUPTED
        elif any(s.phase in (Phase.FAILED, Phase.BLOCKED) for s in slots):
            state = RunState.FAILED
        await self.journal.finish(self._record(run, slots, plan), state)
        return plan, run

    async def _stage(self, run: RunRecord, slots: list[Slot], plan: Plan) -> None:
        todo = [s for s, step in zip(slots, plan.steps, strict=True) if step.stage]
        self.reporter.phase("stage", len(todo))

        async def stage(slot: Slot) -> None:
            if self.stop.is_set():
                return
            await self.journal.event(run.run_id, "staging", resource=slot.resource.id)
            ctx = slot.ctx.bind(
                slot.resource.id,
                progress=lambda done, total: self.reporter.transfer(slot.resource.id, done, total),
            )
            started = time.monotonic()
            try:
                _, attempts = await retrying(
                    lambda: self._timed(slot.provider.stage(ctx, slot.resource.spec)),
                    self.options.retry,
                    on_retry=lambda n, exc, pause: self._note_retry(run, slot, "stage", exc, pause),
                )
                slot.attempts = attempts
                slot.flag = StateFlag.STAGED
                slot.phase = Phase.STAGED
                await self.journal.event(run.run_id, "staged", resource=slot.resource.id)
            except Exception as exc:  # noqa: BLE001 - recorded as the resource's failure
                self._fail(slot, exc)
                await self.journal.event(
                    run.run_id, "failed", resource=slot.resource.id, during="stage",
                    error=slot.error.model_dump() if slot.error else None,
                )  # fmt: skip
            slot.duration_s += time.monotonic() - started
            self.reporter.step("stage", slot.to_status())

        await _bounded(stage, todo, self.options.concurrency)
        for slot in slots:
            if slot.phase is Phase.PENDING and slot.change is not None:
                if slot.change.is_noop:
                    slot.flag = StateFlag.APPLIED
                    slot.phase = Phase.APPLIED
                else:
                    slot.flag = StateFlag.STAGED
                    slot.phase = Phase.STAGED

    async def _wait(
        self, run: RunRecord, slots: list[Slot], plan: Plan, decision: GateDecision
    ) -> RunRecord:
        """Staged, and the gate is closed: record when it is expected to open."""
        run.opens_at = decision.opens_at
        opens_at = decision.opens_at.isoformat() if decision.opens_at else None
        await self.journal.event(run.run_id, "waiting", reason=decision.reason, opens_at=opens_at)
        await self.journal.finish(self._record(run, slots, plan), RunState.WAITING)
        return run

    async def _apply(
        self,
        run: RunRecord,
        graph: Graph,
        slots: list[Slot],
        managed: dict[str, Managed],
        inventory: Inventory,
        decision: GateDecision,
    ) -> None:
        revert = self.options.on_failure == "revert"
        specs = [s.resource.spec.model_dump() for s in slots]
        preds = [s.resource.predecessors for s in slots]

        inherited = set(self.heirs.values())  # records taken over from a renamed id: rewrite

        def current_record(i: int) -> bool:
            rid = slots[i].resource.id
            known = managed.get(rid)
            return (
                known is not None
                and rid not in inherited
                and known.spec == specs[i]
                and known.depends_on == preds[i]
            )

        ids = [s.resource.id for s in slots]
        refreshes = Refreshes(ids, [s.triggers for s in slots], managed, inventory, self.debts)

        def instant(i: int) -> bool:
            slot = slots[i]
            return slot.phase is Phase.APPLIED and current_record(i) and not refreshes.waiting(i)

        self.reporter.phase("apply", sum(1 for s in slots if s.phase is not Phase.APPLIED))

        async def step(i: int) -> bool:
            try:
                return await settle(i)
            except Exception as exc:  # noqa: BLE001 - before or around the apply proper
                # A snapshot, an inventory write or a journal append that fails is this
                # resource's failure too; uncaught, the executor would only mark the step.
                slot = slots[i]
                self._fail(slot, exc)
                await self.journal.event(
                    run.run_id, "failed", resource=slot.resource.id, during="prepare",
                    error=slot.error.model_dump() if slot.error else None,
                )  # fmt: skip
                return False

        async def settle(i: int) -> bool:
            slot = slots[i]
            rid = slot.resource.id
            if slot.phase is Phase.FAILED:
                return False
            spec = slot.resource.spec
            known = managed.get(rid)
            slot.was_managed = known is not None
            if not current_record(i):
                prior = known.prior if known else None
                if known is None and slot.change is not None and slot.change.is_noop:
                    prior = KEEP  # already as desired when adopted: pruning leaves it as it is
                elif known is None and slot.provider.reversible:
                    prior = await slot.provider.snapshot(slot.ctx, spec, slot.current)
                pending = tuple(t for t in known.pending if t in slot.triggers) if known else ()
                record = Managed(rid, slot.resource.kind, specs[i], preds[i], prior, pending)
                await inventory.save(record)  # before apply touches anything: keeps the prior
                managed[rid] = record
                slot.reverted_record = known
            now, earlier = refreshes.due(i)
            change = slot.change
            noop = change is None or change.is_noop
            if noop and not now and not earlier:
                return True  # converged already; only the inventory needed writing
            await refreshes.owe(i, now)  # before anything changes: a crash keeps the debt
            started = time.monotonic()
            if change is not None and not noop:
                await self.journal.event(run.run_id, "applying", resource=rid,
                                         action=change.action.value)  # fmt: skip
            try:
                if revert and not noop and slot.provider.reversible:
                    slot.before = await slot.provider.snapshot(slot.ctx, spec, slot.current)
                attempts = await self._converge_one(run, slot, (*now, *earlier), apply=not noop)
                slot.attempts = attempts
                slot.phase = Phase.APPLIED
                slot.flag = StateFlag.APPLIED
                if not noop:
                    await self.journal.event(run.run_id, "applied", resource=rid,
                                             attempts=attempts, output=slot.output)  # fmt: skip
                if now or earlier:
                    refreshed = f"{slot.refreshed}: {because(now, earlier)}"
                    own = f"{change.reason}; " if change is not None and not noop else ""
                    slot.note = own + refreshed
                    await self.journal.event(run.run_id, "refreshed", resource=rid,
                                             triggers=[*now, *earlier], note=slot.refreshed,
                                             output=slot.output if noop else None)  # fmt: skip
                    await refreshes.paid(i)
                refreshes.changed.add(i)
                ok = True
            except Exception as exc:  # noqa: BLE001 - recorded as the resource's failure
                self._fail(slot, exc)
                await self.journal.event(
                    run.run_id, "failed", resource=rid, during=slot.during,
                    error=slot.error.model_dump() if slot.error else None,
                    diff=[f.model_dump(mode="json") for f in slot.diff] or None,
                    output=slot.output,
                )  # fmt: skip
                ok = False
            slot.duration_s += time.monotonic() - started
            self.reporter.step("apply", slot.to_status())
            return ok

        halt = asyncio.Event()  # Ctrl-C, or the window closing: finish running steps, start none
        watcher = asyncio.create_task(self._halt_when(halt, decision.closes_at, run))
        try:
            outcomes = await executor.execute(
                graph, step, concurrency=self.options.concurrency, stop=halt, instant=instant
            )
        finally:
            watcher.cancel()
        for slot, outcome in zip(slots, outcomes, strict=True):
            if outcome is executor.Outcome.BLOCKED:
                slot.phase = Phase.BLOCKED
                slot.note = "a dependency failed"
            elif outcome is executor.Outcome.INTERRUPTED and slot.phase is not Phase.APPLIED:
                slot.phase = Phase.INTERRUPTED

    async def _halt_when(
        self, halt: asyncio.Event, closes_at: datetime | None, run: RunRecord
    ) -> None:
        """Set ``halt`` on Ctrl-C or when the window closes (end-of-window policy)."""
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self.stop.wait())]
        if closes_at is not None:
            delay = max(0.0, (closes_at - datetime.now(UTC)).total_seconds())
            waits.append(asyncio.ensure_future(asyncio.sleep(delay)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if not self.stop.is_set():
            self.window_closed = True
            await self.journal.event(run.run_id, "window_closed", closes_at=str(closes_at))
        halt.set()

    async def _converge_one(
        self, run: RunRecord, slot: Slot, fired: tuple[str, ...] = (), *, apply: bool = True
    ) -> int:
        """Apply (unless ``apply`` is false: a refresh only), retrying transient failures from a
        fresh observation; refresh if triggers ``fired``; then verify."""
        spec = slot.resource.spec
        outputs: list[str] = []
        ctx = slot.ctx.bind(slot.resource.id, output=outputs.append, triggered=fired)
        first = True
        attempts = 0

        async def attempt() -> None:
            nonlocal first
            if not first:  # a failed attempt may have changed things: look again
                slot.current = await slot.provider.observe(ctx, spec)
                if slot.provider.diff(spec, slot.current).is_noop:
                    return
            first = False
            await slot.provider.apply(ctx, spec, slot.current)

        try:
            if apply:
                _, attempts = await retrying(
                    lambda: self._timed(attempt()),
                    self.options.retry,
                    on_retry=lambda n, exc, pause: self._note_retry(run, slot, "apply", exc, pause),
                )
            if fired:
                slot.during = "refresh"
                slot.refreshed, tries = await retrying(
                    lambda: self._timed(slot.provider.refresh(ctx, spec, slot.current)),
                    self.options.retry,
                    on_retry=lambda n, exc, p: self._note_retry(run, slot, "refresh", exc, p),
                )
                attempts = max(attempts, tries)
                slot.during = "apply"  # verification is reported as part of apply, as before
        finally:
            if outputs:
                slot.output = "\n".join(outputs)
        if slot.provider.verifiable:
            after = await slot.provider.observe(slot.ctx, spec)
            verdict = slot.provider.diff(spec, after)
            if not verdict.is_noop:
                slot.diff = verdict.fields
                raise errors.PermanentError(f"verification failed: {verdict.describe()}")
            slot.current = after
        return attempts

    async def _revert(self, run: RunRecord, slots: list[Slot], inventory: Inventory) -> None:
        """Put back, newest first, what this run applied: the revert policy."""
        done = [s for s in slots if s.phase is Phase.APPLIED and s.change and not s.change.is_noop]
        self.reporter.phase("revert", len(done))
        triggers: dict[str, tuple[str, ...]] = {
            s.resource.id: s.triggers for s in slots if s.triggers
        }
        for slot in reversed(done):
            if not slot.provider.reversible:
                continue
            # Before it changes back: whatever it restarted now runs a stale config.
            await reverting(inventory, slot.resource.id, triggers)
            try:
                note = await slot.provider.delete(slot.ctx, slot.resource.spec, slot.before)
            except Exception as exc:  # noqa: BLE001 - the others are still put back
                # The change stays in place (and in the inventory); the run ends failed.
                self._fail(slot, exc)
                slot.note = f"revert failed: {slot.error.message if slot.error else exc}"
                await self.journal.event(run.run_id, "revert_failed", resource=slot.resource.id,
                                         error=str(exc))  # fmt: skip
                self.reporter.step("revert", slot.to_status())
                continue
            slot.phase = Phase.REVERTED
            slot.note = f"reverted: {note}"
            if slot.was_managed and slot.reverted_record is not None:
                await inventory.save(slot.reverted_record)
            elif not slot.was_managed:
                await inventory.remove(slot.resource.id)
            await self.journal.event(run.run_id, "reverted", resource=slot.resource.id, note=note)
            self.reporter.step("revert", slot.to_status())

    async def _prune(
        self, run: RunRecord, plan: Plan, managed: dict[str, Managed], inventory: Inventory
    ) -> None:
        """Remove resources that left the manifest, dependents first."""
        gone = [managed[step.id] for step in plan.prune]
        if not gone:
            return
        names = {m.id for m in gone}
        graph = Graph.compile((m.id, [d for d in m.depends_on if d in names]) for m in gone)
        self.reporter.phase("prune", len(gone))

        async def step(i: int) -> bool:
            record = gone[i]
            status = ResourceStatus(id=record.id, kind=record.kind, action=Action.DELETE)
            try:
                if record.id in self.heirs:  # the path is still managed: only forget the id
                    note = f"handed over to {self.heirs[record.id]!r}"
                elif record.prior == KEEP:
                    note = "kept: it was already so when accord adopted it"
                else:
                    provider = self.registry.get(record.kind)
                    spec = provider.spec_model.model_validate(record.spec)
                    ctx = self.context.bind(record.id)
                    said = await self._timed(provider.delete(ctx, spec, record.prior))
                    note = said or "deleted"
                await inventory.remove(record.id)
                status.phase, status.reason = Phase.PRUNED, note
                await self.journal.event(run.run_id, "pruned", resource=record.id, note=note)
                ok = True
            except Exception as exc:  # noqa: BLE001 - recorded as the resource's failure
                status.phase, status.error = Phase.FAILED, _error_record(exc)
                await self.journal.event(run.run_id, "failed", resource=record.id, during="prune",
                                         error=status.error.model_dump())  # fmt: skip
                ok = False
            self.pruned.append(status)
            self.reporter.step("prune", status)
            return ok

        await executor.execute(graph.reversed(), step, concurrency=1, stop=self.stop)

    # -- helpers -----------------------------------------------------------------------

    async def _timed(self, work: Awaitable[T]) -> T:
        if self.options.step_timeout is None:
            return await work
        try:
            async with asyncio.timeout(self.options.step_timeout):
                return await work
        except TimeoutError:
            raise errors.TransientError(
                f"timed out after {self.options.step_timeout:g} s"
            ) from None

    async def _note_retry(
        self, run: RunRecord, slot: Slot, phase: str, exc: errors.TransientError, pause: float
    ) -> None:
        await self.journal.event(run.run_id, "retrying", resource=slot.resource.id, during=phase,
                                 error=str(exc), pause=round(pause, 3))  # fmt: skip

    def _fail(self, slot: Slot, exc: BaseException) -> None:
        slot.phase = Phase.FAILED
        slot.error = _error_record(exc)

    def _record(self, run: RunRecord, slots: list[Slot], plan: Plan) -> RunRecord:
        """Fill the run record: counts of every phase, statuses of what is not plainly done.

        A resource whose provider reports details (a package's version, a unit's state) is
        always listed, so that fleet status can show them; plain files are not, so that a
        manifest of 10,000 converged files makes a small record.
        """
        counts: dict[str, int] = {}
        for phase in [s.phase for s in slots] + [p.phase for p in self.pruned]:
            counts[phase.value] = counts.get(phase.value, 0) + 1
        changed = [s for s in slots if s.refreshed or (s.change and not s.change.is_noop)]
        notable = []
        for s in slots:
            details = s.provider.details(s.resource.spec, s.current)
            plain = s.phase is Phase.APPLIED and s.change is not None and s.change.is_noop
            if details or not plain or s.refreshed:
                notable.append(s.to_status(details))
        notable += self.pruned
        run.counts = counts
        run.changed = sum(1 for s in changed if s.phase is Phase.APPLIED)
        run.resources = tuple(notable[:MAX_REPORTED])
        run.conditions = _conditions(run, notable)
        return run


def _conditions(run: RunRecord, statuses: list[ResourceStatus]) -> tuple[Condition, ...]:
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


def _prune_reason(resource_id: str, heirs: dict[str, str]) -> str:
    heir = heirs.get(resource_id)
    return f"renamed to {heir!r}" if heir else "no longer in the manifest"


def _heirs(manifest: Manifest, gone: list[Managed]) -> dict[str, str]:
    """Old ids whose thing (``Spec.identity_field``: a path, a unit, a container) a resource
    of the new manifest manages, with the same kind: a rename, not a removal.

    Pruning such an id would restore the thing's pre-accord state (or remove it) under the new
    resource's feet; instead the new id takes over the old one's record (and its prior state).
    """
    fields: dict[str, str] = {}
    claimed: dict[tuple[str, str], str] = {}
    for resource in manifest.resources:
        field = fields.setdefault(resource.kind, type(resource.spec).identity_field)
        identity = _identity(field, getattr(resource.spec, field, None))
        if identity is not None:
            claimed[(resource.kind, identity)] = resource.id
    heirs: dict[str, str] = {}
    for record in gone:
        named = fields.get(record.kind)
        identity = None if named is None else _identity(named, record.spec.get(named))
        if identity is not None and (record.kind, identity) in claimed:
            heirs[record.id] = claimed[(record.kind, identity)]
    return heirs


def _identity(field: str, value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return os.path.normpath(value) if field == "path" else value


def _error_record(exc: BaseException) -> ErrorRecord:
    return ErrorRecord(
        type=type(exc).__name__,
        message=str(exc) or type(exc).__name__,
        transient=isinstance(exc, errors.TransientError),
    )


async def _bounded(work: Callable[[Any], Awaitable[None]], items: list[Any], limit: int) -> None:
    """Run ``work`` over ``items`` with at most ``limit`` at once, in a few worker tasks."""
    queue = iter(items)

    async def worker() -> None:
        for item in queue:
            await work(item)

    await asyncio.gather(*(worker() for _ in range(min(limit, len(items)))))
