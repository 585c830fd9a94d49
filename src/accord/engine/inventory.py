"""What accord manages on this machine, per manifest: one key per resource.

``managed.<manifest>.<resource>`` holds the resource's last applied kind, spec and
dependencies (everything it runs after, ``restart_on`` included, so a resource that leaves the
manifest can still be pruned in dependency order) and ``prior``: what was at its place before
accord first took it over, restored when it is pruned. The record is written *before* the first
apply touches anything, so a crash in between cannot lose the prior state.

``owed.<manifest>.<resource>`` lists triggers (``restart_on``) that changed, or were about to,
while the resource's refresh has not happened yet: it is written before the trigger applies and
deleted after the refresh, so a refresh that a failure, a block or a crash kept from running is
run by the next run (at least once; never lost). It is a key of its own, not part of the
resource's record, so that it holds for a resource accord has not recorded yet (new to it, and
blocked in its first run) and survives what rewrites or removes the record (a revert).
A debt of a resource that left the manifest stays behind: if the id comes back, it is refreshed
once. ``Managed.pending`` is where debts were kept before: still read, no longer written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from accord.store import base


@dataclass(frozen=True, slots=True)
class Managed:
    id: str
    kind: str
    spec: dict[str, Any]
    depends_on: tuple[str, ...]
    prior: dict[str, Any] | None
    pending: tuple[str, ...] = ()  # owed refreshes, as older versions kept them: read only

    def encode(self) -> bytes:
        record = {
            "id": self.id,
            "kind": self.kind,
            "spec": self.spec,
            "depends_on": list(self.depends_on),
            "prior": self.prior,
        }
        if self.pending:
            record["pending"] = list(self.pending)
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Managed:
        record = json.loads(data)
        return cls(
            id=record["id"],
            kind=record["kind"],
            spec=record["spec"],
            depends_on=tuple(record["depends_on"]),
            prior=record["prior"],
            pending=tuple(record.get("pending", ())),
        )


class Inventory:
    def __init__(self, store: base.Store, manifest: str) -> None:
        self.store = store
        self.prefix = f"managed.{base.key_part(manifest)}."
        self.owed_prefix = f"owed.{base.key_part(manifest)}."

    async def load(self) -> dict[str, Managed]:
        return {
            m.id: m for m in (Managed.decode(e.value) for e in await self.store.list(self.prefix))
        }

    async def save(self, record: Managed) -> None:
        await self.store.put(self.prefix + base.key_part(record.id), record.encode())

    async def remove(self, resource_id: str) -> None:
        await self.store.delete(self.prefix + base.key_part(resource_id))

    # -- owed refreshes (``restart_on``): one key per resource, apart from its record -----------

    async def debts(self) -> dict[str, tuple[str, ...]]:
        """Every resource's owed refreshes: the triggers they are owed for, in order."""
        found = {}
        for entry in await self.store.list(self.owed_prefix):
            record = json.loads(entry.value)
            found[record["id"]] = tuple(record["pending"])
        return found

    async def debt(self, resource_id: str) -> tuple[str, ...]:
        """The triggers ``resource_id`` is owed a refresh for (none: empty)."""
        entry = await self.store.get(self.owed_prefix + base.key_part(resource_id))
        return () if entry is None else tuple(json.loads(entry.value)["pending"])

    async def owe(self, resource_id: str, triggers: tuple[str, ...]) -> None:
        """Write ``resource_id``'s whole debt (it replaces what was there)."""
        value = {"id": resource_id, "pending": list(triggers)}
        await self.store.put(
            self.owed_prefix + base.key_part(resource_id),
            json.dumps(value, separators=(",", ":")).encode(),
        )

    async def settle(self, resource_id: str) -> None:
        """``resource_id`` was refreshed: it is owed nothing."""
        await self.store.delete(self.owed_prefix + base.key_part(resource_id))
