"""Renamed ids: an id that left the manifest hands its record over to the id that took its place.

A resource of the new manifest that manages the same thing (``Spec.identity_field``: a path, a
unit, a container) with the same kind is a rename, not a removal: ``accord.engine.converge``
gives the new id the old one's inventory record (and prior state), and pruning only forgets the
old id (``accord.engine.prune``).
"""

from __future__ import annotations

import os

from accord.engine.inventory import Managed
from accord.model.manifest import Manifest


def heirs(manifest: Manifest, gone: list[Managed]) -> dict[str, str]:
    """Old ids whose thing (``Spec.identity_field``: a path, a unit, a container) a resource
    of the new manifest manages, with the same kind: a rename, not a removal.

    Pruning such an id would restore the thing's pre-accord state (or remove it) under the new
    resource's feet; instead the new id takes over the old one's record (and its prior state).
    """
    fields: dict[str, str] = {}
    claimed: dict[tuple[str, str], str] = {}
    for resource in manifest.resources:
        field = fields.setdefault(resource.kind, type(resource.spec).identity_field)
        identity = _identity(field, getattr(resource.spec, field, None))
        if identity is not None:
            claimed[(resource.kind, identity)] = resource.id
    heirs: dict[str, str] = {}
    for record in gone:
        named = fields.get(record.kind)
        identity = None if named is None else _identity(named, record.spec.get(named))
        if identity is not None and (record.kind, identity) in claimed:
            heirs[record.id] = claimed[(record.kind, identity)]
    return heirs


def _identity(field: str, value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return os.path.normpath(value) if field == "path" else value
