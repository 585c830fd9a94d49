"""Refreshes (``restart_on``): which resources a run must refresh, and the debt kept across runs.

A resource whose provider names ``triggers`` (Puppet's ``subscribe``, Ansible's ``notify``) is
ordered after them: they are among the ids its spec references, which the graph treats as
``depends_on``. When one of them applies a change in an apply run, or is refreshed itself, the
resource's ``refresh`` is due, once, after its own apply or no-op (see ``accord.providers.base``).

A refresh is owed from the moment a trigger is about to change until the refresh has run: the
debt is written into the resource's inventory record (``Managed.pending``) *before* the trigger
applies and cleared after the refresh. A refresh that a failure, a blocked dependency or a
crash kept from running is therefore run by the next run, even though the trigger no longer
changes then: at least once, never lost. (A resource accord has not recorded yet, being new
to it, cannot hold the debt; if the run dies before it is first applied, the next run treats
it as new.)

Cost: a manifest without triggers builds two empty dicts and asks nothing per step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from accord import errors
from accord.engine.inventory import Inventory, Managed
from accord.model.manifest import Resource
from accord.model.plan import Change, Refresh
from accord.providers.base import Context, Provider


def triggers_of(
    resources: Sequence[tuple[Provider[Any, Any], Context, Resource]],
) -> list[tuple[str, ...]]:
    """Each resource's triggers, asked only of providers that override ``Provider.triggers``.

    A trigger must be one of the ids the resource runs after, or its refresh could run before
    the trigger's change: that is a bug of the provider, reported as such.
    """
    overrides: dict[type[Any], bool] = {}
    found: list[tuple[str, ...]] = []
    for provider, ctx, resource in resources:
        cls = type(provider)
        if cls not in overrides:
            overrides[cls] = cls.triggers is not Provider.triggers
        if not overrides[cls]:
            found.append(())
            continue
        named = tuple(provider.triggers(ctx, resource.spec))
        stray = [t for t in named if t not in resource.predecessors]
        if stray:
            raise errors.AccordError(
                f"resource {resource.id!r}: {resource.kind} triggers on {stray}, which its spec "
                "does not reference (Spec.references): a bug in that provider"
            )
        found.append(named)
    return found


def planned(
    resource_id: str,
    triggers: tuple[str, ...],
    verb: str,
    changes: Mapping[str, Change | None],
    managed: Mapping[str, Managed],
) -> Refresh:
    """What a plan says of a resource with triggers: which of them change, which are owed."""
    now = tuple(t for t in triggers if (c := changes.get(t)) is not None and not c.is_noop)
    record = managed.get(resource_id)
    owed = record.pending if record is not None else ()
    earlier = tuple(t for t in owed if t in triggers and t not in now)
    return Refresh(action=verb, triggers=triggers, expected=(*now, *earlier), pending=earlier)


def because(now: Sequence[str], earlier: Sequence[str]) -> str:
    """Why a refresh ran, for the status: ``'config' changed``."""
    parts = []
    if now:
        parts.append(" and ".join(repr(t) for t in now) + " changed")
    if earlier:
        parts.append(
            " and ".join(repr(t) for t in earlier)
            + " changed in an earlier run that did not finish this refresh"
        )
    return "; ".join(parts)


class Refreshes:
    """One apply's bookkeeping: what changed, and which resources are owed a refresh.

    Resources are numbered as the run's graph numbers them; ``managed`` is the run's inventory
    (updated in place as debts are written and paid).
    """

    def __init__(
        self,
        ids: Sequence[str],
        triggers: Sequence[tuple[str, ...]],
        managed: dict[str, Managed],
        inventory: Inventory,
    ) -> None:
        self.ids = ids
        self.managed = managed
        self.inventory = inventory
        self.triggers: dict[int, tuple[int, ...]] = {}
        self.subscribers: dict[int, list[int]] = {}
        if any(triggers):
            index = {rid: i for i, rid in enumerate(ids)}
            for i, named in enumerate(triggers):
                if named:
                    self.triggers[i] = tuple(index[t] for t in named)
                    for t in self.triggers[i]:
                        self.subscribers.setdefault(t, []).append(i)
        self.owed = {rid: m.pending for rid, m in managed.items() if m.pending}  # at the start
        self.changed: set[int] = set()  # applied a change, or were refreshed, in this run

    def due(self, i: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(triggers of ``i`` that changed in this run, those owed from an earlier run)."""
        if not self.triggers or i not in self.triggers:
            return (), ()
        mine = self.triggers[i]
        now = tuple(self.ids[t] for t in mine if t in self.changed)
        named = {self.ids[t] for t in mine}
        owed = self.owed.get(self.ids[i], ())
        return now, tuple(t for t in owed if t in named and t not in now)

    def waiting(self, i: int) -> bool:
        """Whether ``i`` has a refresh due (so it cannot complete inline as converged)."""
        return bool(self.triggers) and i in self.triggers and any(self.due(i))

    async def owe(self, i: int, now: tuple[str, ...]) -> None:
        """Before ``i`` changes or refreshes: record the refreshes this makes owed (``i``'s own
        for ``now``, and its subscribers')."""
        if now:
            await self._owe(self.ids[i], now)
        for subscriber in self.subscribers.get(i, ()):
            await self._owe(self.ids[subscriber], (self.ids[i],))

    async def paid(self, i: int) -> None:
        """``i`` was refreshed: clear what it was owed."""
        record = self.managed.get(self.ids[i])
        if record is not None and record.pending:
            self.managed[record.id] = record = dataclasses.replace(record, pending=())
            await self.inventory.save(record)

    async def _owe(self, rid: str, trigger_ids: tuple[str, ...]) -> None:
        record = self.managed.get(rid)
        if record is None or all(t in record.pending for t in trigger_ids):
            return
        pending = tuple(dict.fromkeys((*record.pending, *trigger_ids)))
        # In the dict before the write awaits, so that two triggers finishing together add up.
        self.managed[rid] = record = dataclasses.replace(record, pending=pending)
        await self.inventory.save(record)
