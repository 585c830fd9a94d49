"""What the control plane and the agents exchange through the fleet store, and where.

Keys (``.`` separates levels, so that NATS subject permissions can say "node A reads only
``fleet.desired.A`` and writes only ``fleet.status.A``"):

``fleet.desired.<node>``     the signed manifest envelope for the node (control plane writes)
``fleet.sequence.<node>``    the node's publish counter (:mod:`accord.server.publish`; control
                             plane only, agents never read it; it outlives withdrawals)
``fleet.status.<node>``      the node's typed status (the node's agent writes, compare-and-set)
``fleet.manifests.<name>``   a manifest's versions (control plane)
``fleet.assignments.<name>`` manifest → label selector (control plane)

Node ids and names are encoded with :func:`accord.store.base.key_part`; the key functions live
in :mod:`accord.store.keys` (the model layer does no I/O and knows no store).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from accord.model.status import Condition, Phase, utcnow


class ResourcePhase(BaseModel):
    """One resource as the agent last saw it."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: str
    phase: Phase
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)  # per-kind facts (version, since, …)


class NodeStatus(BaseModel):
    """What an agent reports about its node (Harmony's typed status, Kubernetes' conditions).

    ``manifest`` and ``observed_generation`` name the desired manifest the agent has seen and
    verified last, ``observed_sequence`` the publish that delivered it (see
    :mod:`accord.signing`, Replay). ``staged_manifest`` / ``staged_generation`` name the
    newest manifest it has fully staged, ``applied_manifest`` / ``applied_generation`` the
    newest it has applied and verified. A generation counts per manifest name, so it means
    something only next to its name: after a node moves from ``big`` generation 7 to
    ``small`` generation 2, it reports ``applied_manifest="big", applied_generation=7`` until
    ``small`` is applied. A heartbeat refreshes ``heartbeat_at`` even when nothing changes; the
    control plane marks a node ``Stale`` when heartbeats stop.
    """

    node: str
    manifest: str | None = None
    observed_generation: int = 0
    observed_sequence: int = 0
    staged_manifest: str | None = None
    staged_generation: int = 0
    applied_manifest: str | None = None
    applied_generation: int = 0
    state: str = "unknown"  # the last run's state (succeeded, waiting, failed, …)
    gate: str | None = None
    opens_at: datetime | None = None
    drifted: list[str] = Field(default_factory=list)  # resources found changed by hand
    resources: list[ResourcePhase] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    heartbeat_at: datetime = Field(default_factory=utcnow)
    agent_version: str = ""
