"""``accord node add | list | show | label | transition | history``: nodes and their lifecycle.

Locally, the initiator is ``--as`` (default ``user@host``) and its roles are what ``--role``
declares: whoever can run this command on the machine already controls its state dir. The
control plane (``accord server``) takes roles from tokens instead.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
from pathlib import Path
from typing import Annotated

import typer

from accord import errors
from accord.cli import render, runtime
from accord.cli.options import JsonOpt, RootOpt, StateDirOpt, StoreOpt

app = typer.Typer(help="Nodes and their lifecycle: enrol, transition, audit.", no_args_is_help=True)

NodeArg = Annotated[str, typer.Argument(help="Node id.")]
LabelOpt = Annotated[list[str] | None, typer.Option("--label", "-l", help="k=v (repeatable).")]


def labels_of(pairs: list[str] | None) -> dict[str, str]:
    """Parse ``k=v`` pairs; a malformed one is bad input that names itself."""
    found = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise errors.InputError(f"label {pair!r} is not k=v")
        found[key] = value
    return found


@app.command()
def add(
    node: NodeArg,
    label: LabelOpt = None,
    lifecycle: Annotated[
        Path | None, typer.Option(help="Lifecycle YAML (default: accord's default lifecycle).")
    ] = None,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Enrol a node in the initial state of its lifecycle."""

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.local import LocalSession
        from accord.lifecycle import nodes

        async with LocalSession(state_dir=state_dir, store_url=store, lock=False) as session:
            text, source = _lifecycle_text(lifecycle)
            chosen = await nodes.save_lifecycle(session.store, text, source=source)
            created = await nodes.add_node(session.store, node, chosen, labels=labels_of(label))
        _show(created.model_dump(mode="json"), json_, f"{node}: {created.state} ({chosen.name})")
        return runtime.OK

    runtime.run(main)


@app.command("list")
def list_(state_dir: StateDirOpt = None, store: StoreOpt = None, json_: JsonOpt = False) -> None:
    """Every node with its lifecycle state."""

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.local import LocalSession
        from accord.lifecycle import nodes

        async with LocalSession(state_dir=state_dir, store_url=store, lock=False) as session:
            found = await nodes.list_nodes(session.store)
        if json_:
            render.emit_json([n.model_dump(mode="json") for n in found])
        else:
            render.table(
                "nodes",
                ["node", "state", "lifecycle", "labels", "transitions", "last change"],
                [
                    [
                        n.id,
                        n.state,
                        n.lifecycle,
                        _labels(n.labels),
                        str(n.transitions),
                        render.when(n.last.at) if n.last else "",
                    ]
                    for n in found
                ],
            )
        return runtime.OK

    runtime.run(main)


@app.command()
def show(node: NodeArg, state_dir: StateDirOpt = None, store: StoreOpt = None,
         json_: JsonOpt = False) -> None:  # fmt: skip
    """One node: state, labels, what it may move to next."""

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.local import LocalSession
        from accord.lifecycle import nodes

        async with LocalSession(state_dir=state_dir, store_url=store, lock=False) as session:
            found, revision = await nodes.get_node(session.store, node)
            lifecycle = await nodes.get_lifecycle(session.store, found.lifecycle)
        document = found.model_dump(mode="json", by_alias=True)
        document["revision"] = revision
        document["next"] = lifecycle.allowed_from(found.state)
        summary = (f"{found.id}: {found.state} (lifecycle {found.lifecycle}, "
                   f"labels {_labels(found.labels) or 'none'}); "
                   f"may move to: {', '.join(document['next']) or 'nothing'}")  # fmt: skip
        _show(document, json_, summary)
        return runtime.OK

    runtime.run(main)


@app.command()
def label(
    node: NodeArg,
    pairs: Annotated[list[str], typer.Argument(help="k=v ...")],
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Replace a node's labels."""

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.local import LocalSession
        from accord.lifecycle import nodes

        async with LocalSession(state_dir=state_dir, store_url=store, lock=False) as session:
            changed = await nodes.set_labels(session.store, node, labels_of(pairs))
        _show(changed.model_dump(mode="json"), json_, f"{node}: {_labels(changed.labels)}")
        return runtime.OK

    runtime.run(main)


@app.command()
def transition(
    node: NodeArg,
    to: Annotated[str, typer.Argument(help="The state to move to.")],
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why (recorded).")] = "",
    expect: Annotated[
        str | None, typer.Option(help="Refuse unless the node is in this state now.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Admin: move outside the table.")] = False,
    as_: Annotated[str | None, typer.Option("--as", help="Initiator (default user@host).")] = None,
    role: Annotated[
        list[str] | None, typer.Option(help="Initiator's role (repeatable; default operator).")
    ] = None,
    workflow: Annotated[
        bool, typer.Option(help="Run the target state's on_enter flow, if it has one.")
    ] = True,
    flows: Annotated[
        Path, typer.Option(help="Where on_enter flow files are found (relative names).")
    ] = Path("."),
    root: RootOpt = None,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Move a node to another lifecycle state, if the lifecycle and its guards allow it.

    When the new state names an ``on_enter`` flow, that flow runs next, in the foreground,
    about this node (``--no-workflow`` skips it); the exit code is then the flow's.
    """

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.local import LocalSession
        from accord.lifecycle import nodes

        roles = frozenset(role or ["operator"])
        async with LocalSession(state_dir=state_dir, store_url=store, lock=False) as session:
            found, _ = await nodes.get_node(session.store, node)
            lifecycle = await nodes.get_lifecycle(session.store, found.lifecycle)
            facts = await session.facts(reason=reason, roles=roles)
            record = await nodes.transition(
                session.store, lifecycle, node, to, initiator=as_ or _whoami(), facts=facts,
                expected=expect, force=force,
            )  # fmt: skip
        forced = " (forced)" if record.forced else ""
        summary = f"{node}: {record.from_} → {record.to}{forced} [transition {record.seq}]"
        _show(record.model_dump(mode="json", by_alias=True), json_, summary)
        on_enter = lifecycle.states[record.to].on_enter
        if not workflow or on_enter is None:
            return runtime.OK
        from accord.cli.flow import exit_code, run_flow_file

        flow_file = Path(on_enter) if Path(on_enter).is_absolute() else flows / on_enter
        if not json_:
            render.console().print(f"entering {record.to} runs {flow_file}")
        run = await run_flow_file(
            flow_file, params={}, node=node, roots=[r.absolute() for r in root or [Path("/")]],
            state_dir=state_dir, store=store, allow_commands=False, stop=stop,
        )  # fmt: skip
        return exit_code(run)

    runtime.run(main)


@app.command()
def history(node: NodeArg, state_dir: StateDirOpt = None, store: StoreOpt = None,
            json_: JsonOpt = False) -> None:  # fmt: skip
    """Every transition of a node: from, to, when, who, why."""

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.local import LocalSession
        from accord.lifecycle import nodes

        async with LocalSession(state_dir=state_dir, store_url=store, lock=False) as session:
            entries = await nodes.history(session.store, node)
        if json_:
            render.emit_json([e.model_dump(mode="json", by_alias=True) for e in entries])
        else:
            render.table(
                f"history of {node}",
                ["#", "from", "to", "at", "initiator", "reason", "forced"],
                [
                    [
                        str(e.seq),
                        e.from_,
                        e.to,
                        render.when(e.at),
                        e.initiator,
                        e.reason,
                        "yes" if e.forced else "",
                    ]
                    for e in entries
                ],
            )
        return runtime.OK

    runtime.run(main)


def _lifecycle_text(path: Path | None) -> tuple[str, str]:
    if path is None:
        from importlib import resources

        text = resources.files("accord.lifecycle").joinpath("default.yaml").read_text()
        return text, "accord/lifecycle/default.yaml"
    try:
        return path.read_text(), str(path)
    except OSError as exc:
        raise errors.InputError(f"{path}: {exc.strerror or exc}") from None


def _whoami() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _show(document: object, as_json: bool, summary: str) -> None:
    if as_json:
        render.emit_json(document)
    else:
        render.console().print(summary)
