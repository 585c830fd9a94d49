"""The engine's refresh mechanism (``restart_on``) over a kind made up here, to show it is generic:
``Bell`` rings (its refresh) when a resource it names changed in the run."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from accord import errors
from accord.engine.converge import Options
from accord.engine.inventory import Inventory
from accord.engine.local import LocalSession
from accord.engine.refresh import reverting
from accord.engine.retry import RetryPolicy
from accord.model.manifest import StateGoal
from accord.model.plan import Action, Change, Plan
from accord.model.specs import Spec
from accord.model.status import Phase, RunRecord, RunState
from accord.providers.base import Context, Provider
from accord.providers.registry import Registry
from accord.testing.fakes import FakeProvider, Script
from helpers import build_manifest, fake_resource

FAST = RetryPolicy(attempts=2, base=0.001, cap=0.002)


class BellSpec(Spec):
    key: str
    rings_on: tuple[str, ...] = ()

    def references(self) -> Mapping[str, tuple[str, ...]]:
        return {"rings_on": self.rings_on}


@dataclass
class BellProvider(Provider[BellSpec, bool]):
    kind: ClassVar[str] = "Bell"
    spec_model: ClassVar[type[Spec]] = BellSpec
    refresh_verb: ClassVar[str] = "ring"

    rings: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # (key, triggered)
    broken: bool = False

    async def observe(self, ctx: Context, spec: BellSpec) -> bool:
        return True

    def diff(self, spec: BellSpec, current: bool | None) -> Change:
        return Change.noop("a bell is always there")

    async def apply(self, ctx: Context, spec: BellSpec, current: bool | None) -> None:
        raise AssertionError("a bell never differs")

    async def delete(self, ctx: Context, spec: BellSpec, prior: Any) -> str:
        return "gone"

    def triggers(self, ctx: Context, spec: BellSpec) -> tuple[str, ...]:
        return spec.rings_on

    async def refresh(self, ctx: Context, spec: BellSpec, current: bool | None) -> str:
        if self.broken:
            raise errors.PermanentError("the bell is cracked")
        self.rings.append((spec.key, ctx.triggered))
        return "rang"


@pytest.fixture
def bell(registry: Registry) -> BellProvider:
    provider = BellProvider()
    registry.register(provider)
    return provider


def bell_resource(key: str, *rings_on: str, depends_on: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"id": key, "kind": "Bell", "spec": {"key": key, "rings_on": list(rings_on)},
            "depends_on": list(depends_on)}  # fmt: skip


def step_of(plan: Plan, rid: str) -> Any:
    return next(s for s in plan.steps if s.id == rid)


def status_of(record: RunRecord, rid: str) -> Any:
    return next(r for r in record.resources if r.id == rid)


async def run(resources: list[dict[str, Any]], root: Path, state_dir: Path, registry: Registry,
              goal: StateGoal = StateGoal.APPLY,
              **options: Any) -> tuple[Plan, RunRecord]:  # fmt: skip
    manifest = build_manifest(resources, registry=registry)
    async with LocalSession(roots=[root], state_dir=state_dir, registry=registry) as session:
        return await session.converge(manifest, base_dir=root, options=Options(goal=goal,
                                      retry=FAST, **options))  # fmt: skip


async def test_a_bell_rings_once_when_what_it_names_changed(
    root: Path, state_dir: Path, registry: Registry, bell: BellProvider
) -> None:
    resources = [fake_resource("a", "1"), fake_resource("b", "1"), bell_resource("bell", "a", "b")]
    _, record = await run(resources, root, state_dir, registry)
    assert bell.rings == [("bell", ("a", "b"))]
    status = next(r for r in record.resources if r.id == "bell")
    assert status.reason == "rang: 'a' and 'b' changed" and status.phase is Phase.APPLIED
    assert record.changed == 3

    bell.rings.clear()
    _, record = await run(resources, root, state_dir, registry)
    assert bell.rings == [] and record.changed == 0  # nothing changed: silence

    resources[1] = fake_resource("b", "2")
    plan, _ = await run(resources, root, state_dir, registry, StateGoal.DRY_RUN)
    step = next(s for s in plan.steps if s.id == "bell")
    assert step.change.action is Action.NOOP and step.refreshes
    assert step.describe() == "a bell is always there; ring: 'b' changes"
    assert bell.rings == []  # a dry run rings nothing
    await run(resources, root, state_dir, registry, StateGoal.STAGE)
    assert bell.rings == []  # nor does staging
    await run(resources, root, state_dir, registry)
    assert bell.rings == [("bell", ("b",))]


async def test_a_ring_that_failed_is_owed_to_the_next_run(
    root: Path, state_dir: Path, registry: Registry, bell: BellProvider
) -> None:
    resources = [fake_resource("a", "1"), bell_resource("bell", "a")]
    await run(resources, root, state_dir, registry)
    bell.broken = True
    resources[0] = fake_resource("a", "2")
    _, record = await run(resources, root, state_dir, registry)
    assert record.state is RunState.FAILED
    bell.broken = False
    plan, _ = await run(resources, root, state_dir, registry, StateGoal.DRY_RUN)
    step = next(s for s in plan.steps if s.id == "bell")
    assert step.describe().endswith("ring: 'a' changed in an earlier run that did not ring it")
    bell.rings.clear()
    _, record = await run(resources, root, state_dir, registry)
    assert bell.rings == [("bell", ("a",))]
    bell.rings.clear()
    await run(resources, root, state_dir, registry)
    assert bell.rings == []


async def test_a_bell_new_to_accord_keeps_the_ring_it_was_blocked_from(
    root: Path, state_dir: Path, registry: Registry, bell: BellProvider, fake: FakeProvider
) -> None:
    """The bell has no inventory record yet when ``a`` changes: the debt is kept all the same."""
    resources = [fake_resource("a"), fake_resource("flaky"),
                 bell_resource("bell", "a", depends_on=("flaky",))]  # fmt: skip
    fake.scripts["flaky"] = Script(permanent=True)
    _, record = await run(resources, root, state_dir, registry)
    assert status_of(record, "bell").phase is Phase.BLOCKED and bell.rings == []
    assert fake.data["a"] == "v"  # the trigger applied: next time it changes no more
    fake.scripts.clear()
    plan, _ = await run(resources, root, state_dir, registry, StateGoal.DRY_RUN)
    assert step_of(plan, "a").change.is_noop
    assert step_of(plan, "bell").refresh.pending == ("a",)
    _, record = await run(resources, root, state_dir, registry)
    assert bell.rings == [("bell", ("a",))]
    assert "'a' changed in an earlier run" in status_of(record, "bell").reason
    bell.rings.clear()
    _, record = await run(resources, root, state_dir, registry)
    assert bell.rings == [] and record.changed == 0  # paid: owed no more


async def test_a_debt_an_older_version_kept_in_the_record_is_still_paid(
    root: Path, state_dir: Path, registry: Registry, bell: BellProvider
) -> None:
    resources = [fake_resource("a"), bell_resource("bell", "a")]
    await run(resources, root, state_dir, registry)
    async with LocalSession(state_dir=state_dir, lock=False) as session:
        inventory = Inventory(session.store, "test")
        record = (await inventory.load())["bell"]
        await inventory.save(dataclasses.replace(record, pending=("a",)))  # Managed.pending
    bell.rings.clear()
    await run(resources, root, state_dir, registry)
    assert bell.rings == [("bell", ("a",))]
    async with LocalSession(state_dir=state_dir, lock=False) as session:
        assert (await Inventory(session.store, "test").load())["bell"].pending == ()
    bell.rings.clear()
    await run(resources, root, state_dir, registry)
    assert bell.rings == []


async def test_reverting_a_trigger_makes_what_it_triggers_owe_a_refresh(
    root: Path, state_dir: Path, registry: Registry, bell: BellProvider
) -> None:
    resources = [fake_resource("a"), fake_resource("b"), bell_resource("bell", "a", "b")]
    await run(resources, root, state_dir, registry)
    triggers = {"a": (), "b": (), "bell": ("a", "b"), "other": ("b",)}
    async with LocalSession(state_dir=state_dir, lock=False) as session:
        inventory = Inventory(session.store, "test")
        await inventory.owe("bell", ("b",))  # owed already, from an earlier failure
        assert await reverting(inventory, "a", triggers) == ("bell",)
        assert await reverting(inventory, "a", triggers) == ("bell",)  # safe to repeat
        assert await inventory.debts() == {"bell": ("b", "a")}
        assert await reverting(inventory, "bell", triggers) == ()  # it triggers nothing
    plan, _ = await run(resources, root, state_dir, registry, StateGoal.DRY_RUN)
    assert step_of(plan, "a").change.is_noop and step_of(plan, "bell").refresh.pending == ("b", "a")
    bell.rings.clear()
    await run(resources, root, state_dir, registry)
    assert bell.rings == [("bell", ("b", "a"))]
    async with LocalSession(state_dir=state_dir, lock=False) as session:
        assert await Inventory(session.store, "test").debts() == {}


async def test_a_revert_that_puts_a_trigger_back_leaves_a_ring_owed(
    root: Path, state_dir: Path, registry: Registry, bell: BellProvider, fake: FakeProvider
) -> None:
    """The bell rang for a = 2; the revert put a = 1 back: the bell must ring for that too."""
    resources = [fake_resource("a", "1"), fake_resource("flaky"), bell_resource("bell", "a")]
    await run(resources, root, state_dir, registry)
    fake.scripts["flaky"] = Script(permanent=True)
    fake.data["flaky"] = "drifted"
    changed = [fake_resource("a", "2"), fake_resource("flaky"), bell_resource("bell", "a")]
    bell.rings.clear()
    _, record = await run(changed, root, state_dir, registry, on_failure="revert")
    assert bell.rings == [("bell", ("a",))] and fake.data["a"] == "1"  # rang, then a reverted
    assert status_of(record, "a").phase is Phase.REVERTED
    fake.scripts.clear()
    bell.rings.clear()
    _, record = await run(resources, root, state_dir, registry)  # a = 1: a no-op now
    assert bell.rings == [("bell", ("a",))]


async def test_a_trigger_a_spec_does_not_reference_is_a_provider_bug(
    root: Path, state_dir: Path, registry: Registry, bell: BellProvider
) -> None:
    class Liar(BellProvider):
        def triggers(self, ctx: Context, spec: BellSpec) -> tuple[str, ...]:
            return ("a",)

    registry.register(Liar())
    with pytest.raises(errors.AccordError, match="a bug in that provider"):
        await run([fake_resource("a"), bell_resource("bell")], root, state_dir, registry)
