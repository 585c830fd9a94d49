"""The ``accord`` command: the root Typer app and its command groups."""

from __future__ import annotations

import typer

from accord.cli import converge

app = typer.Typer(
    name="accord",
    help="Keep this machine (or a fleet) in the state its owners declared.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(converge.plan)
app.command()(converge.stage)
app.command()(converge.apply)
app.command()(converge.status)
app.command()(converge.history)
app.command()(converge.schema)


def main() -> None:
    app()
