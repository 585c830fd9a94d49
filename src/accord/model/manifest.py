"""The manifest: a named, generation-numbered set of typed resources."""

from __future__ import annotations

import enum
from typing import Literal, NewType

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from accord.model.specs import Spec

ResourceId = NewType("ResourceId", str)
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]*$"
API_VERSION = "accord/v1"


class StateGoal(enum.StrEnum):
    """What a run aims for (Symphony's ``stateGoal``, replacing a dry-run flag)."""

    DRY_RUN = "dry_run"  # observe and plan; change nothing
    STAGE = "stage"  # prepare what can be prepared; change nothing live
    APPLY = "apply"  # converge the live system


class StateFlag(enum.StrEnum):
    """What a resource reached for a generation (Symphony's ``stateFlag``)."""

    STAGED = "staged"
    APPLIED = "applied"


class Metadata(BaseModel):
    """Who the manifest is and which version of it this is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=128)
    generation: int = Field(default=1, ge=0)
    labels: dict[str, str] = Field(default_factory=dict)


class Resource(BaseModel):
    """One managed thing. ``spec`` is the kind's own spec model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: ResourceId = Field(pattern=ID_PATTERN, max_length=200)
    kind: str
    spec: SerializeAsAny[Spec]
    depends_on: tuple[ResourceId, ...] = ()

    @property
    def predecessors(self) -> tuple[ResourceId, ...]:
        """Every id this resource runs after: ``depends_on``, then the ids its spec references
        (a unit's ``restart_on``), without repeats."""
        references = self.spec.references()
        if not references:
            return self.depends_on
        named = (ResourceId(rid) for ids in references.values() for rid in ids)
        return tuple(dict.fromkeys((*self.depends_on, *named)))


class Manifest(BaseModel):
    """The desired state of one machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_version: Literal["accord/v1"] = "accord/v1"
    metadata: Metadata
    resources: tuple[Resource, ...] = ()
