"""The example flows with the real lifecycle tasks, on a real node in a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from accord.engine.flows import FlowRunner, FlowState, TaskRegistry, load_flow
from accord.engine.flows.builtin import builtin_tasks
from accord.engine.flows.lifecycle_tasks import TransitionTask, WaitWindowTask
from accord.engine.local import LocalSession
from accord.lifecycle import nodes
from accord.lifecycle.definition import Facts

EXAMPLES = Path(__file__).parents[2] / "examples" / "flows"
LIFECYCLE = Path(__file__).parents[2] / "src" / "accord" / "lifecycle" / "default.yaml"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def session(root: Path, state_dir: Path) -> AsyncIterator[LocalSession]:
    async with LocalSession(roots=[root], state_dir=state_dir) as opened:
        lifecycle = await nodes.save_lifecycle(
            opened.store, LIFECYCLE.read_text(), source=str(LIFECYCLE)
        )
        await nodes.add_node(opened.store, "n1", lifecycle, labels={"env": "lab"})
        yield opened


async def put_in(session: LocalSession, state: str) -> None:
    node, _ = await nodes.get_node(session.store, "n1")
    lifecycle = await nodes.get_lifecycle(session.store, node.lifecycle)
    facts = Facts(reason="test setup", roles=frozenset({"admin"}))
    await nodes.transition(session.store, lifecycle, "n1", state, initiator="test", facts=facts,
                           force=True)  # fmt: skip


def runner(session: LocalSession) -> tuple[FlowRunner, TaskRegistry]:
    registry = TaskRegistry([*builtin_tasks(), TransitionTask(), WaitWindowTask()])
    found = FlowRunner(session.store, registry, lock_dir=session.state_dir / "flows",
                       services={"session": session})  # fmt: skip
    return found, registry


async def test_firmware_update_then_return_to_service(session: LocalSession, root: Path) -> None:
    await put_in(session, "maintenance")
    flows, registry = runner(session)
    update = await flows.run(
        load_flow(EXAMPLES / "firmware-update.yaml", registry.names()),
        params={"node": "n1"}, node="n1", base_dir=EXAMPLES,
    )  # fmt: skip
    assert update.state is FlowState.SUCCEEDED, update.error
    assert (root / "firmware/VERSION").read_text() == "2.4.1\n"
    back = await flows.run(
        load_flow(EXAMPLES / "return-to-service.yaml", registry.names()),
        params={"node": "n1"}, node="n1", base_dir=EXAMPLES,
    )  # fmt: skip
    assert back.state is FlowState.SUCCEEDED, back.error
    history = await nodes.history(session.store, "n1")
    assert [(h.from_, h.to, h.workflow) for h in history[1:]] == [
        ("maintenance", "firmware_update", update.run_id),
        ("firmware_update", "maintenance", update.run_id),
        ("maintenance", "in_service", back.run_id),
    ]


async def test_a_firmware_update_that_cannot_start_sends_the_node_to_rma(
    session: LocalSession, root: Path
) -> None:
    await put_in(session, "in_service")  # the table has no in_service → firmware_update edge
    flows, registry = runner(session)
    run = await flows.run(
        load_flow(EXAMPLES / "firmware-update.yaml", registry.names()),
        params={"node": "n1"}, node="n1", base_dir=EXAMPLES,
    )  # fmt: skip
    assert run.state is FlowState.FAILED
    assert run.failed_task == "enter-firmware-update"
    node, _ = await nodes.get_node(session.store, "n1")
    assert node.state == "rma"
    assert node.last is not None and node.last.workflow == run.run_id
    assert "failed at task enter-firmware-update" in node.last.reason
    assert not (root / "firmware/VERSION").exists()
