"""``accord keys generate | show``: the ed25519 keys that sign manifests.

The control plane signs with ``signing.key``; agents pin ``signing.pub`` (see
:mod:`accord.signing`). Neither command prints private key material.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

from accord import errors, signing
from accord.cli import render, runtime
from accord.cli.options import JsonOpt

app = typer.Typer(help="Manifest signing keys: generate a pair, show a key's id.",
                  no_args_is_help=True)  # fmt: skip

PRIVATE_NAME, PUBLIC_NAME = "signing.key", "signing.pub"


class GeneratedOutput(BaseModel):
    """What ``accord keys generate --json`` prints."""

    key_id: str
    algorithm: str
    private_key: str
    public_key: str


class KeyOutput(BaseModel):
    """What ``accord keys show --json`` prints: never the private key itself."""

    file: str
    key_id: str
    algorithm: str
    type: str  # "private" or "public"
    public_key: str  # base64 of the raw 32-byte public key, for pinning


@app.command()
def generate(
    directory: Annotated[Path, typer.Argument(help="Where to write signing.key and signing.pub.")],
    force: Annotated[bool, typer.Option(help="Replace keys already in DIRECTORY.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Write a new key pair: DIRECTORY/signing.key (private, 0600) and signing.pub."""
    private, public = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    try:
        if not force:  # refuse before writing anything: never half a new pair beside an old one
            for path in (private, public):
                if path.exists():
                    raise errors.InputError(f"{path}: already exists (--force replaces it)")
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.InputError(f"{directory}: {exc.strerror or exc}") from None
        key = signing.SigningKey.generate()
        key.save(private, overwrite=force)
        key.verify_key.save(public, overwrite=force)
    except errors.AccordError as exc:
        runtime.fail(exc)
    output = GeneratedOutput(key_id=key.key_id, algorithm=signing.ED25519,
                             private_key=str(private), public_key=str(public))  # fmt: skip
    if json_:
        render.emit_json(output.model_dump(mode="json"))
    else:
        from rich.markup import escape

        summary = (
            f"key {key.key_id} (ed25519): wrote {private} (private, 0600) and {public}; "
            f"agents pin {PUBLIC_NAME}"
        )
        render.console().print(escape(summary))


@app.command()
def show(
    file: Annotated[Path, typer.Argument(help="A key file, private or public (PEM or base64).")],
    json_: JsonOpt = False,
) -> None:
    """A key's id and algorithm (and its public key, for pinning)."""
    try:
        key = signing.load_key(file)
    except errors.AccordError as exc:
        runtime.fail(exc)
    public = key.verify_key if isinstance(key, signing.SigningKey) else key
    output = KeyOutput(
        file=str(file), key_id=public.key_id, algorithm=signing.ED25519,
        type="private" if isinstance(key, signing.SigningKey) else "public",
        public_key=public.text(),
    )  # fmt: skip
    if json_:
        render.emit_json(output.model_dump(mode="json"))
    else:
        from rich.markup import escape

        summary = (
            f"{file}: {output.type} key {output.key_id} ({output.algorithm}), "
            f"public key {output.public_key}"
        )
        render.console().print(escape(summary))
