"""``accord agent``: keep this node at the desired state the control plane publishes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from accord import errors
from accord.cli import runtime
from accord.cli.options import RootOpt, StateDirOpt
from accord.store import STORE_ENV

DriftPolicy = typer.Option(help="On drift: 'correct' (apply again) or 'report' only.")


def agent(
    node: Annotated[str, typer.Option(help="This node's id.")],
    store: Annotated[
        str,
        typer.Option(
            "--store",
            envvar=STORE_ENV,  # a URL with a password stays out of argv (ps)
            help="The fleet store URL (nats:// or sqlite:///).",
        ),
    ],
    trust: Annotated[Path, typer.Option(help="Directory of pinned public keys (*.pub).")],
    root: RootOpt = None,
    state_dir: StateDirOpt = None,
    allow_kind: Annotated[
        list[str] | None,
        typer.Option(
            help="A resource kind this node accepts (repeatable). Given, it replaces the "
            "default list File, Directory, Symlink, Artifact: name every kind, e.g. "
            "--allow-kind File --allow-kind Package."
        ),
    ] = None,
    allow_commands: Annotated[
        bool, typer.Option("--allow-commands", help="Accept Command.")
    ] = False,
    windows: Annotated[Path | None, typer.Option(help="Maintenance windows YAML.")] = None,
    heartbeat: Annotated[
        float, typer.Option(min=0.05, help="Seconds between status beats.")
    ] = 15.0,
    drift_interval: Annotated[
        float, typer.Option(min=0.05, help="Seconds between drift checks.")
    ] = 60.0,
    drift: Annotated[str, DriftPolicy] = "correct",
) -> None:
    """Watch this node's desired state, verify it, stage, apply when allowed, report, repeat."""

    async def main(stop: asyncio.Event) -> int:
        from accord import signing
        from accord.agent.loop import Agent, AgentConfig
        from accord.engine.local import LocalSession
        from accord.lifecycle.windows import load_windows
        from accord.store import open_store

        if drift not in ("correct", "report"):
            raise errors.InputError(f"--drift must be 'correct' or 'report', not {drift!r}")
        kinds = accepted_kinds(allow_kind or [], allow_commands=allow_commands)
        schedule = load_windows(windows.read_text(), source=str(windows)) if windows else None
        config = AgentConfig(
            node=node,
            allowed_kinds=kinds,
            heartbeat=heartbeat,
            drift_interval=drift_interval,
            drift_policy="report" if drift == "report" else "correct",
            schedule=schedule,
            base_dir=(state_dir or Path(".")).absolute(),
        )
        trusted = signing.TrustStore.from_dir(trust)
        async with LocalSession(
            roots=root or [Path("/")], state_dir=state_dir, allow_commands=allow_commands
        ) as session:
            agent = Agent(config=config, connect=lambda: open_store(store), session=session,
                          trust=trusted)  # fmt: skip
            await agent.run(stop)
        return runtime.OK

    logging.basicConfig(level=logging.INFO, format="%(asctime)s agent %(levelname)s %(message)s")
    runtime.run(main)


def accepted_kinds(named: list[str], *, allow_commands: bool) -> frozenset[str]:
    """The agent's kind allow-list: the kinds named, or files and artifacts when none are.

    Kinds that run code as root (a package's maintainer scripts, a unit's ExecStart, a
    container's entrypoint, a Command) are opt-in per node: a signed manifest says what the
    control plane wants, the allow-list says what this device lets it do. Naming the kinds
    explicitly (rather than adding to a default) also lets a node accept fewer.
    """
    from accord.agent.loop import FILE_KINDS

    kinds = set(named) if named else set(FILE_KINDS)
    return frozenset(kinds | ({"Command"} if allow_commands else set()))
