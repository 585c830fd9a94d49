"""What readers see of flow runs: task states from a replay, runs selected and paged."""

from __future__ import annotations

from typing import Any

import pytest

from accord.engine.flows import tasks
from accord.engine.flows.builtin import builtin_tasks
from accord.engine.flows.journal import FlowRun, Replay, TaskReplay
from accord.engine.flows.model import parse_flow
from accord.engine.flows.states import FlowState, TaskState
from accord.engine.flows.view import select, task_views

FLOW = """\
name: v
linear: true
on_failure: {transition: rma}
tasks:
  - {id: a, task: sleep, with: {seconds: 1}}
  - {id: b, task: wait_signal, with: {name: go}}
  - {id: c, task: sleep, with: {seconds: 1}}
"""


def registry() -> tasks.TaskRegistry:
    return tasks.TaskRegistry(builtin_tasks())


def test_task_views_show_every_task_in_order_then_the_failure_hook() -> None:
    flow = parse_flow(FLOW, source="v.yaml", task_types=registry().names())
    replay = Replay(
        tasks={
            "a": TaskReplay(TaskState.SUCCEEDED, 1, result={"slept": 1}),
            "b": TaskReplay(TaskState.FAILED, 2, error={"type": "E", "message": "no"}),
            "on_failure": TaskReplay(TaskState.SUCCEEDED, 1, result={"to": "rma"}),
        }
    )
    views = [v.model_dump(mode="json", exclude_none=True) for v in task_views(flow, replay)]
    assert views == [
        {"id": "a", "task": "sleep", "state": "succeeded", "attempt": 1, "result": {"slept": 1}},
        {"id": "b", "task": "wait_signal", "state": "failed", "attempt": 2,
         "error": {"type": "E", "message": "no"}},
        {"id": "c", "task": "sleep", "state": "pending", "attempt": 0},
        {"id": "on_failure", "task": "transition", "state": "succeeded", "attempt": 1,
         "result": {"to": "rma"}},
    ]  # fmt: skip


def run(run_id: str, node: str | None, state: FlowState) -> FlowRun:
    return FlowRun(run_id=run_id, flow="f", node=node, state=state)


RUNS = [
    run("20260101T000000000001-aaaaaa", "n1", FlowState.SUCCEEDED),
    run("20260101T000000000002-bbbbbb", "n2", FlowState.WAITING),
    run("20260101T000000000003-cccccc", "n1", FlowState.WAITING),
    run("20260101T000000000004-dddddd", None, FlowState.WAITING),
]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["4", "3", "2", "1"]),
        ({"node": "n1"}, ["3", "1"]),
        ({"state": FlowState.WAITING, "limit": 2}, ["4", "3"]),
        ({"state": FlowState.WAITING, "before": RUNS[2].run_id}, ["2"]),
        ({"node": "n9"}, []),
    ],
)
def test_select_filters_newest_first_and_pages_by_run_id(
    query: dict[str, Any], expected: list[str]
) -> None:
    found = select(reversed(RUNS), **query)
    assert [r.run_id[20] for r in found] == expected
