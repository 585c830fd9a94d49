"""The journal: run records in the KV store, step transitions in the ``journal`` event log.

Keys: ``runs.<manifest>.<run-id>`` holds each run's record, ``status.<manifest>`` the latest
one. Run ids sort by start time. Each step transition is one append (one commit on SQLite):
it is durable when the call returns, so a ``kill -9`` loses at most the transition in flight.

A run record still ``running`` when the next run begins belonged to a process that died (runs
of one manifest are serialized by the caller's lock), so the next run marks it ``crashed`` and
records that it resumes it.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from accord.model.manifest import StateGoal
from accord.model.status import RunRecord, RunState, utcnow
from accord.store import base

STREAM = "journal"


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{secrets.token_hex(3)}"


class Journal:
    def __init__(self, store: base.Store) -> None:
        self.store = store

    async def begin(self, manifest: str, generation: int, goal: StateGoal) -> RunRecord:
        """Record a new run; mark an unfinished predecessor crashed and link to it."""
        resumes = None
        previous = await self.latest(manifest)
        if previous is not None and previous.state in (RunState.RUNNING, RunState.INTERRUPTED):
            if previous.state is RunState.RUNNING:
                previous.state = RunState.CRASHED
                await self._save(previous)
                await self.event(previous.run_id, "run_crashed", pid=previous.pid)
            resumes = previous.run_id
        run = RunRecord(
            run_id=new_run_id(),
            manifest=manifest,
            generation=generation,
            goal=goal,
            pid=os.getpid(),
            resumes=resumes,
        )
        await self._save(run)
        await self.event(run.run_id, "run_started", goal=goal.value, generation=generation,
                         resumes=resumes)  # fmt: skip
        return run

    async def event(self, run_id: str, event: str, **details: Any) -> int:
        """Append one transition; returns its sequence number."""
        record = {"run": run_id, "at": time.time(), "event": event}
        record.update((k, v) for k, v in details.items() if v is not None)
        return await self.store.append(STREAM, json.dumps(record, separators=(",", ":")).encode())

    async def finish(self, run: RunRecord, state: RunState) -> None:
        run.state = state
        run.finished_at = utcnow()
        await self._save(run)
        await self.event(run.run_id, "run_finished", state=state.value, counts=run.counts)

    async def latest(self, manifest: str) -> RunRecord | None:
        entry = await self.store.get(f"status.{base.key_part(manifest)}")
        return RunRecord.model_validate_json(entry.value) if entry else None

    async def statuses(self) -> list[RunRecord]:
        """The latest run of every manifest."""
        return [RunRecord.model_validate_json(e.value) for e in await self.store.list("status.")]

    async def runs(self, manifest: str | None = None) -> list[RunRecord]:
        prefix = f"runs.{base.key_part(manifest)}." if manifest else "runs."
        records = [RunRecord.model_validate_json(e.value) for e in await self.store.list(prefix)]
        return sorted(records, key=lambda r: r.run_id)

    async def events(self, run_id: str | None = None) -> list[dict[str, Any]]:
        found = []
        for record in await self.store.read(STREAM):
            event: dict[str, Any] = json.loads(record.data)
            if run_id is None or event["run"] == run_id:
                event["seq"] = record.seq
                found.append(event)
        return found

    async def _save(self, run: RunRecord) -> None:
        data = run.model_dump_json(exclude_defaults=True).encode()
        manifest = base.key_part(run.manifest)
        await self.store.put(f"runs.{manifest}.{run.run_id}", data)
        await self.store.put(f"status.{manifest}", data)
