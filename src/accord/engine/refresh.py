"""Refreshes (``restart_on``): which resources a run must refresh, and the debt kept across runs.

A resource whose provider names ``triggers`` (Puppet's ``subscribe``, Ansible's ``notify``) is
ordered after them: they are among the ids its spec references, which the graph treats as
``depends_on``. When one of them applies a change in an apply run, or is refreshed itself, the
resource's ``refresh`` is due, once, after its own apply or no-op (see ``accord.providers.base``).

A refresh is owed from the moment a trigger is about to change until the refresh has run: the
debt is written under the resource's own key (``Inventory.owe``, apart from its inventory
record, so a resource new to accord holds it too) *before* the trigger applies, and deleted
after the refresh. A refresh that a failure, a blocked dependency or a crash kept from running
is therefore run by the next run, even though the trigger no longer changes then: at least
once, never lost.

A revert that puts a trigger back changes it again, after its subscribers may have been
refreshed already (a unit restarted with the config the revert removes): ``reverting``, called
before the trigger is put back, makes them owe a refresh, which the next apply run does.

Cost: a manifest without triggers builds two empty dicts, reads no debts and asks nothing per
step.
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


async def owed(inventory: Inventory, managed: Mapping[str, Managed]) -> dict[str, tuple[str, ...]]:
    """The refreshes owed at the start of a run, by resource id: their debt keys, and what
    records of older versions kept in ``Managed.pending``. Read only."""
    debts = await inventory.debts()
    for rid, record in managed.items():
        if record.pending:
            debts[rid] = tuple(dict.fromkeys((*debts.get(rid, ()), *record.pending)))
    return debts


def planned(
    resource_id: str,
    triggers: tuple[str, ...],
    verb: str,
    changes: Mapping[str, Change | None],
    debts: Mapping[str, tuple[str, ...]],
) -> Refresh:
    """What a plan says of a resource with triggers: which of them change, which are owed
    (``debts``: what ``owed`` read)."""
    now = tuple(t for t in triggers if (c := changes.get(t)) is not None and not c.is_noop)
    earlier = tuple(t for t in debts.get(resource_id, ()) if t in triggers and t not in now)
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
    (older records' ``pending`` is cleared in place when paid); ``debts`` is what ``owed`` read
    when the run was planned.
    """

    def __init__(
        self,
        ids: Sequence[str],
        triggers: Sequence[tuple[str, ...]],
        managed: dict[str, Managed],
        inventory: Inventory,
        debts: Mapping[str, tuple[str, ...]],
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
        self.owed = dict(debts)  # at the start: what earlier runs left
        self.written = dict(debts)  # the debt keys as this run leaves them
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
        rid = self.ids[i]
        if self.written.pop(rid, None) is not None:
            await self.inventory.settle(rid)
        record = self.managed.get(rid)
        if record is not None and record.pending:  # kept there by an older version
            self.managed[rid] = record = dataclasses.replace(record, pending=())
            await self.inventory.save(record)

    async def _owe(self, rid: str, trigger_ids: tuple[str, ...]) -> None:
        pending = self.written.get(rid, ())
        if all(t in pending for t in trigger_ids):
            return
        # In the dict before the write awaits, so that two triggers finishing together add up.
        self.written[rid] = pending = tuple(dict.fromkeys((*pending, *trigger_ids)))
        await self.inventory.owe(rid, pending)


async def reverting(
    inventory: Inventory, trigger: str, triggers: Mapping[str, tuple[str, ...]]
) -> tuple[str, ...]:
    """Before a revert puts ``trigger`` back: every resource it triggers (``triggers``: each
    resource's triggers in this run) owes a refresh from it, which the next apply run does.

    The revert changes the trigger again, after its subscribers may have been refreshed (a
    unit restarted on a config the revert now removes), so they are owed one more, whether or
    not the revert turns out to change anything: at least once. The debt is written before the
    trigger changes back, under the subscribers' debt keys, which the revert of their own
    records (put back or removed) leaves alone. Returns the ids now owed.

    ``Converge._revert`` calls it for each resource it is about to put back, just before
    ``provider.delete``, with ``{s.resource.id: s.triggers for s in slots if s.triggers}``.
    """
    owing = tuple(rid for rid, named in triggers.items() if trigger in named)
    for rid in owing:
        pending = await inventory.debt(rid)
        if trigger not in pending:
            await inventory.owe(rid, (*pending, trigger))
    return owing
