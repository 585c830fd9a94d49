"""``accord window next``: is a maintenance window open, and when are the next ones?"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import BaseModel

from accord import errors
from accord.cli import render, runtime
from accord.lifecycle import windows as maintenance

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(help="Maintenance windows: when a node may apply changes.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    # A callback keeps this a group even with a single command (`accord window next`).
    pass


class OccurrenceRow(BaseModel):
    """One upcoming opening, in UTC and on the window's own wall clock."""

    window: str
    timezone: str
    start: datetime
    end: datetime
    local_start: datetime
    local_end: datetime


class NextOutput(BaseModel):
    """What ``accord window next --json`` prints."""

    file: str
    at: datetime
    node: str | None
    labels: dict[str, str]
    windows: list[str]
    status: maintenance.WindowStatus
    occurrences: list[OccurrenceRow]


@app.command("next")
def next_(
    file: Annotated[Path, typer.Argument(help="Windows file (YAML with a 'windows' list).")],
    node: Annotated[
        str | None, typer.Option("--node", help="Node id (default: every window in the file).")
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="A node label KEY=VALUE (repeatable)."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="The instant to ask about, ISO 8601 (default now; no offset = UTC)."
        ),
    ] = None,
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, max=1000, help="Openings to list.")
    ] = 5,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Whether a window is open now, and the next openings (UTC and local time)."""
    labels = _labels(label or [])
    now = _when(at) if at else datetime.now(UTC)

    async def main(stop: asyncio.Event) -> int:
        schedule = _read(file)
        if node is None and not labels:
            selected = schedule.windows
        else:
            selected = maintenance.windows_for(schedule, node, labels)
        status = maintenance.status_of(selected, now)
        rows = [
            _row(o, schedule.get(o.window))
            for o in itertools.islice(maintenance.upcoming(selected, now), count)
        ]
        output = NextOutput(
            file=str(file), at=now, node=node, labels=labels, windows=[w.name for w in selected],
            status=status, occurrences=rows,
        )  # fmt: skip
        if json_:
            render.emit_json(output.model_dump(mode="json"))
        else:
            _print(output)
        return runtime.OK

    runtime.run(main)


def _labels(pairs: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--label")
        labels[key.strip()] = value.strip()
    return labels


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"expected an ISO 8601 time such as 2025-03-30T01:00:00Z, got {text!r}",
            param_hint="--at",
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _read(path: Path) -> maintenance.Schedule:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.InputError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise errors.InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return maintenance.load_windows(text, source=str(path))


def _row(occurrence: maintenance.Occurrence, window: maintenance.Window) -> OccurrenceRow:
    zone = window.tz
    return OccurrenceRow(
        window=window.name, timezone=window.timezone, start=occurrence.start, end=occurrence.end,
        local_start=occurrence.start.astimezone(zone), local_end=occurrence.end.astimezone(zone),
    )  # fmt: skip


def _print(output: NextOutput) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = render.console()
    who = f"node {output.node}" if output.node else "any node"
    if output.labels:
        who += " (" + ", ".join(f"{k}={v}" for k, v in sorted(output.labels.items())) + ")"
    names = ", ".join(output.windows) or "none"
    out.print(escape(f"windows for {who} at {_utc(output.at)}: {names}"))
    _print_status(out, output)
    if not output.occurrences:
        return
    table = Table(title="next openings", title_justify="left")
    for column in ("window", "UTC", "local time"):
        table.add_column(column)
    for row in output.occurrences:
        utc = _span(row.start, row.end, zone=False)
        table.add_row(escape(row.window), utc, _span(row.local_start, row.local_end, zone=True))
    out.print(table)


def _print_status(out: Console, output: NextOutput) -> None:
    from rich.markup import escape

    status, now = output.status, output.at
    if status.open and status.closes_at is not None:
        left = maintenance.format_duration(status.closes_at - now)
        until = f"'{status.window}' until {_utc(status.closes_at)} ({left} left)"
        out.print("[bold green]open[/]: " + escape(until))
    else:
        out.print("[bold]closed[/]")
    if status.next_opens_at is not None:
        wait = maintenance.format_duration(status.next_opens_at - now)
        out.print(
            escape(f"next: '{status.next_window}' opens {_utc(status.next_opens_at)} (in {wait})")
        )
    elif output.windows:
        out.print(f"next: no opening within {maintenance.HORIZON.days} days")
    else:
        out.print("no window applies")


def _utc(moment: datetime) -> str:
    return _clock(moment.astimezone(UTC)) + " UTC"


def _span(start: datetime, end: datetime, *, zone: bool) -> str:
    """``2025-11-02 01:30 EDT to 02:30 EST``: the end's date only if it differs."""
    first, last = _clock(start), _clock(end, date=end.date() != start.date())
    if not zone:
        return f"{first} to {last}"
    if start.tzname() == end.tzname():
        return f"{first} to {last} {end.tzname()}"
    return f"{first} {start.tzname()} to {last} {end.tzname()}"  # the span crosses a DST change


def _clock(moment: datetime, *, date: bool = True) -> str:
    # Seconds only when there are some: cron opens on the minute, but a 45s window ends off it.
    clock = moment.strftime("%H:%M:%S" if moment.second else "%H:%M")
    return f"{moment:%Y-%m-%d} {clock}" if date else clock
