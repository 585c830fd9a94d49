"""How a run tells its audience what it is doing (the CLI draws progress bars from this)."""

from __future__ import annotations

from typing import Protocol

from accord.model.plan import Plan
from accord.model.status import ResourceStatus


class Reporter(Protocol):
    def planned(self, plan: Plan) -> None: ...

    def phase(self, name: str, total: int) -> None:
        """A phase (``stage``, ``apply``, ``prune``, ``revert``) starts with ``total`` steps."""

    def step(self, phase: str, status: ResourceStatus) -> None:
        """One step of the current phase finished."""

    def transfer(self, resource_id: str, done: int, total: int | None) -> None:
        """Bytes moved for a resource (downloads)."""


class NullReporter:
    """Reports to nobody."""

    def planned(self, plan: Plan) -> None:
        pass

    def phase(self, name: str, total: int) -> None:
        pass

    def step(self, phase: str, status: ResourceStatus) -> None:
        pass

    def transfer(self, resource_id: str, done: int, total: int | None) -> None:
        pass
