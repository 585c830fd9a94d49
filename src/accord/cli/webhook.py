"""``accord webhook add | list | remove | deliveries | deliver``: lifecycle events over HTTP.

Secrets are stored in the store and never printed again after ``add`` (a generated one is shown
once); ``list`` shows a fingerprint instead. See :mod:`accord.lifecycle.webhooks` for the
delivery contract and how receivers verify signatures.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from accord import errors
from accord.cli import render, runtime

if TYPE_CHECKING:
    from accord.lifecycle.webhooks import Attempt, DeadLetter, Subscription

app = typer.Typer(
    name="webhook",
    help="Send lifecycle events to HTTP endpoints: filtered, signed, retried and logged.",
    no_args_is_help=True,
    add_completion=False,
)

StateDirOpt = Annotated[
    Path | None,
    typer.Option(help="State dir: store, cache, lock [env ACCORD_STATE_DIR].", show_default=False),
]
StoreOpt = Annotated[
    str | None, typer.Option("--store", help="Store URL (default sqlite:///STATE_DIR/accord.db).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
IdArg = Annotated[str, typer.Argument(metavar="ID", help="Subscription id.", show_default=False)]


@app.command()
def add(
    subscription_id: Annotated[
        str, typer.Argument(metavar="ID", help="New subscription id: letters, digits, - and _.")
    ],
    url: Annotated[str, typer.Argument(help="The http(s) URL events are POSTed to.")],
    secret: Annotated[
        str | None,
        typer.Option(help="Signing secret, 16+ characters (visible in `ps`: prefer a file)."),
    ] = None,
    secret_file: Annotated[
        Path | None, typer.Option(help="Read the signing secret from this file.")
    ] = None,
    event: Annotated[
        list[str] | None,
        typer.Option("--event", "-e", help="Event type or glob, e.g. 'node.*' (repeatable)."),
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option("--state", help="Only events from or to this lifecycle state (repeatable)."),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="Only nodes with this KEY=VALUE label (repeatable)."),
    ] = None,
    max_attempts: Annotated[
        int, typer.Option(min=1, max=100, help="Attempts before an event is dead-lettered.")
    ] = 8,
    timeout: Annotated[float, typer.Option(min=0.001, max=300, help="Seconds per request.")] = 10.0,
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Also deliver the events already in the outbox.")
    ] = False,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Subscribe URL to lifecycle events (from now on, unless --from-start)."""
    selector = _labels(label or [])
    key, generated = _secret(secret, secret_file)

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.local import LocalSession
        from accord.lifecycle import webhooks

        subscription = _subscription(
            id=subscription_id, url=url, secret=key, event_types=tuple(event or ()),
            states=tuple(state or ()), selector=selector, max_attempts=max_attempts,
            timeout_s=timeout, start_after=0 if from_start else None,
        )  # fmt: skip
        async with LocalSession(state_dir=state_dir, store_url=store, lock=False) as session:
            added = await webhooks.add(session.store, subscription)
        shown = {**added.public(), **({"secret": key} if generated else {})}
        if json_:
            render.emit_json(shown)
            return runtime.OK
        out = render.console()
        out.print(f"added webhook {added.id} -> {added.url} (secret {added.fingerprint})")
        if generated:
            out.print(f"secret (shown once, keep it to verify signatures): {key}", soft_wrap=True)
        return runtime.OK

    runtime.run(main)


@app.command("list")
def list_(state_dir: StateDirOpt = None, store: StoreOpt = None, json_: JsonOpt = False) -> None:
    """Subscriptions with their filters and cursors (secrets as fingerprints)."""

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.local import LocalSession
        from accord.lifecycle import webhooks

        async with LocalSession(state_dir=state_dir, store_url=store, lock=False) as session:
            found = await webhooks.subscriptions(session.store)
            cursors = [await webhooks.cursor(session.store, s.id) for s in found]
        if json_:
            render.emit_json(
                [
                    {**s.public(), "cursor": c.model_dump(mode="json")}
                    for s, c in zip(found, cursors, strict=True)
                ]
            )
            return runtime.OK
        if not found:
            render.console().print("no webhook subscriptions")
            return runtime.OK
        _subscriptions_table(found, [c.describe() for c in cursors])
        return runtime.OK

    runtime.run(main)


@app.command()
def remove(subscription_id: IdArg, state_dir: StateDirOpt = None, store: StoreOpt = None) -> None:
    """Delete a subscription and its cursor (its delivery log stays)."""

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.local import LocalSession
        from accord.lifecycle import webhooks

        async with LocalSession(state_dir=state_dir, store_url=store, lock=False) as session:
            await webhooks.remove(session.store, subscription_id)
        render.console().print(f"removed webhook {subscription_id}")
        return runtime.OK

    runtime.run(main)


@app.command()
def deliveries(
    subscription_id: IdArg,
    limit: Annotated[int, typer.Option(min=1, help="Show the last N records.")] = 50,
    dead: Annotated[bool, typer.Option("--dead", help="Show dead letters instead.")] = False,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
    json_: JsonOpt = False,
) -> None:
    """The delivery log of a subscription: every attempt, oldest first (or its dead letters)."""

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.local import LocalSession
        from accord.lifecycle import webhooks

        async with LocalSession(state_dir=state_dir, store_url=store, lock=False) as session:
            known = await webhooks.get(session.store, subscription_id) is not None
            records: list[Attempt] | list[DeadLetter]
            if dead:
                records = await webhooks.dead_letters(session.store, subscription_id, limit)
            else:
                records = await webhooks.deliveries(session.store, subscription_id, limit)
        if not known and not records:
            raise errors.InputError(f"no webhook subscription {subscription_id!r}")
        if json_:
            render.emit_json([r.model_dump(mode="json") for r in records])
        elif not records:
            render.console().print("nothing recorded yet")
        else:
            _records_table(subscription_id, records)
        return runtime.OK

    runtime.run(main)


@app.command()
def deliver(
    once: Annotated[
        bool, typer.Option("--once", help="Deliver what is pending, then exit.")
    ] = False,
    poll: Annotated[
        float, typer.Option(min=0.01, help="Seconds between looks for new events.")
    ] = 0.5,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run the dispatcher in the foreground until Ctrl-C (or, with --once, until idle).

    Prints one line per attempt (JSON lines with --json). With --once, exits 1 if an event was
    dead-lettered.
    """

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.local import LocalSession
        from accord.lifecycle import webhooks

        on_attempt = None if (once and json_) else _attempt_printer(json_)
        async with (
            LocalSession(state_dir=state_dir, store_url=store, lock=False) as session,
            webhooks.Dispatcher(session.store, on_attempt=on_attempt, poll_interval=poll) as d,
        ):
            if not once:
                await d.run(stop)
                return runtime.OK
            handled: dict[str, int] = {}
            for subscription in await webhooks.subscriptions(session.store):
                handled[subscription.id] = await d.deliver_once(subscription.id, stop=stop)
        if json_:
            render.emit_json({"handled": handled, **vars(d.stats)})
        else:
            render.console().print(
                f"{sum(handled.values())} events handled for {len(handled)} subscriptions: "
                f"{d.stats.delivered} delivered, {d.stats.dead} dead-lettered "
                f"({d.stats.attempts} attempts)"
            )
        if stop.is_set():
            return runtime.INTERRUPTED
        return runtime.FAILED if d.stats.dead else runtime.OK

    runtime.run(main)


def _labels(pairs: list[str]) -> dict[str, str]:
    selector: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r}: use KEY=VALUE", param_hint="--label")
        selector[key] = value
    return selector


def _secret(given: str | None, file: Path | None) -> tuple[str, bool]:
    """The secret and whether it was generated here."""
    if given is not None and file is not None:
        raise typer.BadParameter("use --secret or --secret-file, not both", param_hint="--secret")
    if file is not None:
        try:
            return file.read_text().strip(), False
        except OSError as exc:
            raise typer.BadParameter(
                f"{file}: {exc.strerror or exc}", param_hint="--secret-file"
            ) from None
    if given is not None:
        return given, False
    return secrets.token_urlsafe(32), True


def _subscription(**fields: Any) -> Subscription:
    from pydantic import ValidationError

    from accord.lifecycle.webhooks import Subscription

    try:
        return Subscription(**fields)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'subscription'}: {e['msg']}"
            for e in exc.errors(include_input=False)
        ]
        raise errors.InputError(
            "invalid webhook subscription:\n  " + "\n  ".join(problems)
        ) from None


def _attempt_printer(as_json: bool) -> Callable[[Attempt], None]:
    def show(attempt: Attempt) -> None:
        if as_json:
            print(attempt.model_dump_json(), flush=True)
            return
        status = attempt.status_code if attempt.status_code is not None else "-"
        detail = f" {attempt.error}" if attempt.error else ""
        print(
            f"{attempt.at:%H:%M:%S} {attempt.subscription} {attempt.event_id} "
            f"#{attempt.attempt} {status} {attempt.outcome.value}{detail}",
            flush=True,
        )

    return show


def _subscriptions_table(found: list[Subscription], positions: list[str]) -> None:
    from rich.table import Table

    table = Table(title="webhook subscriptions", title_justify="left")
    for column in ("id", "url", "events", "states", "labels", "attempts", "cursor", "secret"):
        table.add_column(column, overflow="fold")
    for s, position in zip(found, positions, strict=True):
        table.add_row(
            s.id, s.url, ", ".join(s.event_types) or "all", ", ".join(s.states) or "all",
            ", ".join(f"{k}={v}" for k, v in s.selector.items()) or "all",
            str(s.max_attempts), position, s.fingerprint,
        )  # fmt: skip
    render.console().print(table)


def _records_table(subscription_id: str, records: list[Attempt] | list[DeadLetter]) -> None:
    from rich.table import Table

    from accord.lifecycle.webhooks import Attempt

    table = Table(title=f"webhook {subscription_id}", title_justify="left")
    for column in ("at", "event", "seq", "attempt", "status", "outcome", "ms", "error"):
        table.add_column(column, no_wrap=column == "event")
    for r in records:
        status = "-" if r.status_code is None else str(r.status_code)
        if isinstance(r, Attempt):
            table.add_row(
                f"{r.at:%Y-%m-%d %H:%M:%S}", r.event_id, str(r.event_seq), str(r.attempt),
                status, r.outcome.value, f"{r.duration_ms:.0f}", r.error or "",
            )  # fmt: skip
        else:
            table.add_row(
                f"{r.at:%Y-%m-%d %H:%M:%S}", r.event_id, str(r.event_seq), str(r.attempts),
                status, "dead", "", r.last_error,
            )  # fmt: skip
    render.console().print(table)
