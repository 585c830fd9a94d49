"""``accord plan | stage | apply | status | history | schema``: converge this machine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

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
    json_: JsonOpt = False,
) -> None:
    """Converge this machine to the manifest: stage, apply what differs, verify, prune."""
    goal = StateGoal.DRY_RUN if dry_run else StateGoal.APPLY
    _converge(manifest, goal, root, state_dir, store, allow_commands, json_,
              concurrency=concurrency, timeout=timeout, revert=revert, prune=prune)  # fmt: skip


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
    return record.state is RunState.SUCCEEDED


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
) -> None:
    async def main(stop: asyncio.Event) -> int:
        from accord.engine.converge import Options
        from accord.engine.local import LocalSession, load_manifest

        loaded = load_manifest(manifest)
        options = Options(goal=goal, concurrency=concurrency, step_timeout=timeout,
                          on_failure="revert" if revert else "continue", prune=prune)  # fmt: skip
        dry = goal is StateGoal.DRY_RUN
        async with LocalSession(
            roots=roots or [Path("/")], state_dir=state_dir, store_url=store,
            allow_commands=allow_commands, lock=not dry,
        ) as session:  # fmt: skip
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
        return runtime.OK if record.state is RunState.SUCCEEDED else runtime.FAILED

    runtime.run(main)
