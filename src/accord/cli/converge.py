"""``accord plan | stage | apply | status | history | schema``: converge this machine."""

from __future__ import annotations

import asyncio
import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from accord import errors
from accord.cli import render, runtime
from accord.cli.options import (
    CommandsOpt,
    ConcurrencyOpt,
    JsonOpt,
    ManifestArg,
    RootOpt,
    StateDirOpt,
    StoreOpt,
    TimeoutOpt,
)
from accord.model.manifest import StateGoal
from accord.model.status import RunRecord, RunState

if TYPE_CHECKING:
    from accord.engine.gate import Gate
    from accord.engine.local import LocalSession


def plan(
    manifest: ManifestArg,
    root: RootOpt = None,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
    allow_commands: CommandsOpt = False,
    all_: Annotated[bool, typer.Option("--all", help="Show converged resources too.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Show what apply would change, and why each other resource is already right."""
    _converge(manifest, StateGoal.DRY_RUN, root, state_dir, store, allow_commands, json_,
              show_noop=all_)  # fmt: skip


def stage(
    manifest: ManifestArg,
    root: RootOpt = None,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
    allow_commands: CommandsOpt = False,
    concurrency: ConcurrencyOpt = 8,
    timeout: TimeoutOpt = 3600.0,
    json_: JsonOpt = False,
) -> None:
    """Prepare everything apply will need (downloads into the cache); change nothing live."""
    _converge(manifest, StateGoal.STAGE, root, state_dir, store, allow_commands, json_,
              concurrency=concurrency, timeout=timeout)  # fmt: skip


def apply(
    manifest: ManifestArg,
    root: RootOpt = None,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
    allow_commands: CommandsOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only; change nothing.")] = False,
    revert: Annotated[
        bool, typer.Option("--revert-on-failure", help="Undo this run's changes if one fails.")
    ] = False,
    prune: Annotated[bool, typer.Option(help="Remove resources that left the manifest.")] = True,
    concurrency: ConcurrencyOpt = 8,
    timeout: TimeoutOpt = 600.0,
    node: Annotated[
        str | None, typer.Option(help="This machine's node id: its lifecycle state gates apply.")
    ] = None,
    windows: Annotated[
        Path | None, typer.Option(help="Maintenance windows YAML: apply only inside them.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Apply now, outside windows and lifecycle policy.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Converge this machine to the manifest: stage, apply what differs, verify, prune.

    With --node and/or --windows, apply waits for the gate: the run stages, then records when
    it will apply (exit 0, state "waiting") unless --force.
    """
    goal = StateGoal.DRY_RUN if dry_run else StateGoal.APPLY
    gate = GateOptions(node=node, windows=windows, force=force)
    _converge(manifest, goal, root, state_dir, store, allow_commands, json_,
              concurrency=concurrency, timeout=timeout, revert=revert, prune=prune,
              gate=gate)  # fmt: skip


def status(
    manifest: Annotated[str | None, typer.Argument(help="Manifest name (default: all).")] = None,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
    json_: JsonOpt = False,
) -> None:
    """The latest run of each manifest: state, conditions and what is not converged."""

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.journal import Journal
        from accord.engine.local import LocalSession

        async with LocalSession(state_dir=state_dir, store_url=store, lock=False) as session:
            journal = Journal(session.store)
            if manifest:
                latest = await journal.latest(manifest)
                records = [latest] if latest else []
            else:
                records = await journal.statuses()
        if json_:
            render.emit_json([r.model_dump(mode="json") for r in records])
        elif not records:
            render.console().print("no runs recorded yet")
        elif manifest:
            render.run(records[0])
        else:
            render.statuses(records)
        return runtime.OK if all(_converged(r) for r in records) else runtime.FAILED

    runtime.run(main)


def history(
    manifest: Annotated[str | None, typer.Argument(help="Manifest name (default: all).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Show this run's journal.")] = None,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Past runs, or with --run the journal of one run (every step transition)."""

    async def main(stop: asyncio.Event) -> int:
        from accord.engine.journal import Journal
        from accord.engine.local import LocalSession

        async with LocalSession(state_dir=state_dir, store_url=store, lock=False) as session:
            journal = Journal(session.store)
            if run:
                found = await journal.events(run)
                if json_:
                    render.emit_json(found)
                else:
                    render.events(found)
                return runtime.OK
            records = await journal.runs(manifest)
        if json_:
            render.emit_json([r.model_dump(mode="json", exclude={"resources"}) for r in records])
        else:
            render.runs(records)
        return runtime.OK

    runtime.run(main)


def schema() -> None:
    """Print the JSON Schema of manifests over every installed resource kind."""
    from accord.model.loading import json_schema
    from accord.providers import registry

    render.emit_json(json_schema(registry.default().kinds()))


def _converged(record: RunRecord) -> bool:
    return record.state in (RunState.SUCCEEDED, RunState.WAITING, RunState.PAUSED)


@dataclass(frozen=True)
class GateOptions:
    """The gate as the command line describes it; built once the store is open."""

    node: str | None
    windows: Path | None
    force: bool

    async def build(self, session: LocalSession) -> Gate:
        from accord.engine.gate import Gate
        from accord.lifecycle import nodes
        from accord.lifecycle.windows import load_windows

        node = lifecycle = schedule = None
        if self.node is not None:
            node, _ = await nodes.get_node(session.store, self.node)
            lifecycle = await nodes.get_lifecycle(session.store, node.lifecycle)
        if self.windows is not None:
            try:
                text = self.windows.read_text()
            except OSError as exc:
                raise errors.InputError(f"{self.windows}: {exc.strerror or exc}") from None
            schedule = load_windows(text, source=str(self.windows))
        return Gate(node=node, lifecycle=lifecycle, schedule=schedule, force=self.force,
                    forced_by=getpass.getuser())  # fmt: skip


def _converge(
    manifest: Path,
    goal: StateGoal,
    roots: list[Path] | None,
    state_dir: Path | None,
    store: str | None,
    allow_commands: bool,
    as_json: bool,
    *,
    show_noop: bool = False,
    concurrency: int = 8,
    timeout: float = 600.0,
    revert: bool = False,
    prune: bool = True,
    gate: GateOptions | None = None,
) -> None:
    async def main(stop: asyncio.Event) -> int:
        from accord.engine.converge import Options
        from accord.engine.local import LocalSession, load_manifest

        loaded = load_manifest(manifest)
        dry = goal is StateGoal.DRY_RUN
        async with LocalSession(
            roots=roots or [Path("/")], state_dir=state_dir, store_url=store,
            allow_commands=allow_commands, lock=not dry,
        ) as session:  # fmt: skip
            options = Options(goal=goal, concurrency=concurrency, step_timeout=timeout,
                              on_failure="revert" if revert else "continue", prune=prune,
                              gate=await gate.build(session) if gate else None)  # fmt: skip
            base_dir = manifest.resolve().parent
            if as_json or dry:
                result, record = await session.converge(
                    loaded, base_dir=base_dir, options=options, stop=stop
                )
            else:
                with render.ProgressReporter() as reporter:
                    result, record = await session.converge(
                        loaded, base_dir=base_dir, options=options, reporter=reporter, stop=stop
                    )
        if as_json:
            render.emit_result(result, None if dry else record)
        elif dry:
            render.plan(result, show_noop=show_noop)
        else:
            render.run(record)
        if record.state is RunState.INTERRUPTED:
            return runtime.INTERRUPTED
        return runtime.OK if _converged(record) else runtime.FAILED

    runtime.run(main)
