"""``Container`` through the whole engine (entry point, manifest, stage, window, apply, verify,
status, prune) against the recording stand-in of the docker CLI."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from accord.engine.converge import Options
from accord.engine.local import LocalSession
from accord.engine.retry import RetryPolicy
from accord.model.manifest import Manifest, StateGoal
from accord.model.plan import Action, Plan
from accord.model.status import RunRecord, RunState
from helpers import build_manifest
from standins.container import StandIn

IMAGE = "registry.example/web@sha256:" + "5e" * 32
DOCS = Path(__file__).parents[2] / "docs" / "kinds" / "container.md"
FAST = RetryPolicy(attempts=2, base=0.001, cap=0.002)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    stand_in = StandIn(tmp_path / "engine")
    stand_in.publish(IMAGE)
    monkeypatch.setenv("PATH", f"{stand_in.install('docker')}{os.pathsep}/usr/bin:/bin")
    return stand_in


def site(**spec: Any) -> Manifest:
    web = {"name": "web", "image": IMAGE, "ports": [{"container_port": 80, "host_port": 8080}],
           "volumes": [{"source": "srv/web", "target": "/srv", "read_only": True}],
           "runtime": "docker"} | spec  # fmt: skip
    return build_manifest(
        [
            {"id": "content", "kind": "Directory", "spec": {"path": "srv/web"}},
            {"id": "web", "kind": "Container", "spec": web, "depends_on": ["content"]},
        ]
    )


async def run(manifest: Manifest, tmp_path: Path, goal: StateGoal = StateGoal.APPLY) -> RunRecord:
    return (await plan_and_run(manifest, tmp_path, goal))[1]


async def plan_and_run(
    manifest: Manifest, tmp_path: Path, goal: StateGoal = StateGoal.APPLY
) -> tuple[Plan, RunRecord]:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    async with LocalSession(roots=[root], state_dir=tmp_path / "state") as session:
        return await session.converge(
            manifest, base_dir=root, options=Options(goal=goal, retry=FAST)
        )


async def test_stage_pulls_apply_creates_and_a_second_run_touches_nothing(
    tmp_path: Path, engine: StandIn
) -> None:
    staged = await run(site(), tmp_path, StateGoal.STAGE)
    assert staged.state is RunState.SUCCEEDED
    assert "pull" in engine.commands() and engine.containers() == {}  # nothing live yet

    engine.set(offline=True)  # the window: the registry is not needed any more
    applied = await run(site(), tmp_path)
    assert applied.state is RunState.SUCCEEDED, applied.conditions
    assert engine.containers()["web"]["running"]
    assert (tmp_path / "root" / "srv" / "web").is_dir()  # made before the container mounts it

    engine.forget_calls()
    again = await run(site(), tmp_path)
    assert again.state is RunState.SUCCEEDED and again.changed == 0
    assert not {"pull", "create", "rm", "start", "stop"} & set(engine.commands())
    (status,) = [r for r in again.resources if r.id == "web"]  # listed for its details
    assert status.details["status"] == "running" and status.details["restarts"] == 0
    assert status.details["running_since"]


async def test_plan_names_what_changed_and_a_window_run_replaces(
    tmp_path: Path, engine: StandIn
) -> None:
    await run(site(), tmp_path)
    engine.publish("registry.example/web:2")

    plan, _ = await plan_and_run(site(image="registry.example/web:2"), tmp_path, StateGoal.DRY_RUN)
    (step,) = [s for s in plan.steps if s.id == "web"]
    assert step.change.action is Action.UPDATE and step.stage  # to be pulled first
    assert [f.field for f in step.change.fields] == ["image"]

    replaced = await run(site(image="registry.example/web:2"), tmp_path)
    assert replaced.state is RunState.SUCCEEDED, replaced.conditions
    assert engine.containers()["web"]["image"] == "registry.example/web:2"


async def test_an_unstaged_image_fails_the_resource_not_the_run_and_pulls_nothing(
    tmp_path: Path, engine: StandIn
) -> None:
    engine.set(offline=True)
    record = await run(site(), tmp_path)
    assert record.state is RunState.FAILED
    (web,) = [r for r in record.resources if r.id == "web"]
    assert web.error is not None and "pull" in web.error.message  # stage tried, said why
    assert engine.containers() == {}


async def test_pruning_removes_the_container_accord_created(
    tmp_path: Path, engine: StandIn
) -> None:
    await run(site(), tmp_path)
    only_dir = build_manifest([{"id": "content", "kind": "Directory", "spec": {"path": "srv/web"}}])
    record = await run(only_dir, tmp_path)
    assert record.state is RunState.SUCCEEDED, record.conditions
    assert engine.containers() == {}
    assert IMAGE in engine.images()


def test_the_examples_in_the_docs_are_valid_manifests() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        resources = yaml.safe_load(block)
        assert build_manifest(resources).resources
