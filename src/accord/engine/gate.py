"""The apply gate: may this node apply its desired state now?

Staging is never gated (downloading ahead is the point of staging), except in a lifecycle
state that *pauses* desired state altogether (``rma``, ``retired``), where nothing is done.
Apply opens when, in this order:

1. an operator forces it (``--force``) — recorded as the reason;
2. otherwise the node's lifecycle state must allow apply (``apply: true`` in the lifecycle);
3. and, if any maintenance window applies to the node, one must be open now. A node that no
   window names is not restricted by windows.

An open window comes with ``closes_at``: the engine starts no new resource after it, and lets
the running one finish (the end-of-window policy). A closed gate says when it will open, so a
staged run can report "waiting; applies at …".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a gate decides: croniter is not free to import
    from accord.lifecycle.definition import Lifecycle
    from accord.lifecycle.nodes import Node
    from accord.lifecycle.windows import Schedule


@dataclass(frozen=True, slots=True)
class GateDecision:
    open: bool
    reason: str
    paused: bool = False  # desired state is paused: do not even stage
    closes_at: datetime | None = None  # stop starting new resources at this instant
    opens_at: datetime | None = None  # when closed: when it is expected to open


@dataclass(frozen=True, slots=True)
class Gate:
    """What the gate looks at. Everything is optional: an empty gate is always open."""

    node: Node | None = None
    lifecycle: Lifecycle | None = None
    schedule: Schedule | None = None
    force: bool = False
    forced_by: str = "an operator"

    def decide(self, now: datetime) -> GateDecision:
        """Pure: the decision at ``now`` (an aware datetime)."""
        state = None
        if self.node is not None and self.lifecycle is not None:
            state = self.lifecycle.states.get(self.node.state)
        if state is not None and state.paused:
            return GateDecision(
                open=False, paused=True,
                reason=f"lifecycle state {self.node.state} pauses desired state",  # type: ignore[union-attr]
            )  # fmt: skip
        if self.force:
            return GateDecision(open=True, reason=f"forced by {self.forced_by}")
        if state is not None and not state.apply:
            return GateDecision(
                open=False,
                reason=f"lifecycle state {self.node.state} does not allow apply",  # type: ignore[union-attr]
            )
        if self.schedule is None:
            return GateDecision(open=True, reason="no maintenance windows apply")
        from accord.lifecycle.windows import status_at, windows_for

        node_id = self.node.id if self.node else None
        labels = self.node.labels if self.node else {}
        if not windows_for(self.schedule, node_id, labels):
            return GateDecision(open=True, reason="no maintenance window names this node")
        status = status_at(self.schedule, node_id, labels, now)
        if status.open:
            return GateDecision(
                open=True,
                reason=f"window {status.window} is open until {status.closes_at:%Y-%m-%d %H:%M %Z}",
                closes_at=status.closes_at,
            )
        when = (
            f"next opens {status.next_opens_at:%Y-%m-%d %H:%M %Z} ({status.next_window})"
            if status.next_opens_at
            else "no window opens within the horizon"
        )
        return GateDecision(
            open=False, reason=f"outside maintenance windows; {when}", opens_at=status.next_opens_at
        )
