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

This module is the run's orchestration; its parts live beside it: ``slot`` (a resource's working
state), ``handover`` (renamed ids), ``revert`` (the revert policy), ``prune`` (what left the
manifest) and ``run_record`` (failures and the run record).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from accord import errors
from accord.engine import executor, handover, run_record
from accord.engine.gate import Gate, GateDecision
from accord.engine.graph import Graph
from accord.engine.inventory import Inventory, Managed
from accord.engine.journal import Journal
from accord.engine.prune import KEEP, prune, prune_reason
from accord.engine.refresh import Refreshes, because, owed, planned, triggers_of
from accord.engine.report import NullReporter, Reporter
from accord.engine.retry import RetryPolicy, retrying
from accord.engine.revert import revert
from accord.engine.slot import Slot
from accord.model.manifest import Manifest, StateFlag, StateGoal
from accord.model.plan import Action, Change, Plan, PlannedStep
from accord.model.status import Phase, ResourceStatus, RunRecord, RunState
from accord.providers.base import Context
from accord.providers.registry import Registry
from accord.store.base import Store

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Options:
    goal: StateGoal = StateGoal.APPLY
    concurrency: int = 8
    step_timeout: float | None = 600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    on_failure: Literal["continue", "revert"] = "continue"
    prune: bool = True
    gate: Gate | None = None  # windows, lifecycle policy, force; None: always open


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
                run_record.fail(slot, exc)

        await executor.bounded(observe, slots, self.options.concurrency)
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
        heirs = handover.heirs(manifest, [m for m in managed.values() if m.id not in ids])
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
                change=Change(action=Action.DELETE, reason=prune_reason(m.id, heirs)),
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
            return plan, run_record.record(
                RunRecord(run_id="dry-run", manifest=meta.name, generation=meta.generation,
                          goal=StateGoal.DRY_RUN, state=RunState.SUCCEEDED),
                slots, self.pruned,
            )  # fmt: skip
        gate = self.options.gate
        decision = gate.decide(datetime.now(UTC)) if gate else GateDecision(open=True, reason="")
        run = await self.journal.begin(meta.name, meta.generation, self.options.goal)
        run.gate = decision.reason
        if decision.paused:
            await self.journal.event(run.run_id, "paused", reason=decision.reason)
            await self.journal.finish(run_record.record(run, slots, self.pruned), RunState.PAUSED)
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
                    await revert(
                        run, slots, inventory, journal=self.journal, reporter=self.reporter
                    )
                if plan.prune and not self.stop.is_set() and not self.window_closed:
                    await prune(
                        run, plan, managed, inventory,
                        registry=self.registry, context=self.context, heirs=self.heirs,
                        journal=self.journal, reporter=self.reporter, stop=self.stop,
                        timed=self._timed, pruned=self.pruned,
                    )  # fmt: skip
        except asyncio.CancelledError:
            await self.journal.finish(
                run_record.record(run, slots, self.pruned), RunState.INTERRUPTED
            )
            raise
        state = RunState.SUCCEEDED
        if self.stop.is_set() or self.window_closed:
            state = RunState.INTERRUPTED
        elif any(s.phase in (Phase.FAILED, Phase.BLOCKED) for s in slots):
            state = RunState.FAILED
        await self.journal.finish(run_record.record(run, slots, self.pruned), state)
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
                run_record.fail(slot, exc)
                await self.journal.event(
                    run.run_id, "failed", resource=slot.resource.id, during="stage",
                    error=slot.error.model_dump() if slot.error else None,
                )  # fmt: skip
            slot.duration_s += time.monotonic() - started
            self.reporter.step("stage", slot.to_status())

        await executor.bounded(stage, todo, self.options.concurrency)
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
        await self.journal.finish(run_record.record(run, slots, self.pruned), RunState.WAITING)
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
                run_record.fail(slot, exc)
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
                run_record.fail(slot, exc)
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
