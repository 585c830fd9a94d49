"""All terminal output in one place: tables, JSON and progress bars.

Rich is imported lazily: ``--json`` runs and scripts never pay for it.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from accord.model.plan import Action, Plan
from accord.model.status import Phase, ResourceStatus, RunRecord

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

ACTION_STYLE = {Action.NOOP: "dim", Action.CREATE: "green", Action.UPDATE: "yellow",
                Action.DELETE: "red"}  # fmt: skip
MIB = 1024 * 1024
PHASE_STYLE = {Phase.APPLIED: "green", Phase.STAGED: "cyan", Phase.FAILED: "bold red",
               Phase.BLOCKED: "red", Phase.INTERRUPTED: "yellow", Phase.PRUNED: "magenta",
               Phase.REVERTED: "yellow", Phase.PENDING: "dim"}  # fmt: skip


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A simple table on stdout."""
    from rich.table import Table

    shown = Table(title=title, title_justify="left")
    for column in columns:
        shown.add_column(column)
    for row in rows:
        shown.add_row(*row)
    console().print(shown)


def emit_json(data: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


class RunOutput(BaseModel):
    """What ``plan | stage | apply --json`` print: the plan and, unless a dry run, the run."""

    plan: Plan
    run: RunRecord | None = None


def emit_result(plan: Plan, run: RunRecord | None) -> None:
    """Print a run's JSON through pydantic's encoder: 10,000 plan steps in milliseconds."""
    output = RunOutput.model_construct(plan=plan, run=run)
    sys.stdout.write(output.model_dump_json(indent=2, exclude={"run"} if run is None else None))
    sys.stdout.write("\n")


def plan(plan: Plan, *, show_noop: bool = False) -> None:
    from rich.table import Table

    table = Table(
        title=f"plan for {plan.manifest} (generation {plan.generation})", title_justify="left"
    )
    for column in ("resource", "kind", "action", "why"):
        table.add_column(column)
    hidden = 0
    for step in (*plan.steps, *plan.prune):
        if step.change.is_noop and not step.refreshes and not show_noop:
            hidden += 1
            continue
        style = ACTION_STYLE[step.change.action]
        action = step.change.action.value + (" (stage first)" if step.stage else "")
        if step.refreshes and step.refresh is not None:
            action += f" + {step.refresh.action}"
        table.add_row(step.id, step.kind, f"[{style}]{action}[/]", step.describe())
    out = console()
    if table.row_count:
        out.print(table)
    counts = plan.counts()
    summary = ", ".join(f"{n} to {a}" for a, n in counts.items() if n and a != "noop")
    refreshes: dict[str, int] = {}
    for step in plan.steps:
        if step.refreshes and step.refresh is not None:
            refreshes[step.refresh.action] = refreshes.get(step.refresh.action, 0) + 1
    summary = ", ".join([*filter(None, [summary]), *(f"{n} to {a}" for a, n in refreshes.items())])
    hint = f" (hidden: {hidden}, --all shows them)" if hidden else ""
    out.print(f"{summary or 'nothing to change'}; {counts['noop']} already converged{hint}")


def run(record: RunRecord) -> None:
    from rich.table import Table

    out = console()
    if record.resources:
        table = Table(title=f"run {record.run_id}", title_justify="left")
        for column in ("resource", "kind", "phase", "detail"):
            table.add_column(column)
        for status in record.resources:
            table.add_row(status.id, status.kind, _phase(status.phase), _detail(status))
        out.print(table)
    counts = ", ".join(f"{n} {phase}" for phase, n in sorted(record.counts.items()))
    counts += f"; {record.changed} changed" if record.goal.value == "apply" else ""
    out.print(f"{record.manifest} generation {record.generation}: [bold]{record.state.value}[/] "
              f"({counts or 'no resources'})")  # fmt: skip
    if record.resumes:
        out.print(f"resumed the unfinished run {record.resumes}")
    if record.state.value in ("waiting", "paused"):
        applies = f"; applies at {when(record.opens_at)} UTC" if record.opens_at else ""
        out.print(f"{record.state.value}: {record.gate}{applies}")


def statuses(records: list[RunRecord]) -> None:
    from rich.table import Table

    table = Table(title="status (latest run of each manifest)", title_justify="left")
    for column in ("manifest", "generation", "goal", "state", "ready", "resources", "finished"):
        table.add_column(column)
    for r in records:
        ready = next((c for c in r.conditions if c.type == "Ready"), None)
        table.add_row(
            r.manifest, str(r.generation), r.goal.value, r.state.value,
            f"{ready.status.value} ({ready.reason})" if ready else "Unknown",
            ", ".join(f"{n} {p}" for p, n in sorted(r.counts.items())), when(r.finished_at),
        )  # fmt: skip
    console().print(table)


def runs(records: list[RunRecord]) -> None:
    from rich.table import Table

    table = Table(title="runs", title_justify="left")
    for column in ("run", "manifest", "gen", "goal", "state", "started", "resumes"):
        table.add_column(column)
    for r in records:
        table.add_row(r.run_id, r.manifest, str(r.generation), r.goal.value, r.state.value,
                      when(r.started_at), r.resumes or "")  # fmt: skip
    console().print(table)


def events(found: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="journal", title_justify="left")
    for column in ("seq", "at", "run", "event", "resource", "detail"):
        table.add_column(column)
    for e in found:
        detail = {k: v for k, v in e.items() if k not in ("seq", "at", "run", "event", "resource")}
        table.add_row(str(e["seq"]), when(datetime.fromtimestamp(e["at"])), e["run"], e["event"],
                      e.get("resource", ""), json.dumps(detail) if detail else "")  # fmt: skip
    console().print(table)


class ProgressReporter:
    """Progress bars on stderr: one per phase (steps), one per download (bytes)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress: Progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            console=console(stderr=True),
        )
        self._phase: TaskID | None = None
        self._downloads: dict[str, TaskID] = {}

    def __enter__(self) -> ProgressReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def planned(self, plan: Plan) -> None:
        pass

    def phase(self, name: str, total: int) -> None:
        self._phase = None
        if total:
            self._phase = self.progress.add_task(name, total=total, count=f"0/{total}")

    def step(self, phase: str, status: ResourceStatus) -> None:
        if self._phase is not None:
            task = self.progress.tasks[self._phase]
            done = int(task.completed) + 1
            self.progress.update(self._phase, completed=done, count=f"{done}/{task.total:g}")

    def transfer(self, resource_id: str, done: int, total: int | None) -> None:
        task = self._downloads.get(resource_id)
        if task is None:
            task = self.progress.add_task(f"  {resource_id}", total=total, count="")
            self._downloads[resource_id] = task
        size = f"{done / MIB:.1f}/{total / MIB:.1f} MiB" if total else f"{done / MIB:.1f} MiB"
        self.progress.update(task, completed=done, total=total, count=size)


def _phase(phase: Phase) -> str:
    return f"[{PHASE_STYLE[phase]}]{phase.value}[/]"


def _detail(status: ResourceStatus) -> str:
    parts = []
    if status.error:
        parts.append(f"{status.error.type}: {status.error.message}")
    elif status.reason:
        parts.append(status.reason)
    if status.attempts > 1:
        parts.append(f"after {status.attempts} attempts")
    if status.details:
        parts.append(" ".join(f"{key}={value}" for key, value in status.details.items()))
    return "; ".join(parts)


def when(moment: datetime | None) -> str:
    """A timestamp as people read it in a table."""
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""
