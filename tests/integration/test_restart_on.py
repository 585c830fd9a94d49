"""``restart_on`` end to end: real files in a tmp root, a real SQLite store, and the recording
stand-in for ``systemctl`` first on ``PATH`` (``accord.testing.systemctl``).

These manifests leave ``enabled`` out, so no call needs the real ``systemctl --root``: they run
on any machine.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from accord import errors
from accord.engine.converge import Options
from accord.engine.graph import Graph
from accord.engine.journal import Journal
from accord.engine.local import LocalSession
from accord.engine.retry import RetryPolicy
from accord.model.manifest import Manifest, StateGoal
from accord.model.plan import Plan
from accord.model.status import Phase, RunRecord, RunState
from accord.providers.registry import Registry
from accord.providers.systemd import SystemdUnitProvider
from accord.testing import systemctl
from accord.testing.fakes import FakeProvider, Script
from helpers import build_manifest, fake_resource, file

FAST = RetryPolicy(attempts=3, base=0.001, cap=0.002)
UNIT = "[Service]\nExecStart=/usr/bin/app --config /etc/app/app.conf\n"


@pytest.fixture
def standin(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> systemctl.StandIn:
    installed = systemctl.install(tmp_path / "bin", root=root)
    monkeypatch.setenv("PATH", f"{installed.directory}:{os.environ['PATH']}")
    return installed


@pytest.fixture
def units(registry: Registry) -> Registry:
    """Every provider, the fake, and a SystemdUnit that manages the stand-in's runtime."""
    registry.register(SystemdUnitProvider(runtime=True))
    return registry


def unit(rid: str = "app", name: str = "app.service", **spec: Any) -> dict[str, Any]:
    deps = spec.pop("depends_on", [])
    spec = {"name": name, "content": UNIT, "active": True, "restart_on": ["config"]} | spec
    return {"id": rid, "kind": "SystemdUnit", "spec": spec, "depends_on": deps}


def site(port: int = 80, **unit_spec: Any) -> list[dict[str, Any]]:
    return [file("config", "etc/app/app.conf", f"port = {port}\n"), unit(**unit_spec)]


async def run(
    manifest: Manifest, root: Path, state_dir: Path, registry: Registry, **options: Any
) -> tuple[Plan, RunRecord]:
    options.setdefault("retry", FAST)
    async with LocalSession(roots=[root], state_dir=state_dir, registry=registry) as session:
        return await session.converge(manifest, base_dir=root, options=Options(**options))


async def apply(resources: list[dict[str, Any]], root: Path, state_dir: Path,
                registry: Registry) -> RunRecord:  # fmt: skip
    _, record = await run(build_manifest(resources, registry=registry), root, state_dir, registry)
    return record


def status(record: RunRecord, rid: str) -> Any:
    return next(r for r in record.resources if r.id == rid)


async def test_first_apply_reloads_once_and_starts_once(
    root: Path, state_dir: Path, units: Registry, standin: systemctl.StandIn
) -> None:
    record = await apply(site(), root, state_dir, units)
    assert record.state is RunState.SUCCEEDED, record.resources
    assert standin.runtime_calls() == ["daemon-reload", "restart app.service"]
    app = standin.units()["app.service"]
    assert app["active"] == "active" and app["starts"] == 1
    assert app["started_from"] == app["loaded"]  # started after the reload, from the new file
    assert status(record, "app").reason.endswith("started: 'config' changed")
    assert status(record, "app").details["active"] == "active"
    assert record.changed == 2


async def test_an_unchanged_config_restarts_nothing(
    root: Path, state_dir: Path, units: Registry, standin: systemctl.StandIn
) -> None:
    await apply(site(), root, state_dir, units)
    standin.forget_calls()
    record = await apply(site(), root, state_dir, units)
    assert record.state is RunState.SUCCEEDED and record.changed == 0
    assert standin.runtime_calls() == []
    assert standin.units()["app.service"]["starts"] == 1
    assert status(record, "app").details == {
        "active": "active", "sub": "running", "since": standin.units()["app.service"]["since"]
    }  # fmt: skip


async def test_a_changed_config_restarts_the_unit_once_without_a_reload(
    root: Path, state_dir: Path, units: Registry, standin: systemctl.StandIn
) -> None:
    await apply(site(), root, state_dir, units)
    standin.forget_calls()
    record = await apply(site(port=81), root, state_dir, units)
    assert record.state is RunState.SUCCEEDED
    assert standin.runtime_calls() == ["restart app.service"]
    assert standin.units()["app.service"]["starts"] == 2
    app = status(record, "app")
    assert app.phase is Phase.APPLIED and app.reason == "restarted: 'config' changed"
    assert record.changed == 2
    events = await journal(state_dir)
    refreshed = [e for e in events if e["event"] == "refreshed"]
    assert refreshed[-1]["resource"] == "app" and refreshed[-1]["triggers"] == ["config"]
    assert "$ systemctl restart -- app.service" in refreshed[-1]["output"]


async def test_config_and_unit_changing_together_reload_once_then_restart_once(
    root: Path, state_dir: Path, units: Registry, standin: systemctl.StandIn
) -> None:
    await apply(site(), root, state_dir, units)
    standin.forget_calls()
    record = await apply(site(port=81, content=UNIT + "Nice=5\n"), root, state_dir, units)
    assert record.state is RunState.SUCCEEDED
    assert standin.runtime_calls() == ["daemon-reload", "restart app.service"]
    app = standin.units()["app.service"]
    assert app["started_from"] == app["loaded"] and "Nice=5" in app["loaded"]["text"]
    assert status(record, "app").reason == "app.service differs; restarted: 'config' changed"


async def test_a_changed_unit_file_alone_restarts_the_running_unit(
    root: Path, state_dir: Path, units: Registry, standin: systemctl.StandIn
) -> None:
    await apply(site(), root, state_dir, units)
    standin.forget_calls()
    record = await apply(site(content=UNIT + "Nice=5\n"), root, state_dir, units)
    assert standin.runtime_calls() == ["daemon-reload", "restart app.service"]
    assert status(record, "app").reason == "app.service differs"  # its own change, no trigger


async def test_a_dry_run_says_what_would_restart_and_runs_nothing(
    root: Path, state_dir: Path, units: Registry, standin: systemctl.StandIn
) -> None:
    await apply(site(), root, state_dir, units)
    standin.forget_calls()
    manifest = build_manifest(site(port=81), registry=units)
    plan, _ = await run(manifest, root, state_dir, units, goal=StateGoal.DRY_RUN)
    app = next(s for s in plan.steps if s.id == "app")
    assert app.change.is_noop and app.refreshes
    assert app.describe().endswith("; restart: 'config' changes")
    assert [s.id for s in plan.changes] == ["config", "app"]
    assert standin.runtime_calls() == []
    assert (root / "etc/app/app.conf").read_text() == "port = 80\n"
    plan, _ = await run(build_manifest(site(), registry=units), root, state_dir, units,
                        goal=StateGoal.DRY_RUN)  # fmt: skip
    app = next(s for s in plan.steps if s.id == "app")
    assert not app.refreshes and app.describe().endswith("; restart if 'config' changes")
    plan, _ = await run(manifest, root, state_dir, units, goal=StateGoal.STAGE)
    assert standin.runtime_calls() == []  # staging restarts nothing either


async def test_a_failed_restart_is_owed_and_done_by_the_next_run(
    root: Path, state_dir: Path, units: Registry, standin: systemctl.StandIn
) -> None:
    await apply(site(), root, state_dir, units)
    standin.fault("restart", "Job for app.service failed.", times=1)
    record = await apply(site(port=81), root, state_dir, units)
    assert record.state is RunState.FAILED
    app = status(record, "app")
    assert app.phase is Phase.FAILED and "Job for app.service failed" in app.error.message
    assert [e["during"] for e in await journal(state_dir) if e["event"] == "failed"] == ["refresh"]

    plan, _ = await run(build_manifest(site(port=81), registry=units), root, state_dir, units,
                        goal=StateGoal.DRY_RUN)  # fmt: skip
    app_step = next(s for s in plan.steps if s.id == "app")
    assert app_step.refreshes and app_step.refresh is not None
    assert app_step.refresh.pending == ("config",)
    standin.forget_calls()
    record = await apply(site(port=81), root, state_dir, units)  # the config no longer changes
    assert record.state is RunState.SUCCEEDED
    assert standin.runtime_calls() == ["restart app.service"]
    assert "changed in an earlier run" in status(record, "app").reason
    standin.forget_calls()
    record = await apply(site(port=81), root, state_dir, units)
    assert standin.runtime_calls() == [] and record.changed == 0  # paid: owed no more


async def test_a_transient_restart_failure_is_retried(
    root: Path, state_dir: Path, units: Registry, standin: systemctl.StandIn
) -> None:
    await apply(site(), root, state_dir, units)
    standin.fault("restart", "Failed to connect to bus: Connection refused", times=1)
    record = await apply(site(port=81), root, state_dir, units)
    assert record.state is RunState.SUCCEEDED
    assert status(record, "app").attempts == 2
    assert standin.units()["app.service"]["starts"] == 2


async def test_a_unit_blocked_by_a_failure_is_restarted_by_the_next_run(
    root: Path, state_dir: Path, units: Registry, fake: FakeProvider, standin: systemctl.StandIn
) -> None:
    resources = [*site(depends_on=["flaky"]), fake_resource("flaky")]
    await apply(resources, root, state_dir, units)
    fake.data["flaky"] = "drifted"
    fake.scripts["flaky"] = Script(permanent=True)
    changed = [*site(port=81, depends_on=["flaky"]), fake_resource("flaky")]
    record = await apply(changed, root, state_dir, units)
    assert status(record, "app").phase is Phase.BLOCKED
    assert standin.units()["app.service"]["starts"] == 1
    fake.scripts.clear()
    record = await apply(changed, root, state_dir, units)
    assert record.state is RunState.SUCCEEDED
    assert standin.units()["app.service"]["starts"] == 2


async def test_a_running_unit_new_to_accord_blocked_in_its_first_run_is_restarted_by_the_next(
    root: Path, state_dir: Path, units: Registry, fake: FakeProvider, standin: systemctl.StandIn
) -> None:
    """The unit was installed and running before accord took it over: it has no inventory
    record when its config changes, and its own diff is a no-op next time."""
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/app.service").write_text(UNIT)
    standin.set_unit("app.service")
    resources = [*site(port=81, depends_on=["flaky"]), fake_resource("flaky")]
    fake.scripts["flaky"] = Script(permanent=True)
    record = await apply(resources, root, state_dir, units)
    assert status(record, "app").phase is Phase.BLOCKED
    assert (root / "etc/app/app.conf").read_text() == "port = 81\n"  # changed, not restarted
    assert standin.runtime_calls() == []
    fake.scripts.clear()
    record = await apply(resources, root, state_dir, units)
    assert record.state is RunState.SUCCEEDED
    assert standin.runtime_calls() == ["restart app.service"]
    assert status(record, "app").reason == (
        "restarted: 'config' changed in an earlier run that did not finish this refresh"
    )
    standin.forget_calls()
    record = await apply(resources, root, state_dir, units)
    assert standin.runtime_calls() == [] and record.changed == 0  # paid: owed no more


async def test_an_interrupted_run_leaves_the_restart_owed(
    root: Path, state_dir: Path, units: Registry, fake: FakeProvider, standin: systemctl.StandIn
) -> None:
    resources = [*site(depends_on=["slow"]), fake_resource("slow")]
    await apply(resources, root, state_dir, units)
    fake.data["slow"] = "drifted"
    fake.scripts["slow"] = Script(hang=0.3)
    changed = [*site(port=81, depends_on=["slow"]), fake_resource("slow")]
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, stop.set)  # Ctrl-C while "slow" runs
    async with LocalSession(roots=[root], state_dir=state_dir, registry=units) as session:
        _, record = await session.converge(
            build_manifest(changed, registry=units), base_dir=root, options=Options(retry=FAST),
            stop=stop,
        )  # fmt: skip
    assert record.state is RunState.INTERRUPTED
    assert (root / "etc/app/app.conf").read_text() == "port = 81\n"  # changed, not restarted
    assert standin.units()["app.service"]["starts"] == 1
    record = await apply(changed, root, state_dir, units)
    assert standin.units()["app.service"]["starts"] == 2
    assert "changed in an earlier run" in status(record, "app").reason


async def test_a_revert_that_puts_the_config_back_leaves_a_restart_owed(
    root: Path, state_dir: Path, units: Registry, fake: FakeProvider, standin: systemctl.StandIn
) -> None:
    """The unit was restarted on port 81; the revert put port 80 back on disk after that."""
    await apply([*site(), fake_resource("flaky")], root, state_dir, units)
    fake.data["flaky"] = "drifted"
    fake.scripts["flaky"] = Script(permanent=True)
    manifest = build_manifest([*site(port=81), fake_resource("flaky")], registry=units)
    _, record = await run(manifest, root, state_dir, units, on_failure="revert")
    assert status(record, "config").phase is Phase.REVERTED
    assert (root / "etc/app/app.conf").read_text() == "port = 80\n"
    assert standin.units()["app.service"]["starts"] == 2  # restarted on port 81
    fake.scripts.clear()
    standin.forget_calls()
    record = await apply([*site(), fake_resource("flaky")], root, state_dir, units)
    assert standin.runtime_calls() == ["restart app.service"]  # the config did not change now
    assert "'config' changed in an earlier run" in status(record, "app").reason


async def test_without_an_active_declared_a_stopped_unit_is_not_started(
    root: Path, state_dir: Path, units: Registry, standin: systemctl.StandIn
) -> None:
    await apply(site(active=None), root, state_dir, units)
    record = await apply(site(port=81, active=None), root, state_dir, units)
    assert standin.runtime_calls() == ["daemon-reload", "try-restart app.service",
                                       "try-restart app.service"]  # fmt: skip
    assert standin.units()["app.service"]["active"] == "inactive"
    assert status(record, "app").reason == "not running, not restarted: 'config' changed"


async def test_a_restart_triggers_what_restarts_on_it(
    root: Path, state_dir: Path, units: Registry, standin: systemctl.StandIn
) -> None:
    worker = unit("worker", "worker.service", restart_on=["app"])
    await apply([*site(), worker], root, state_dir, units)
    standin.forget_calls()
    record = await apply([*site(port=81), worker], root, state_dir, units)
    assert standin.runtime_calls() == ["restart app.service", "restart worker.service"]
    assert status(record, "worker").reason == "restarted: 'app' changed"


async def test_the_unit_runs_after_what_it_restarts_on(
    root: Path, state_dir: Path, units: Registry, standin: systemctl.StandIn
) -> None:
    await apply(list(reversed(site())), root, state_dir, units)  # the unit first in the file
    order = [e["resource"] for e in await journal(state_dir) if e["event"] == "applied"]
    assert order == ["config", "app"]


async def test_under_another_root_the_runtime_is_left_alone_and_the_plan_says_so(
    root: Path, state_dir: Path, registry: Registry, standin: systemctl.StandIn
) -> None:
    record = await apply(site(), root, state_dir, registry)  # the entry point's provider
    assert record.state is RunState.SUCCEEDED
    assert (root / "etc/systemd/system/app.service").read_text() == UNIT
    assert standin.calls() == []
    app = status(record, "app")
    assert app.reason.endswith(f"(running state not managed: root {root} is not the live system)")
    assert record.changed == 2  # the config and the unit file; no restart is counted
    await apply(site(port=81), root, state_dir, registry)
    plan, _ = await run(build_manifest(site(82), registry=registry), root, state_dir, registry,
                        goal=StateGoal.DRY_RUN)  # fmt: skip
    assert plan.steps[1].refresh is None  # nothing to restart here: the plan promises nothing
    assert "is not the live system" in plan.steps[1].change.reason
    assert standin.calls() == []


def test_restart_on_names_must_exist(units: Registry) -> None:
    with pytest.raises(errors.ManifestError) as info:
        build_manifest([unit(restart_on=["conifg"])], registry=units)
    assert info.value.problems == [
        "test.json:1: resource 'app': spec.restart_on: unknown id 'conifg'"
    ]
    with pytest.raises(errors.ManifestError, match=r"spec\.restart_on: names itself"):
        build_manifest([unit(restart_on=["app"])], registry=units)
    manifest = build_manifest(
        [unit("a", "a.service", restart_on=["b"]), unit("b", "b.service", restart_on=["a"])],
        registry=units,
    )
    with pytest.raises(errors.GraphError, match="dependency cycle"):  # like any other cycle
        Graph.compile((r.id, r.predecessors) for r in manifest.resources)


async def journal(state_dir: Path) -> list[dict[str, Any]]:
    async with LocalSession(state_dir=state_dir, lock=False) as session:
        return await Journal(session.store).events()
