"""Which flows the control plane runs itself: none with a task that needs the device."""

from __future__ import annotations

from typing import Any

import pytest

from accord.engine.flows import tasks
from accord.engine.flows.builtin import builtin_tasks
from accord.engine.flows.context import FlowContext
from accord.engine.flows.model import InvalidFlowError, parse_flow
from accord.server.flows import refuse_device_tasks

FLOW = """\
name: v
on_failure: {transition: rma}
tasks:
  - {id: a, task: sleep, with: {seconds: 1}}
  - {id: b, task: wait_signal, with: {name: go}}
"""


class Plugin(tasks.Task):
    """A third-party type that does not say where it may run."""

    name = "plugin"

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        return None


def registry() -> tasks.TaskRegistry:
    return tasks.TaskRegistry([*builtin_tasks(), Plugin()])


def test_the_control_plane_refuses_device_local_and_undeclared_task_types() -> None:
    text = FLOW + (
        "  - {id: d, task: converge, with: {manifest: m.yaml}}\n"
        "  - {id: e, task: wait_window, with: {windows: w.yaml}}\n"
        "  - {id: f, task: plugin}\n"
        "  - {id: g, task: call_webhook, with: {url: 'http://x', secret_env: S}}\n"
        "  - {id: h, task: transition, with: {to: maintenance}}\n"
        "  - {id: i, task: wait_condition, with: {condition: converged}}\n"
    )
    flow = parse_flow(text, source="definition", task_types=registry().names())
    with pytest.raises(InvalidFlowError) as caught:
        refuse_device_tasks(flow, registry())
    assert [p.split(": runs on the device")[0] for p in caught.value.problems] == [
        "definition:6: task 'd' (converge)",
        "definition:7: task 'e' (wait_window)",
        "definition:8: task 'f' (plugin)",
    ]
    refuse_device_tasks(parse_flow(FLOW, source="ok", task_types=registry().names()), registry())
