"""``accord flow run | status | signal | resume | list``: durable workflows on this machine.

``run`` prints the run id as the first line of stdout, then runs the flow in the foreground with
one progress line per task transition on stderr, and ends with the run's state on stdout. Exit
codes: 0 succeeded; 1 failed, reverted or aborted (or the run could not proceed); 2 bad input;
130 interrupted (Ctrl-C: the run is left ``interrupted`` and ``resume`` continues it).

``run`` and ``resume`` hold the state dir's lock for the whole run, waits included, like
``apply``. ``status``, ``signal`` and ``list`` do not take it, so they work while a flow runs.
The roots and ``--allow-commands`` of ``run`` are kept in the run record; ``resume`` reuses
them unless given again.

``status`` exits 0 when the run succeeded or is running or waiting in a live process, 1
otherwise (failed, reverted, aborted, crashed, interrupted, or left running by a dead process).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from accord import errors
from accord.cli import render, runtime
from accord.cli.options import JsonOpt, RootOpt, StateDirOpt, StoreOpt

if TYPE_CHECKING:
    from accord.engine.flows.journal import FlowRun
    from accord.engine.flows.runner import FlowRunner
    from accord.engine.flows.states import TaskState
    from accord.engine.local import LocalSession

app = typer.Typer(
    name="flow",
    help="Durable workflows: run a flow, watch it, signal it, resume it after a crash.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RunArg = Annotated[str, typer.Argument(help="The flow run id (see `accord flow list`).")]
CommandsOpt = Annotated[
    bool | None,
    typer.Option(
        "--allow-commands/--no-allow-commands",
        help="Allow Command resources in converge tasks.",
        show_default=False,
    ),
]

_OK_STATES = ("succeeded", "running", "waiting")
_STYLE = {"succeeded": "green", "failed": "bold red", "reverted": "yellow", "aborted": "red",
          "interrupted": "yellow", "crashed": "red", "waiting": "cyan", "running": "blue",
          "reverting": "yellow", "revert_failed": "bold red", "retrying": "yellow",
          "pending": "dim"}  # fmt: skip


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Flow file (YAML or JSON).")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A flow parameter, KEY=VALUE (VALUE may be JSON)."),
    ] = None,
    node: Annotated[
        str | None, typer.Option(help="The node the flow is about (services and ${node}).")
    ] = None,
    root: RootOpt = None,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
    allow_commands: CommandsOpt = None,
) -> None:
    """Run a flow in the foreground; print its run id first, then its progress."""

    async def main(stop: asyncio.Event) -> int:
        roots = [r.absolute() for r in root or [Path("/")]]
        record = await run_flow_file(
            file, params=_params(param or []), node=node, roots=roots, state_dir=state_dir,
            store=store, allow_commands=bool(allow_commands), stop=stop,
        )  # fmt: skip
        return exit_code(record)

    runtime.run(main)


async def run_flow_file(
    file: Path,
    *,
    params: dict[str, Any],
    node: str | None,
    roots: list[Path],
    state_dir: Path | None,
    store: str | None,
    allow_commands: bool,
    stop: asyncio.Event,
) -> FlowRun:
    """Run a flow file to its end in the foreground (also how entering a state starts one)."""
    from accord.engine.flows import tasks
    from accord.engine.flows.model import load_flow

    registry = tasks.default()
    flow = load_flow(file, registry.names())
    if node is not None and "node" in flow.params and "node" not in params:
        params["node"] = node
    async with _session(roots, state_dir, store, allow_commands, lock=True) as session:
        runner = _runner(session)
        return await runner.run(
            flow, params=params, node=node, base_dir=file.resolve().parent, stop=stop,
            context={"roots": [str(r) for r in roots], "allow_commands": allow_commands},
        )  # fmt: skip


@app.command()
def resume(
    run_id: RunArg,
    root: RootOpt = None,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
    allow_commands: CommandsOpt = None,
) -> None:
    """Continue a crashed or interrupted run: finished tasks are not run again."""

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.flows.journal import FlowJournal

        async with _session([Path("/")], state_dir, store, False, lock=False) as probe:
            context = (await FlowJournal(probe.store).get(run_id)).context
        roots = (
            [r.absolute() for r in root] if root else [Path(r) for r in context.get("roots", ["/"])]
        )
        commands = bool(context.get("allow_commands")) if allow_commands is None else allow_commands
        async with _session(roots, state_dir, store, commands, lock=True) as session:
            _print_first(run_id)
            record = await _runner(session, quiet_first=True).resume(run_id, stop=stop)
        return exit_code(record)

    runtime.run(main)


@app.command()
def status(
    run_id: Annotated[str | None, typer.Argument(help="A run id (default: the latest).")] = None,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
    json_: JsonOpt = False,
) -> None:
    """A run's state, what it waits for, and every task's state."""

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.flows import view
        from accord.engine.flows.journal import FlowJournal
        from accord.engine.flows.lock import RunLock

        async with _session([Path("/")], state_dir, store, False, lock=False) as session:
            journal = FlowJournal(session.store)
            if run_id is None:
                runs = await journal.runs()
                if not runs:
                    if json_:
                        render.emit_json(None)
                    else:
                        render.console().print("no flow runs recorded yet")
                    return runtime.OK
                record = runs[-1]
            else:
                record = await journal.get(run_id)
            tasks = await view.tasks_of(journal, record)
            live = RunLock.held(session.state_dir / "flows", record.run_id)
        rows = [t.model_dump(mode="json", exclude_none=True) for t in tasks]
        if json_:
            render.emit_json({"run": record.model_dump(mode="json"), "live": live, "tasks": rows})
        else:
            _show(record, rows, live)
        healthy = record.state.value == "succeeded" or (record.state.value in _OK_STATES and live)
        return runtime.OK if healthy else runtime.FAILED

    runtime.run(main)


@app.command()
def signal(
    run_id: RunArg,
    name: Annotated[str, typer.Argument(help="approve, abort, retry, skip, or a flow's own.")],
    data: Annotated[str | None, typer.Option(help="JSON data for the waiting task.")] = None,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
) -> None:
    """Send a signal into a run (a waiting task takes it; `abort` stops the run)."""

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.flows import signals
        from accord.engine.flows.journal import FlowJournal

        payload = _json(data, "--data") if data is not None else None
        async with _session([Path("/")], state_dir, store, False, lock=False) as session:
            record = await FlowJournal(session.store).get(run_id)
            if record.state.terminal:
                raise errors.InputError(f"flow run {run_id} has ended ({record.state})")
            revision = await signals.send(session.store, run_id, name, payload)
        render.console().print(f"sent {name} to {run_id} (revision {revision})")
        return runtime.OK

    runtime.run(main)


@app.command("list")
def list_(state_dir: StateDirOpt = None, store: StoreOpt = None, json_: JsonOpt = False) -> None:
    """Every flow run, oldest first."""

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.flows.journal import FlowJournal

        async with _session([Path("/")], state_dir, store, False, lock=False) as session:
            records = await FlowJournal(session.store).runs()
        if json_:
            render.emit_json([r.model_dump(mode="json") for r in records])
            return runtime.OK
        if not records:
            render.console().print("no flow runs recorded yet")
            return runtime.OK
        from rich.table import Table

        table = Table(title="flow runs", title_justify="left")
        for column in ("run", "flow", "node", "state", "started", "finished", "waiting for"):
            table.add_column(column)
        for r in records:
            waits = "; ".join(f"{k}: {v}" for k, v in r.waiting_for.items())
            table.add_row(
                r.run_id, r.flow, r.node or "", _styled(r.state.value), _when(r.started_at),
                _when(r.finished_at), escape(waits),
            )  # fmt: skip
        render.console().print(table)
        return runtime.OK

    runtime.run(main)


# -- helpers -------------------------------------------------------------------------------


class _Printer:
    """Progress on stderr; the run id first on stdout."""

    def __init__(self, *, quiet_first: bool = False) -> None:
        self.out = render.console(stderr=True)
        self.started = quiet_first
        self.last: tuple[str, str] | None = None

    def run(self, record: FlowRun) -> None:
        if not self.started:
            self.started = True
            _print_first(record.run_id)
        shown = (record.state.value, json.dumps(record.waiting_for, sort_keys=True))
        if shown != self.last:
            self.last = shown
            waits = escape("; ".join(f"{k} waits for {v}" for k, v in record.waiting_for.items()))
            line = f"run {_styled(record.state.value)}" + (f": {waits}" if waits else "")
            self.out.print(line, soft_wrap=True)
            for condition in record.conditions:
                message = f"  [bold]{condition.type}[/]: {escape(condition.message)}"
                self.out.print(message, soft_wrap=True)

    def task(self, run_id: str, task_id: str, state: TaskState, detail: str) -> None:
        line = f"  {task_id:<28} {_styled(state.value)}"
        self.out.print(line + (f"  {escape(detail)}" if detail else ""), soft_wrap=True)


def _print_first(run_id: str) -> None:
    sys.stdout.write(f"{run_id}\n")
    sys.stdout.flush()


def _runner(session: LocalSession, *, quiet_first: bool = False) -> FlowRunner:
    from accord.engine.flows import tasks
    from accord.engine.flows.runner import FlowRunner

    return FlowRunner(
        session.store,
        tasks.default(),
        lock_dir=session.state_dir / "flows",
        services={"session": session},
        observer=_Printer(quiet_first=quiet_first),
    )


def _session(
    roots: list[Path], state_dir: Path | None, store: str | None, commands: bool, *, lock: bool
) -> LocalSession:
    from accord.engine.local import LocalSession

    return LocalSession(
        roots=roots, state_dir=state_dir, store_url=store, allow_commands=commands, lock=lock
    )


def exit_code(record: FlowRun) -> int:
    state = record.state.value
    line = f"{record.run_id} {_styled(state)}"
    if record.error is not None:
        error = record.error
        line += escape(f": task {record.failed_task}: {error.type}: {error.message}")
    render.console().print(line, soft_wrap=True)
    if state == "interrupted":
        render.console(stderr=True).print(f"resume it with: accord flow resume {record.run_id}")
        return runtime.INTERRUPTED
    return runtime.OK if state == "succeeded" else runtime.FAILED


def _params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise errors.InputError(f"--param {pair!r}: use KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value  # not JSON: the text itself
    return params


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise errors.InputError(f"{what} is not JSON: {exc}") from None


def _show(record: FlowRun, rows: list[dict[str, Any]], live: bool) -> None:
    from rich.table import Table

    out = render.console()
    table = Table(title=f"flow {record.flow} run {record.run_id}", title_justify="left")
    for column in ("task", "type", "state", "detail"):
        table.add_column(column)
    for row in rows:
        detail = ""
        if "error" in row:
            error = row["error"]
            detail = (
                f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else ""
            )
        elif "result" in row:
            detail = json.dumps(row["result"])[:80]
        if row["attempt"] > 1:
            detail = f"{detail} (attempt {row['attempt']})".strip()
        table.add_row(row["id"], row["task"], _styled(row["state"]), escape(detail))
    out.print(table)
    state = record.state.value
    note = ""
    if state in ("running", "waiting", "reverting") and not live:
        note = f" — its process is gone: accord flow resume {record.run_id}"
    finished = f", finished {_when(record.finished_at)}" if record.finished_at else ""
    lines = [f"state: {_styled(state)}{note}  (started {_when(record.started_at)}{finished})"]
    lines += [
        escape(f"  {task_id} waits for {what}") for task_id, what in record.waiting_for.items()
    ]
    lines += [f"  [bold]{c.type}[/]: {escape(c.message)}" for c in record.conditions]
    if record.error is not None:
        lines.append(escape(f"  failed at {record.failed_task}: {record.error.message}"))
    for line in lines:
        out.print(line, soft_wrap=True)


def escape(text: str) -> str:
    """Text shown through rich, with ``[`` not taken for markup."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _styled(state: str) -> str:
    return f"[{_STYLE.get(state, 'default')}]{state}[/]"


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


if __name__ == "__main__":  # `python -m accord.cli.flow`, until `flow` joins the root app
    app(prog_name="accord flow")
