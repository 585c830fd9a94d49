"""``accord lifecycle validate | render``: check a site's lifecycle and draw it."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from accord import errors
from accord.cli import render, runtime
from accord.cli.options import JsonOpt

if TYPE_CHECKING:
    from accord.lifecycle.definition import Lifecycle

app = typer.Typer(help="Site lifecycles: validate and render.", no_args_is_help=True)
FileArg = Annotated[
    Path | None, typer.Argument(help="Lifecycle YAML (default: accord's default lifecycle).")
]


class Format(enum.StrEnum):
    MERMAID = "mermaid"
    DOT = "dot"


@app.command()
def validate(file: FileArg = None, json_: JsonOpt = False) -> None:
    """Check a lifecycle: states, edges, reachability. Exit 2 with the line of each problem."""
    lifecycle = _load(file)
    if json_:
        render.emit_json(
            {
                "name": lifecycle.name,
                "states": list(lifecycle.states),
                "edges": [[src, to] for src, to in lifecycle.edges()],
            }
        )
    else:
        render.console().print(
            f"{lifecycle.name}: valid — {len(lifecycle.states)} states, "
            f"{len(lifecycle.edges())} transitions, initial {lifecycle.initial}"
        )


@app.command("render")
def render_(
    file: FileArg = None,
    format_: Annotated[Format, typer.Option("--format", "-f")] = Format.MERMAID,
) -> None:
    """Print the lifecycle as a Mermaid state diagram or Graphviz DOT, drawn from its table."""
    from accord.lifecycle.definition import to_dot, to_mermaid

    lifecycle = _load(file)
    print(to_mermaid(lifecycle) if format_ is Format.MERMAID else to_dot(lifecycle), end="")


def _load(file: Path | None) -> Lifecycle:
    from accord.lifecycle.definition import default_lifecycle, load_lifecycle

    try:
        if file is None:
            return default_lifecycle()
        return load_lifecycle(file.read_text(), source=str(file))
    except OSError as exc:
        runtime.fail(errors.InputError(f"{file}: {exc.strerror or exc}"))
    except errors.InputError as exc:
        runtime.fail(exc)
