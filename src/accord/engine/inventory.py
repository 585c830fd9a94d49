"""What accord manages on this machine, per manifest: one key per resource.

``managed.<manifest>.<resource>`` holds the resource's last applied kind, spec and
dependencies (everything it runs after, ``restart_on`` included, so a resource that leaves the
manifest can still be pruned in dependency order) and ``prior``: what was at its place before
accord first took it over, restored when it is pruned. The record is written *before* the first
apply touches anything, so a crash in between cannot lose the prior state.

``pending`` lists triggers (``restart_on``) that changed, or were about to, while the resource's
refresh has not happened yet: it is written before the trigger applies and cleared after the
refresh, so a refresh that a failure, a block or a crash kept from running is run by the next
run (at least once; never lost).
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
    pending: tuple[str, ...] = ()  # triggers whose refresh of this resource is still owed

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

    async def load(self) -> dict[str, Managed]:
        return {
            m.id: m for m in (Managed.decode(e.value) for e in await self.store.list(self.prefix))
        }

    async def save(self, record: Managed) -> None:
        await self.store.put(self.prefix + base.key_part(record.id), record.encode())

    async def remove(self, resource_id: str) -> None:
        await self.store.delete(self.prefix + base.key_part(resource_id))
