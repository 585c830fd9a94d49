"""Manifest versions and assignments in the store: what the control plane publishes from.

Manifest versions
    Each version is one key, ``fleet.manifests.<name>.<generation, 10 digits>`` (under
    :func:`accord.store.keys.manifest_key`), holding a :class:`ManifestVersion`: the validated
    manifest with ``metadata.generation`` set by the control plane, its content digest, and who
    published it when. Versions are written with ``create``, so two publishers can never both
    claim a generation; the loser re-reads and retries. Generations are dense (1, 2, 3, …) and
    the newest is the last key under the prefix.

    Publishing is idempotent: the digest covers the manifest with its generation zeroed, so the
    same content (whatever generation the caller wrote into it) yields the existing version,
    and only a change of content makes ``generation = previous + 1``.

Assignments
    ``fleet.assignments.<manifest>`` holds an :class:`Assignment`: a label selector (every
    ``key: value`` must match; ``{}`` matches every node) and who set it. One key, one fact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from accord import errors
from accord.model.loading import parse_manifest
from accord.model.manifest import Manifest
from accord.model.specs import Spec
from accord.model.status import utcnow
from accord.store import keys
from accord.store.base import Store

MANIFEST_NAME = r"^[a-z0-9][a-z0-9_.-]*$"
LABEL_KEY = r"^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$"
# The prefixes the key functions put names under ("fleet.manifests.", "fleet.assignments.").
MANIFESTS = keys.manifest_key("_")[:-1]
ASSIGNMENTS = keys.assignment_key("_")[:-1]
LabelKey = Annotated[str, Field(pattern=LABEL_KEY, max_length=128)]
LabelValue = Annotated[str, Field(max_length=256)]
Labels = dict[LabelKey, LabelValue]


class ManifestVersion(BaseModel):
    """One published version of a manifest."""

    model_config = ConfigDict(frozen=True)

    name: str
    generation: int = Field(ge=1)
    digest: str  # sha256 of the manifest with generation 0: equal digests, equal content
    published_by: str
    published_at: datetime
    manifest: dict[str, Any]  # the manifest as JSON, metadata.generation == generation

    def typed(self, kinds: Mapping[str, type[Spec]]) -> Manifest:
        """The manifest as a typed model, validated again against ``kinds``.

        Raises:
            ManifestError: it no longer validates (e.g. a kind that is not served any more).
        """
        source = f"{self.name} generation {self.generation}"
        return parse_manifest(json.dumps(self.manifest), source=source, kinds=kinds)


class Assignment(BaseModel):
    """A manifest assigned to the nodes whose labels match ``selector``."""

    model_config = ConfigDict(frozen=True)

    manifest: str
    selector: dict[str, str]
    assigned_by: str
    assigned_at: datetime = Field(default_factory=utcnow)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.selector.items())


def digest(manifest: Manifest) -> str:
    """The content digest: the manifest's canonical JSON with its generation zeroed."""
    unnumbered = manifest.model_copy(
        update={"metadata": manifest.metadata.model_copy(update={"generation": 0})}
    )
    return hashlib.sha256(unnumbered.model_dump_json().encode()).hexdigest()


def version_key(name: str, generation: int) -> str:
    return f"{keys.manifest_key(name)}.{generation:010d}"


async def versions(store: Store, name: str) -> list[ManifestVersion]:
    """Every version of ``name``, oldest first (empty if it was never published)."""
    entries = await store.list(keys.manifest_key(name) + ".")
    return [ManifestVersion.model_validate_json(e.value) for e in entries]


async def latest(store: Store, name: str) -> ManifestVersion | None:
    found = await versions(store, name)
    return found[-1] if found else None


async def version(store: Store, name: str, generation: int) -> ManifestVersion:
    entry = await store.get(version_key(name, generation))
    if entry is None:
        raise errors.NotFoundError(f"manifest {name!r} has no generation {generation}")
    return ManifestVersion.model_validate_json(entry.value)


async def names(store: Store) -> list[str]:
    """The names of every published manifest, sorted."""
    found = {ManifestVersion.model_validate_json(e.value).name for e in await store.list(MANIFESTS)}
    return sorted(found)


async def publish(store: Store, manifest: Manifest, *, by: str) -> tuple[ManifestVersion, bool]:
    """Store ``manifest`` as the next version unless its content is already the newest.

    Returns the version and whether it is new.
    """
    name = manifest.metadata.name
    content = digest(manifest)
    while True:
        newest = await latest(store, name)
        if newest is not None and newest.digest == content:
            return newest, False
        generation = 1 if newest is None else newest.generation + 1
        numbered = manifest.model_copy(
            update={"metadata": manifest.metadata.model_copy(update={"generation": generation})}
        )
        created = ManifestVersion(
            name=name,
            generation=generation,
            digest=content,
            published_by=by,
            published_at=utcnow(),
            manifest=numbered.model_dump(mode="json"),
        )
        try:
            await store.create(version_key(name, generation), created.model_dump_json().encode())
        except errors.ConflictError:
            continue  # another publisher took this generation: look again
        return created, True


async def assignments(store: Store) -> list[Assignment]:
    """Every assignment, sorted by manifest name."""
    entries = await store.list(ASSIGNMENTS)
    return [Assignment.model_validate_json(e.value) for e in entries]


async def find_assignment(store: Store, manifest: str) -> Assignment | None:
    entry = await store.get(keys.assignment_key(manifest))
    return None if entry is None else Assignment.model_validate_json(entry.value)


async def get_assignment(store: Store, manifest: str) -> Assignment:
    found = await find_assignment(store, manifest)
    if found is None:
        raise errors.NotFoundError(f"manifest {manifest!r} is not assigned")
    return found


async def assign(store: Store, assignment: Assignment) -> None:
    await store.put(keys.assignment_key(assignment.manifest), assignment.model_dump_json().encode())


async def unassign(store: Store, manifest: str) -> None:
    if await store.get(keys.assignment_key(manifest)) is None:
        raise errors.NotFoundError(f"manifest {manifest!r} is not assigned")
    await store.delete(keys.assignment_key(manifest))


def choose(assignments: list[Assignment], labels: Mapping[str, str]) -> Assignment | None:
    """The assignment that decides a node's desired state, if any matches.

    A node has one desired manifest. When several selectors match, the most specific (the most
    selector keys) wins, then the manifest name in alphabetical order, so every replica of the
    control plane decides the same way.
    """
    matching = [a for a in assignments if a.matches(labels)]
    if not matching:
        return None
    return min(matching, key=lambda a: (-len(a.selector), a.manifest))
