"""``/api/v1/manifests``: publish manifests (operator) and read their versions (viewer).

``POST`` takes the manifest as the raw body, YAML or JSON. It is validated against the
server's resource kinds; an invalid one is refused with 422 and ``problems`` naming the line,
resource and field (``body:7: resource 'motd' (File): spec.mode: …``), and nothing is stored.
The server numbers versions itself (a ``metadata.generation`` in the body is ignored): new
content becomes ``generation = previous + 1`` (201) and is published to every node it is
assigned to; content equal to the newest version is a no-op (200, same generation, with the
reason). Each version records ``published_by``, the caller's token name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status
from pydantic import BaseModel, Field

from accord import errors
from accord.model.loading import parse_manifest
from accord.server import audit, auth, catalog, publish
from accord.server.context import Ctx
from accord.server.problems import documented
from accord.server.routes.common import ManifestName, read_text

router = APIRouter(prefix="/manifests", tags=["manifests"])

Generation = Annotated[int, Path(ge=1, le=2**62)]
SOURCE = "body"

_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A manifest (accord/v1), as YAML or JSON.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


class VersionSummary(BaseModel):
    name: str
    generation: int
    digest: str
    published_by: str
    published_at: datetime


class PublishResult(BaseModel):
    version: VersionSummary
    created: bool
    reason: str
    published_to: list[str]
    withdrawn_from: list[str]
    failed: dict[str, str] = Field(description="Nodes left as they were, and why.")


def _summary(found: catalog.ManifestVersion) -> VersionSummary:
    return VersionSummary(
        name=found.name,
        generation=found.generation,
        digest=found.digest,
        published_by=found.published_by,
        published_at=found.published_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_BODY,
    responses={
        200: {"model": PublishResult, "description": "Unchanged: same content"},
        **documented(413),
    },
)
async def post_manifest(
    request: Request, response: Response, ctx: Ctx, caller: auth.Operator
) -> PublishResult:
    """Publish a manifest (operator): a new version if its content changed."""
    manifest = parse_manifest(await read_text(request), source=SOURCE, kinds=ctx.kinds)
    version, created = await catalog.publish(ctx.store, manifest, by=caller.name)
    if created:
        await audit.record(
            ctx.store,
            audit.MANIFEST_PUBLISHED,
            f"{version.name}:{version.generation}",
            initiator=caller.name,
            manifest=version.name,
            generation=version.generation,
            digest=version.digest,
        )
        reason = f"new content: generation {version.generation}"
    else:
        response.status_code = status.HTTP_200_OK
        reason = f"unchanged: the content equals generation {version.generation}"
    # Also when unchanged: a publish pass cut short (a crash) is finished by the next POST.
    outcome = await publish.Publisher(ctx.store, ctx.signing_keys, ctx.kinds).run(
        initiator=caller.name
    )
    return PublishResult(
        version=_summary(version),
        created=created,
        reason=reason,
        published_to=outcome.published,
        withdrawn_from=outcome.withdrawn,
        failed=outcome.failed,
    )


@router.get("")
async def list_manifests(ctx: Ctx, caller: auth.Viewer) -> list[VersionSummary]:
    """The newest version of every manifest."""
    found = [await catalog.latest(ctx.store, name) for name in await catalog.names(ctx.store)]
    return [_summary(v) for v in found if v is not None]


@router.get("/{name}")
async def get_manifest(
    name: ManifestName, ctx: Ctx, caller: auth.Viewer
) -> catalog.ManifestVersion:
    """The newest version of a manifest, with its content."""
    found = await catalog.latest(ctx.store, name)
    if found is None:
        raise errors.NotFoundError(f"no manifest named {name!r}")
    return found


@router.get("/{name}/versions")
async def list_versions(name: ManifestName, ctx: Ctx, caller: auth.Viewer) -> list[VersionSummary]:
    """Every version of a manifest, oldest first."""
    found = await catalog.versions(ctx.store, name)
    if not found:
        raise errors.NotFoundError(f"no manifest named {name!r}")
    return [_summary(v) for v in found]


@router.get("/{name}/versions/{generation}")
async def get_version(
    name: ManifestName, generation: Generation, ctx: Ctx, caller: auth.Viewer
) -> catalog.ManifestVersion:
    """One version of a manifest, with its content."""
    return await catalog.version(ctx.store, name, generation)
