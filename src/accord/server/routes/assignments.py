"""``/api/v1/assignments``: which nodes (label selector) run which manifest.

``PUT /assignments/{manifest}`` (operator) sets the selector — every ``key: value`` must match
a node's labels, ``{}`` selects every node — records ``assigned_by``, and publishes at once:
each selected node gets the newest version, signed, at ``fleet.desired.<node>`` (nodes that
already hold it are skipped; see :mod:`accord.server.publish`). Setting the same selector again
changes nothing (the publish pass still runs, and finds nothing to do unless something is
missing). ``DELETE`` withdraws it.
"""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from accord import errors
from accord.server import audit, auth, catalog, publish
from accord.server.catalog import Labels
from accord.server.context import Ctx
from accord.server.routes.common import ManifestName

router = APIRouter(prefix="/assignments", tags=["assignments"])


class AssignmentBody(BaseModel):
    selector: Labels = Field(description="Labels a node must all carry; {} selects every node.")


class AssignmentResult(BaseModel):
    assignment: catalog.Assignment
    changed: bool
    reason: str
    published_to: list[str]
    withdrawn_from: list[str]
    failed: dict[str, str] = Field(description="Nodes left as they were, and why.")
    unchanged: int = Field(description="Nodes that already held their desired state.")


@router.get("")
async def list_assignments(ctx: Ctx, caller: auth.Viewer) -> list[catalog.Assignment]:
    """Every assignment."""
    return await catalog.assignments(ctx.store)


@router.get("/{manifest}")
async def get_assignment(
    manifest: ManifestName, ctx: Ctx, caller: auth.Viewer
) -> catalog.Assignment:
    """One manifest's assignment."""
    return await catalog.get_assignment(ctx.store, manifest)


@router.put("/{manifest}")
async def put_assignment(
    manifest: ManifestName, body: AssignmentBody, ctx: Ctx, caller: auth.Operator
) -> AssignmentResult:
    """Assign a published manifest to the nodes its selector matches (operator), and publish."""
    if await catalog.latest(ctx.store, manifest) is None:
        raise errors.NotFoundError(f"no manifest named {manifest!r}: publish it first")
    current = await catalog.find_assignment(ctx.store, manifest)
    if current is not None and current.selector == body.selector:
        assignment, reason = current, "unchanged: the manifest already has this selector"
    else:
        assignment = catalog.Assignment(
            manifest=manifest,
            selector=dict(body.selector),
            assigned_by=caller.name,
            assigned_at=ctx.clock(),
        )
        await catalog.assign(ctx.store, assignment)
        await audit.record(
            ctx.store,
            audit.ASSIGNMENT_CHANGED,
            f"{manifest}:{assignment.assigned_at.isoformat()}",
            initiator=caller.name,
            manifest=manifest,
            selector=assignment.selector,
            previous=None if current is None else current.selector,
        )
        reason = "assigned" if current is None else "selector changed"
    outcome = await publish.Publisher(ctx.store, ctx.signing_keys, ctx.kinds).run(
        initiator=caller.name
    )
    return AssignmentResult(
        assignment=assignment,
        changed=current is None or current.selector != assignment.selector,
        reason=reason,
        published_to=outcome.published,
        withdrawn_from=outcome.withdrawn,
        failed=outcome.failed,
        unchanged=len(outcome.unchanged),
    )


@router.delete("/{manifest}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_assignment(manifest: ManifestName, ctx: Ctx, caller: auth.Operator) -> None:
    """Remove an assignment (operator); nodes it selected lose that desired state."""
    await catalog.unassign(ctx.store, manifest)
    await audit.record(
        ctx.store,
        audit.ASSIGNMENT_DELETED,
        f"{manifest}:{ctx.clock().isoformat()}",
        initiator=caller.name,
        manifest=manifest,
    )
    await publish.Publisher(ctx.store, ctx.signing_keys, ctx.kinds).run(initiator=caller.name)
