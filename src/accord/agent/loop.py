"""The agent: a small kubelet that keeps one node at its desired state.

What it does, concurrently, until stopped:

* **watch** ``fleet.desired.<node>``: every new envelope is verified (signature, addressed to
  this node, not a replay: its publish sequence is not below the accepted one) and checked
  against the kind allow-list. A refused envelope is reported as a ``ManifestVerified=False``
  condition and the previous manifest stays in force. An accepted one is saved to disk first
  (``STATE_DIR/desired.json``, atomically), so a restarted agent enforces it even while the
  control plane or the store is unreachable. The saved envelope is also the agent's replay
  memory: its signed sequence is re-verified at start-up and becomes the ``last`` accepted,
  so a restart does not reopen the door to older envelopes.
* **converge**: stage at once, then apply when the gate opens (lifecycle policy, maintenance
  windows, force); a run that waits for a window is retried when the window opens.
* **detect drift** every ``drift_interval`` seconds: a dry run; drift is reported as
  ``Drifted=True`` and, with the ``correct`` policy, repaired by applying again.
* **report**: typed status to ``fleet.status.<node>`` with compare-and-set, refreshed as a
  heartbeat every ``heartbeat`` seconds. A failed status write (store down) is retried on the
  next beat; the local journal keeps every run regardless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from accord import __version__, errors, signing
from accord.engine.converge import Options
from accord.engine.gate import Gate
from accord.engine.local import LocalSession
from accord.lifecycle import nodes
from accord.lifecycle.windows import Schedule
from accord.model.fleet import NodeStatus, ResourcePhase
from accord.model.manifest import Manifest, StateGoal
from accord.model.status import Condition, ConditionStatus, RunRecord, RunState
from accord.providers import fsutil
from accord.store import keys
from accord.store.base import Op, Store

log = logging.getLogger("accord.agent")


@dataclass(frozen=True, slots=True)
class Current:
    """The manifest in force: verified, with the envelope it came in (kept on disk)."""

    manifest: Manifest
    envelope: bytes
    accepted: signing.Accepted  # sequence + digest (replay protection), generation (status)

    @property
    def name(self) -> str:
        return self.manifest.metadata.name

    @property
    def generation(self) -> int:
        return self.accepted.generation


FILE_KINDS = frozenset({"File", "Directory", "Symlink", "Artifact"})
"""What an agent accepts unless told otherwise: kinds that place files, none that runs code."""


@dataclass
class AgentConfig:
    node: str
    allowed_kinds: frozenset[str] = FILE_KINDS
    heartbeat: float = 15.0
    drift_interval: float = 60.0
    drift_policy: Literal["report", "correct"] = "correct"
    schedule: Schedule | None = None
    base_dir: Path = field(default_factory=Path.cwd)


class Agent:
    """Run with ``await Agent(...).run(stop)``."""

    def __init__(
        self,
        *,
        config: AgentConfig,
        connect: Callable[[], Awaitable[Store]],
        session: LocalSession,
        trust: signing.TrustStore,
    ) -> None:
        self.config = config
        self.connect = connect
        self.fleet: Store | None = None  # None until connected: the saved manifest still holds
        self.session = session
        self.trust = trust
        self.accepted: Current | None = None
        self.status = NodeStatus(node=config.node, agent_version=__version__)
        self.refusal: Condition | None = None
        self.wake = asyncio.Event()  # work to do: a new manifest, a window opening, drift
        self._status_revision: int | None = None
        self._saved = session.state_dir / "desired.json"

    # -- the loop -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.accepted = self._load_saved()
        if self.accepted is not None:
            self.wake.set()  # enforce what we had, even before the store answers
        tasks = [
            asyncio.create_task(self._connect_and_watch(), name="watch"),
            asyncio.create_task(self._converge_loop(stop), name="converge"),
            asyncio.create_task(self._heartbeat(stop), name="heartbeat"),
            asyncio.create_task(self._drift(stop), name="drift"),
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._report()
            if self.fleet is not None:
                await self.fleet.close()

    async def _connect_and_watch(self) -> None:
        """Connect (a NATS store waits for its server as long as it takes), then follow the
        desired key forever; the store reconnects underneath."""
        while self.fleet is None:
            try:
                self.fleet = await self.connect()
            except errors.StoreError as exc:
                log.warning("fleet store unreachable (%s); retrying", exc)
                await asyncio.sleep(1.0)
        while True:
            try:
                key = keys.desired_key(self.config.node)
                # Exactly this key: on NATS it is also the only watch a node's credentials allow.
                async for event in self.fleet.watch(key, exact=True):
                    if event.op is Op.PUT and event.value is not None:
                        await self._offer(event.value)
            except errors.StoreError as exc:
                log.warning("watch of desired state failed (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def _offer(self, envelope: bytes) -> None:
        if self.accepted is not None and envelope == self.accepted.envelope:
            return  # the same envelope again (a re-delivery, or our own start-up)
        try:
            accepted = self._verify(envelope, self.accepted)
            self._check_kinds(accepted.manifest)
        except errors.InputError as exc:
            generation = self.status.observed_generation
            if isinstance(exc, errors.PolicyError):
                self.refusal = Condition(
                    type="ManifestVerified", status=ConditionStatus.FALSE,
                    reason="KindNotAllowed", message=str(exc), observed_generation=generation,
                )  # fmt: skip
            else:
                self.refusal = signing.condition_for(exc, observed_generation=generation)
            log.warning("refused a desired-state update: %s", exc)
            await self._report()
            return
        self.refusal = None
        fsutil.atomic_write(self._saved, accepted.envelope, mode=0o600)
        self.accepted = accepted
        self._observe(accepted)
        self.wake.set()

    def _check_kinds(self, manifest: Manifest) -> None:
        refused = sorted({r.kind for r in manifest.resources} - self.config.allowed_kinds)
        if refused:
            raise errors.PolicyError(
                f"kinds {', '.join(refused)} are not allowed on this node "
                f"(allowed: {', '.join(sorted(self.config.allowed_kinds))})"
            )

    async def _converge_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.wake.wait()
            self.wake.clear()
            if self.accepted is None:
                continue
            record = await self._converge(self.accepted.manifest, StateGoal.APPLY, stop)
            if record is not None and record.state is RunState.WAITING and record.opens_at:
                asyncio.get_running_loop().call_later(
                    max(0.0, (record.opens_at - datetime.now(UTC)).total_seconds()),
                    self.wake.set,
                )

    async def _converge(
        self, manifest: Manifest, goal: StateGoal, stop: asyncio.Event
    ) -> RunRecord | None:
        gate = await self._gate()
        try:
            _, record = await self.session.converge(
                manifest, base_dir=self.config.base_dir,
                options=Options(goal=goal, gate=gate), stop=stop,
            )  # fmt: skip
        except errors.AccordError as exc:
            log.error("convergence failed: %s", exc)
            return None
        if goal is StateGoal.APPLY:
            self._absorb(manifest, record)
            await self._report()
        return record

    async def _gate(self) -> Gate:
        """The node's lifecycle state and windows, read fresh; without the store: windows only."""
        if self.fleet is None:
            return Gate(schedule=self.config.schedule)
        try:
            node, _ = await nodes.get_node(self.fleet, self.config.node)
            lifecycle = await nodes.get_lifecycle(self.fleet, node.lifecycle)
        except errors.AccordError:
            return Gate(schedule=self.config.schedule)
        return Gate(node=node, lifecycle=lifecycle, schedule=self.config.schedule)

    def _absorb(self, manifest: Manifest, record: RunRecord) -> None:
        name, generation = manifest.metadata.name, manifest.metadata.generation
        status = self.status
        if record.state in (RunState.SUCCEEDED, RunState.WAITING):
            status.staged_manifest, status.staged_generation = name, generation
        if record.state is RunState.SUCCEEDED:
            status.applied_manifest, status.applied_generation = name, generation
            status.drifted = []
        status.state = record.state.value
        status.gate = record.gate
        status.opens_at = record.opens_at
        status.resources = [
            ResourcePhase(
                id=r.id,
                kind=r.kind,
                phase=r.phase,
                reason=r.error.message if r.error else r.reason,
                details=r.details,
            )
            for r in record.resources
        ]
        status.conditions = list(record.conditions)

    async def _drift(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.config.drift_interval)
            current = self.accepted
            if current is None or not self._applied(current):
                continue  # not applied yet: that is convergence, not drift
            plan, _ = await self.session.converge(
                current.manifest, base_dir=self.config.base_dir,
                options=Options(goal=StateGoal.DRY_RUN),
            )  # fmt: skip
            self.status.drifted = [s.id for s in plan.changes]
            if self.status.drifted:
                log.warning("drift in %s", ", ".join(self.status.drifted))
                if self.config.drift_policy == "correct":
                    self.wake.set()
                else:
                    await self._report()

    def _applied(self, current: Current) -> bool:
        """Whether ``current`` is what this agent applied last (name and generation: a
        generation alone does not tell two manifests apart)."""
        status = self.status
        return (status.applied_manifest, status.applied_generation) == (
            current.name,
            current.generation,
        )

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._report()
            await asyncio.sleep(self.config.heartbeat)

    # -- status -------------------------------------------------------------------

    async def _report(self) -> None:
        """Write the status with compare-and-set; a failure is retried on the next beat."""
        fleet = self.fleet
        if fleet is None:
            return
        status = self.status
        status.heartbeat_at = datetime.now(UTC)
        own = ("ManifestVerified", "Drifted")  # the agent's own; the rest come from runs
        status.conditions = [c for c in status.conditions if c.type not in own]
        if self.refusal is not None:
            status.conditions.append(self.refusal)
        status.conditions.append(
            Condition(
                type="Drifted",
                status=ConditionStatus.TRUE if status.drifted else ConditionStatus.FALSE,
                reason="ChangedByHand" if status.drifted else "NoDrift",
                message=", ".join(status.drifted),
                observed_generation=status.observed_generation,
            )
        )
        data = status.model_dump_json().encode()
        key = keys.status_key(self.config.node)
        for _ in range(3):
            try:
                if self._status_revision is None:
                    current = await fleet.get(key)
                    if current is None:
                        self._status_revision = await fleet.create(key, data)
                        return
                    self._status_revision = current.revision
                self._status_revision = await fleet.update(
                    key, data, expected_revision=self._status_revision
                )
                return
            except errors.ConflictError:
                self._status_revision = None  # someone wrote it (our previous life): re-read
            except errors.StoreError as exc:
                log.warning("status not written (%s); retrying on the next heartbeat", exc)
                return

    def _verify(self, envelope: bytes, last: Current | None) -> Current:
        verified = self.trust.verify(
            signing.load_envelope(envelope),
            node=self.config.node,
            kinds=self.session.registry.kinds(),
            last=last.accepted if last else None,
        )
        return Current(manifest=verified.manifest, envelope=envelope, accepted=verified.accepted)

    def _load_saved(self) -> Current | None:
        """The last verified envelope, re-verified (the disk is not trusted blindly)."""
        try:
            envelope = self._saved.read_bytes()
        except FileNotFoundError:
            return None
        try:
            accepted = self._verify(envelope, None)
        except errors.InputError as exc:
            log.error("the saved desired state no longer verifies (%s); ignoring it", exc)
            return None
        self._observe(accepted)
        return accepted

    def _observe(self, current: Current) -> None:
        """Report ``current`` as the desired manifest this agent has seen and verified."""
        self.status.manifest = current.name
        self.status.observed_generation = current.generation
        self.status.observed_sequence = current.accepted.sequence
