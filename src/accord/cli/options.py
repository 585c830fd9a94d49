"""Options shared by the command groups, so that every command spells them the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from accord.store import STORE_ENV

ManifestArg = Annotated[Path, typer.Argument(help="Manifest file (YAML or JSON).")]
RootOpt = Annotated[
    list[Path] | None,
    typer.Option("--root", "-r", help="Directory the run may change (repeatable; default /)."),
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option(help="State dir: store, cache, lock [env ACCORD_STATE_DIR].", show_default=False),
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar=STORE_ENV,  # a URL with a password stays out of argv (ps)
        help="Store URL (default sqlite:///STATE_DIR/accord.db).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
CommandsOpt = Annotated[
    bool, typer.Option("--allow-commands", help="Allow Command resources (the escape hatch).")
]
ConcurrencyOpt = Annotated[int, typer.Option(min=1, help="Resources worked on at once.")]
TimeoutOpt = Annotated[float, typer.Option(min=0.001, help="Seconds per resource step.")]
