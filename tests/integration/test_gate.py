"""The apply gate: lifecycle policy, maintenance windows, force, end of window."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from accord.engine.converge import Options
from accord.engine.gate import Gate, GateDecision
from accord.engine.local import LocalSession
from accord.lifecycle.definition import default_lifecycle
from accord.lifecycle.nodes import Node
from accord.lifecycle.windows import load_windows
from accord.model.manifest import Manifest
from accord.model.status import Phase, RunRecord, RunState
from accord.providers.registry import Registry
from accord.testing.fakes import FakeProvider, Script
from helpers import build_manifest, fake_resource, file

LIFECYCLE = default_lifecycle()
NIGHTLY = load_windows(
    "windows:\n"
    "  - {name: nightly, cron: '0 2 * * *', duration: 2h, timezone: Europe/Berlin,"
    " selector: {site: plant-a}}\n",
    source="windows.yaml",
)
# 2026-11-22 is a Sunday; Berlin is UTC+1 in November: the window is 01:00-03:00 UTC.
INSIDE = datetime(2026, 11, 22, 1, 30, tzinfo=UTC)
OUTSIDE = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def node(state: str, **labels: str) -> Node:
    return Node(id="edge-1", labels=labels, lifecycle="default", state=state)


def test_lifecycle_policy_comes_first() -> None:
    paused = Gate(node=node("rma"), lifecycle=LIFECYCLE).decide(OUTSIDE)
    assert paused.paused and not paused.open and "pauses desired state" in paused.reason
    assert Gate(node=node("rma"), lifecycle=LIFECYCLE, force=True).decide(OUTSIDE).paused
    closed = Gate(node=node("discovered"), lifecycle=LIFECYCLE).decide(OUTSIDE)
    assert not closed.open and "does not allow apply" in closed.reason
    forced = Gate(node=node("discovered"), lifecycle=LIFECYCLE, force=True, forced_by="alice")
    assert forced.decide(OUTSIDE) == GateDecision(open=True, reason="forced by alice")


def test_windows_gate_the_nodes_they_name() -> None:
    gate = Gate(node=node("in_service", site="plant-a"), lifecycle=LIFECYCLE, schedule=NIGHTLY)
    inside = gate.decide(INSIDE)
    assert inside.open and inside.closes_at == datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    outside = gate.decide(OUTSIDE)
    assert not outside.open and outside.opens_at == datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    assert "next opens 2026-11-23 01:00" in outside.reason
    elsewhere = Gate(node=node("in_service", site="plant-b"), lifecycle=LIFECYCLE, schedule=NIGHTLY)
    assert elsewhere.decide(OUTSIDE).open  # no window names it: not restricted
    assert Gate().decide(OUTSIDE).open


async def converge(
    manifest: Manifest, root: Path, state_dir: Path, gate: Gate, registry: Registry | None = None
) -> RunRecord:
    async with LocalSession(roots=[root], state_dir=state_dir, registry=registry) as session:
        _, record = await session.converge(manifest, base_dir=root, options=Options(gate=gate))
    return record


async def test_a_closed_gate_stages_and_says_when_it_will_apply(
    root: Path, state_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "fw.bin"
    source.write_bytes(b"firmware" * 100)
    import hashlib

    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    manifest = build_manifest([
        {"id": "fw", "kind": "Artifact",
         "spec": {"path": "fw.bin", "url": source.as_uri(), "sha256": digest}},
        file("conf", "fw.conf", "v2\n"),
    ])  # fmt: skip
    leap_day = load_windows(  # opens on 29 February only: closed whenever this test runs
        "windows: [{name: leap, cron: '0 3 29 2 *', duration: 1h, timezone: Europe/Berlin}]\n",
        source="windows.yaml",
    )
    gate = Gate(node=node("in_service"), lifecycle=LIFECYCLE, schedule=leap_day)
    record = await converge(manifest, root, state_dir, gate)
    assert record.state is RunState.WAITING
    assert record.opens_at == datetime(2028, 2, 29, 2, 0, tzinfo=UTC)
    assert record.gate is not None and "next opens 2028-02-29 02:00" in record.gate
    assert {r.id: r.phase for r in record.resources} == {"fw": Phase.STAGED, "conf": Phase.STAGED}
    assert list(root.iterdir()) == []  # nothing live changed
    assert (state_dir / "cache/sha256" / digest[:2] / digest).is_file()  # but the download is done
    applied = next(c for c in record.conditions if c.type == "Applied")
    assert applied.status.value == "False"


async def test_a_paused_node_does_nothing(root: Path, state_dir: Path) -> None:
    gate = Gate(node=node("rma"), lifecycle=LIFECYCLE)
    record = await converge(build_manifest([file("f", "f", "x")]), root, state_dir, gate)
    assert record.state is RunState.PAUSED and "pauses" in (record.gate or "")
    assert list(root.iterdir()) == []


async def test_force_opens_the_gate(root: Path, state_dir: Path) -> None:
    gate = Gate(node=node("discovered"), lifecycle=LIFECYCLE, force=True, forced_by="alice")
    record = await converge(build_manifest([file("f", "f", "x")]), root, state_dir, gate)
    assert record.state is RunState.SUCCEEDED and record.gate == "forced by alice"
    assert (root / "f").read_text() == "x"


@dataclass(frozen=True)
class ClosingSoon(Gate):
    """A window that closes 0.15 s after the run asks (the real windows are minutes long)."""

    def decide(self, now: datetime) -> GateDecision:
        return GateDecision(
            open=True, reason="test window", closes_at=now + timedelta(seconds=0.15)
        )


async def test_at_the_end_of_the_window_the_running_step_finishes_and_nothing_new_starts(
    root: Path, state_dir: Path, fake: FakeProvider, registry: Registry
) -> None:
    for key in ("a", "b", "c"):
        fake.scripts[key] = Script(hang=0.1)
    chain = [fake_resource("a"), fake_resource("b", depends_on=("a",)),
             fake_resource("c", depends_on=("b",))]  # fmt: skip
    record = await converge(build_manifest(chain, registry=registry), root, state_dir,
                            ClosingSoon(), registry)  # fmt: skip
    assert record.state is RunState.INTERRUPTED
    # a (0-0.1 s) done; b started before the close (0.15 s) and finished; c never started
    assert fake.data == {"a": "v", "b": "v"}
    assert {r.id: r.phase for r in record.resources}["c"] is Phase.INTERRUPTED
    await asyncio.sleep(0)
