"""Pruning: remove what left the manifest, dependents first (``accord.engine.converge``).

A removed id is deleted through its provider, which removes what accord created and restores
what it adopted (the prior recorded then), with three exceptions: an id renamed in the manifest
only hands its record over (``accord.engine.handover``); a resource that was already as desired
when accord adopted it (prior ``KEEP``) is left as it is; and an id whose delete fails stays in
the inventory, to be pruned by a later run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from accord.engine import executor
from accord.engine.graph import Graph
from accord.engine.inventory import Inventory, Managed
from accord.engine.journal import Journal
from accord.engine.report import Reporter
from accord.engine.run_record import error_record
from accord.model.plan import Action, Plan
from accord.model.status import Phase, ResourceStatus, RunRecord
from accord.providers.base import Context, Memo
from accord.providers.registry import Registry

KEEP: Memo = {"keep": True}  # the prior of a resource that was already converged when adopted


async def prune(
    run: RunRecord,
    plan: Plan,
    managed: dict[str, Managed],
    inventory: Inventory,
    *,
    registry: Registry,
    context: Context,
    heirs: dict[str, str],
    journal: Journal,
    reporter: Reporter,
    stop: asyncio.Event,
    timed: Callable[[Awaitable[str | None]], Awaitable[str | None]],
    pruned: list[ResourceStatus],
) -> None:
    """Remove resources that left the manifest, dependents first.

    ``timed`` bounds each delete by the run's step timeout. Each status is appended to
    ``pruned`` as soon as it is known, so that an interrupted run's record shows it.
    """
    gone = [managed[step.id] for step in plan.prune]
    if not gone:
        return
    names = {m.id for m in gone}
    graph = Graph.compile((m.id, [d for d in m.depends_on if d in names]) for m in gone)
    reporter.phase("prune", len(gone))

    async def step(i: int) -> bool:
        record = gone[i]
        status = ResourceStatus(id=record.id, kind=record.kind, action=Action.DELETE)
        try:
            if record.id in heirs:  # the path is still managed: only forget the id
                note = f"handed over to {heirs[record.id]!r}"
            elif record.prior == KEEP:
                note = "kept: it was already so when accord adopted it"
            else:
                provider = registry.get(record.kind)
                spec = provider.spec_model.model_validate(record.spec)
                ctx = context.bind(record.id)
                said = await timed(provider.delete(ctx, spec, record.prior))
                note = said or "deleted"
            await inventory.remove(record.id)
            status.phase, status.reason = Phase.PRUNED, note
            await journal.event(run.run_id, "pruned", resource=record.id, note=note)
            ok = True
        except Exception as exc:  # noqa: BLE001 - recorded as the resource's failure
            status.phase, status.error = Phase.FAILED, error_record(exc)
            await journal.event(run.run_id, "failed", resource=record.id, during="prune",
                                error=status.error.model_dump())  # fmt: skip
            ok = False
        pruned.append(status)
        reporter.step("prune", status)
        return ok

    await executor.execute(graph.reversed(), step, concurrency=1, stop=stop)


def prune_reason(resource_id: str, heirs: dict[str, str]) -> str:
    heir = heirs.get(resource_id)
    return f"renamed to {heir!r}" if heir else "no longer in the manifest"
