"""``accord server``: run the control plane (REST API, SSE, dashboard) under uvicorn.

Signing keys come from ``--keys DIR``: every ``*.key`` file in it signs (several during a
rotation); an empty or missing directory gets a new pair, ``signing.key`` (0600) and
``signing.pub`` (what agents pin), as ``accord keys generate`` writes them.

The bootstrap admin token lives in ``--admin-token-file`` (default ``STATE_DIR/admin-token``):
if the file exists its token is (re)seeded, otherwise a new token is written there (0600). The
token itself is never printed; the command prints where it is and the dashboard's URL.

Flows started through the API (``POST /api/v1/flows``) run in this process, with their run
locks in ``STATE_DIR/flows`` (where ``accord flow --state-dir STATE_DIR`` keeps them too); the
unfinished ones are resumed when the server starts again.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from accord import errors, signing
from accord.cli import runtime
from accord.cli.keys import PRIVATE_NAME, PUBLIC_NAME
from accord.cli.options import StateDirOpt, StoreOpt

GRACEFUL_SECONDS = 3  # open SSE streams never finish by themselves


def load_or_generate_keys(directory: Path) -> tuple[list[signing.SigningKey], bool]:
    """Every ``*.key`` in ``directory``, or a new pair written there; also whether it is new."""
    found = sorted(directory.glob("*.key")) if directory.is_dir() else []
    if found:
        return [signing.SigningKey.load(path) for path in found], False
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.InputError(f"{directory}: {exc.strerror or exc}") from None
    key = signing.SigningKey.generate()
    key.save(directory / PRIVATE_NAME)
    key.verify_key.save(directory / PUBLIC_NAME)
    return [key], True


def admin_token(path: Path) -> tuple[str, bool]:
    """The token in ``path``, or a new one written there (0600); also whether it is new."""
    from accord.server import auth

    try:
        if path.exists():
            token = path.read_text().strip()
            if not token:
                raise errors.InputError(f"{path}: empty; delete it to get a new admin token")
            return token, False
        path.parent.mkdir(parents=True, exist_ok=True)
        token = auth.new_token()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
    except OSError as exc:
        raise errors.InputError(f"{path}: {exc.strerror or exc}") from None
    return token, True


def serve(
    store: StoreOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    keys: Annotated[
        Path | None,
        typer.Option("--keys", help="Signing keys directory (default STATE_DIR/keys)."),
    ] = None,
    admin_token_file: Annotated[
        Path | None,
        typer.Option(help="Bootstrap admin token file (default STATE_DIR/admin-token)."),
    ] = None,
    stale_after: Annotated[
        float, typer.Option(min=0.001, help="Seconds without a heartbeat before Stale.")
    ] = 90.0,
    state_dir: StateDirOpt = None,
) -> None:
    """Run the control plane: REST API, event stream and dashboard."""
    import uvicorn

    from accord.engine.local import default_state_dir
    from accord.server.app import create_app

    base = state_dir or default_state_dir()
    store_url = store or f"sqlite:///{base / 'accord.db'}"
    try:
        signing_keys, new_keys = load_or_generate_keys(keys or base / "keys")
        token_path = admin_token_file or base / "admin-token"
        token, new_token = admin_token(token_path)
        app = create_app(
            store=store_url,
            signing_keys=signing_keys,
            stale_after=stale_after,
            admin_token=token,
            flows_dir=base / "flows",
        )
    except errors.AccordError as exc:
        runtime.fail(exc)
    shown = f"[{host}]" if ":" in host else host
    key_ids = ", ".join(k.key_id for k in signing_keys)
    from accord.store import display_url

    print(
        f"accord control plane on http://{shown}:{port}/ (store {display_url(store_url)})",
        file=sys.stderr,
    )
    print(f"signing keys: {key_ids}{' (new)' if new_keys else ''}", file=sys.stderr)
    print(
        f"admin token{' (new)' if new_token else ''} in {token_path}; "
        f"dashboard: http://{shown}:{port}/#token=<that token>",
        file=sys.stderr,
    )
    config = uvicorn.Config(
        app, host=host, port=port, log_level="info", timeout_graceful_shutdown=GRACEFUL_SECONDS
    )
    uvicorn.Server(config).run()
