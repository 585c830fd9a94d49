"""``accord nats config``: a nats-server ``authorization`` block with one user per node.

See :mod:`accord.store.nats_auth` for what each node's user may do. Passwords are generated;
they are written, with the admin's, to a JSON file readable only by its owner (0600)::

    {"admin": {"user": "accord", "password": "..."}, "nodes": {"<node id>": "<password>"}}

A node connects as user ``key_part(<node id>)`` with its password and with the inbox prefix
``_INBOX_<key_part(node id)>``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from accord import errors
from accord.cli import render, runtime
from accord.store import nats_auth

app = typer.Typer(help="NATS server setup: per-node credentials.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    # A callback keeps this a group even with a single command (`accord nats config`).
    pass


@app.command()
def config(
    node: Annotated[
        list[str], typer.Option("--node", help="A node id (repeatable).", show_default=False)
    ],
    bucket: Annotated[str, typer.Option(help="The store's bucket (?bucket= in its URL).")] = (
        "accord"
    ),
    admin_user: Annotated[str, typer.Option(help="The control plane's user.")] = "accord",
    out: Annotated[
        Path | None,
        typer.Option(help="Write the block to FILE (0600) instead of printing it.", dir_okay=False),
    ] = None,
    passwords: Annotated[
        Path | None,
        typer.Option(
            help="Write the passwords as JSON to FILE (0600) [default: OUT.passwords.json].",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace files that exist.")] = False,
) -> None:
    """Generate passwords and the nats-server ``authorization`` block for the nodes.

    Include the block in the server's configuration (``include "FILE"``). Node A's user may
    read only A's desired state, ``nodes.A`` and lifecycles, and write only A's status.
    """
    if passwords is None and out is not None:
        passwords = out.with_name(out.name + ".passwords.json")
    try:
        if len(set(node)) != len(node):
            raise errors.InputError("a --node is given twice")
        targets = [path for path in (out, passwords) if path is not None]
        if not force:  # refuse before writing anything
            for path in targets:
                if path.exists():
                    raise errors.InputError(f"{path}: already exists (--force replaces it)")
        admin_password = nats_auth.generate_password()
        node_passwords = {name: nats_auth.generate_password() for name in node}
        block = nats_auth.authorization_config(
            node_passwords, admin_user=admin_user, admin_password=admin_password, bucket=bucket
        )
        secrets_json = json.dumps(
            {"admin": {"user": admin_user, "password": admin_password}, "nodes": node_passwords},
            indent=2,
        )
        if passwords is not None:
            _write_private(passwords, secrets_json + "\n")
        if out is not None:
            _write_private(out, block)
    except errors.AccordError as exc:
        runtime.fail(exc)
    if out is None:
        typer.echo(block, nl=False)
    else:
        from rich.markup import escape

        summary = (
            f"wrote {out} ({len(node)} node users and admin {admin_user!r}) and {passwords} "
            "(passwords, 0600)"
        )
        render.console(stderr=True).print(escape(summary))


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable and writable by its owner only."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            os.fchmod(file.fileno(), 0o600)  # also when the file existed with other modes
            file.write(text)
    except OSError as exc:
        raise errors.InputError(f"{path}: {exc.strerror or exc}") from None
