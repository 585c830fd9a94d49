"""Flow definitions: parsing, validation with file:line, placeholders; the state tables."""

from __future__ import annotations

import pytest

from accord import errors
from accord.engine.flows import states
from accord.engine.flows.model import (
    InvalidFlowError,
    TransitionPolicy,
    parse_duration,
    parse_flow,
    substitute,
)
from accord.engine.flows.states import FlowState, TaskState

TYPES = {"noop", "converge", "transition"}


def parse(text: str, types: set[str] = TYPES) -> object:
    return parse_flow(text, source="f.yaml", task_types=types)


def problems(text: str, types: set[str] = TYPES) -> list[str]:
    with pytest.raises(InvalidFlowError) as caught:
        parse_flow(text, source="f.yaml", task_types=types)
    return caught.value.problems


def test_a_linear_flow_chains_its_tasks_in_order() -> None:
    flow = parse_flow(
        "name: up\nlinear: true\ntasks:\n"
        "  - {id: a, task: noop}\n  - {id: b, task: noop}\n  - {id: c, task: noop, after: [a]}\n",
        source="f.yaml",
        task_types=TYPES,
    )
    assert flow.edges() == [("a", ()), ("b", ("a",)), ("c", ("b", "a"))]
    assert flow.on_failure == "revert"  # the default, as in TaskFlow
    assert flow.graph().order == (0, 1, 2)


def test_graph_flows_use_after_edges() -> None:
    flow = parse_flow(
        "name: g\ntasks:\n  - {id: root, task: noop}\n  - {id: l, task: noop, after: [root]}\n"
        "  - {id: r, task: noop, after: [root]}\n  - {id: join, task: noop, after: [l, r]}\n",
        source="f.yaml",
        task_types=TYPES,
    )
    graph = flow.graph()
    assert graph.preds[3] == (1, 2)
    assert graph.succs[0] == (1, 2)


def test_problems_name_file_line_and_task() -> None:
    found = problems(
        "name: bad\n"  # 1
        "tasks:\n"  # 2
        "  - id: a\n"  # 3
        "    task: nosuch\n"  # 4
        "  - id: b\n"  # 5
        "    task: noop\n"  # 6
        "    after: [a, ghost]\n"  # 7
        "  - id: b\n"  # 8
        "    task: noop\n"  # 9
        "    with: {x: '${missing}'}\n"  # 10
    )
    assert found == [
        "f.yaml:4: task 'a': unknown task type 'nosuch'; known: converge, noop, transition",
        "f.yaml:7: task 'b': unknown id 'ghost'",
        "f.yaml:8: task 'b': duplicate id",
        "f.yaml:10: task 'b': unknown parameter ${missing}; declare it under params",
    ]


def test_cycles_are_found_by_the_graph_compiler() -> None:
    found = problems(
        "name: loop\ntasks:\n"
        "  - {id: a, task: noop, after: [c]}\n"
        "  - {id: b, task: noop, after: [a]}\n"
        "  - {id: c, task: noop, after: [b]}\n"
    )
    assert len(found) == 1
    assert found[0].startswith("f.yaml:3: task 'a': dependency cycle: a → b → c → a")


def test_field_errors_point_at_the_field() -> None:
    found = problems(
        "name: f\ntasks:\n  - id: a\n    task: noop\n    retry: {attempts: 0}\n"
        "    timeout: soon\n    colour: red\n"
    )
    assert found == [
        "f.yaml:5: task 'a': retry.attempts: Input should be greater than or equal to 1",
        "f.yaml:6: task 'a': timeout: not a duration: 'soon' "
        "(use seconds, or e.g. 90s, 10m, 1h30m)",
        "f.yaml:7: task 'a': colour: Extra inputs are not permitted",
    ]
    assert problems("name: f\ntasks: []\n") == [
        "f.yaml:2: tasks: Tuple should have at least 1 item after validation, not 0"
    ]


def test_on_failure_forms() -> None:
    flow = parse_flow(
        "name: f\non_failure: {transition: rma}\ntasks: [{id: a, task: noop}]\n",
        source="f.yaml", task_types=TYPES,
    )  # fmt: skip
    assert flow.on_failure == TransitionPolicy(transition="rma")
    assert problems("name: f\non_failure: rollback\ntasks: [{id: a, task: noop}]\n") == [
        "f.yaml:2: on_failure: expected 'revert', 'none' or {transition: STATE}"
    ]
    assert problems(
        "name: f\non_failure: {transition: rma}\ntasks: [{id: a, task: noop}]\n", types={"noop"}
    ) == [
        "f.yaml:2: on_failure: a transition needs the 'transition' task type, "
        "which is not registered"
    ]


def test_reserved_names() -> None:
    assert problems("name: f\ntasks: [{id: on_failure, task: noop}]\n") == [
        "f.yaml:2: task 'on_failure': the id is reserved"
    ]
    found = problems("name: f\nparams: {run: 1}\ntasks: [{id: a, task: noop}]\n")
    assert "may not be called 'run'" in found[0]


def test_syntax_errors_and_non_mappings() -> None:
    assert problems("name: [unclosed\n")[0].startswith("f.yaml:2:")
    assert problems("- just\n- a list\n") == ["f.yaml:1: a flow is a mapping (name, tasks, ...)"]
    assert problems('{"name": "x", "tasks": [}')[0].startswith("f.yaml:1:")


def test_bind_overlays_defaults_and_checks_required_parameters() -> None:
    flow = parse_flow(
        "name: f\nparams: {node: null, goal: stage}\ntasks: [{id: a, task: noop}]\n",
        source="f.yaml", task_types=TYPES,
    )  # fmt: skip
    assert flow.bind({"node": "n1"}, run_id="r1") == {
        "node": "n1", "goal": "stage", "run": "r1", "flow": "f"
    }  # fmt: skip
    with pytest.raises(InvalidFlowError) as caught:
        flow.bind({"nope": 1}, run_id="r1")
    assert caught.value.problems == [
        "f.yaml:2: unknown parameter 'nope'",
        "f.yaml:2: parameter 'node' is required",
    ]


def test_substitution_keeps_types_of_whole_placeholders() -> None:
    values = {"n": 3, "name": "web", "tags": ["a"]}
    given = {"count": "${n}", "label": "x-${name}-${n}", "deep": ["${tags}"]}
    assert substitute(given, values) == {"count": 3, "label": "x-web-3", "deep": [["a"]]}
    assert substitute("no placeholders", values) == "no placeholders"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("1.5", 1.5), ("500ms", 0.5), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0),
     ("1d", 86400.0), ("1h30m", 5400.0), (7, 7)],
)  # fmt: skip
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10 minutes", "5x", "1h-3m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


# -- state tables ------------------------------------------------------------------------


def test_every_flow_transition_is_decided_by_the_table() -> None:
    for source in FlowState:
        for target in FlowState:
            if target in states.FLOW_TRANSITIONS[source]:
                assert states.next_flow_state(source, target) is target
            else:
                with pytest.raises(errors.StoreError):
                    states.next_flow_state(source, target)


def test_every_task_transition_is_decided_by_the_table() -> None:
    for source in TaskState:
        for target in TaskState:
            if target in states.TASK_TRANSITIONS[source]:
                assert states.next_task_state(source, target) is target
            else:
                with pytest.raises(errors.StoreError):
                    states.next_task_state(source, target)


def test_table_invariants() -> None:
    for state in FlowState:
        assert (not states.FLOW_TRANSITIONS[state]) is state.terminal, state
    # Nothing goes back to pending, and revert endings are final.
    assert all(TaskState.PENDING not in t for t in states.TASK_TRANSITIONS.values())
    assert not states.TASK_TRANSITIONS[TaskState.REVERTED]
    assert not states.TASK_TRANSITIONS[TaskState.REVERT_FAILED]
    # Only a task that started may be reverted.
    assert TaskState.REVERTING not in states.TASK_TRANSITIONS[TaskState.PENDING]


def test_diagram_has_one_arrow_per_edge() -> None:
    text = states.mermaid(states.FLOW_TRANSITIONS)
    edges = sum(len(t) for t in states.FLOW_TRANSITIONS.values())
    assert text.startswith("stateDiagram-v2\n")
    assert text.count(" --> ") == edges
    assert "    crashed --> running: resumed" in text
