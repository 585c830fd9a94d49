"""What several routers share: path parameter types, raw-body reading, public keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path, Request, status
from pydantic import BaseModel, Field

from accord import signing
from accord.server import catalog
from accord.server.context import ServerContext
from accord.server.problems import BadRequest
from accord.store.base import MAX_VALUE_BYTES

# Any text names a node in a path: ids are checked when a node is created, and an id that
# was never created is simply not found.
NodeId = Annotated[str, Path(description="Node id.")]
ManifestName = Annotated[str, Path(pattern=catalog.MANIFEST_NAME, max_length=128)]
MAX_BODY = MAX_VALUE_BYTES // 2  # a stored version holds the document plus its metadata


class PublicKey(BaseModel):
    key_id: str
    algorithm: str = signing.ED25519
    public_key: str = Field(description="base64 of the raw 32-byte ed25519 public key")


def public_keys(ctx: ServerContext) -> list[PublicKey]:
    """The public halves of the signing keys, for agents to pin."""
    return [PublicKey(key_id=k.key_id, public_key=k.verify_key.text()) for k in ctx.signing_keys]


async def read_text(request: Request) -> str:
    """A raw request body as text: 413 past ``MAX_BODY``, 400 unless UTF-8."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, detail=f"the body may be at most {MAX_BODY} bytes"
        )
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not UTF-8 (byte {exc.start})") from None
