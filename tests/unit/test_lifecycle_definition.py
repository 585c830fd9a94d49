"""The lifecycle table: validation that names lines, the whole decision matrix, diagrams."""

from __future__ import annotations

import itertools

import pytest

from accord import errors
from accord.lifecycle.definition import (
    Facts,
    Lifecycle,
    decide,
    default_lifecycle,
    load_lifecycle,
    to_dot,
    to_mermaid,
)

DEFAULT = default_lifecycle()
ALL_FACTS = Facts(converged=True, reason="why not", roles=frozenset({"operator"}))

SMALL = """\
name: small
initial: new
states:
  new: {}
  live: {apply: true}
  gone: {final: true, paused: true}
transitions:
  - {from: new, to: live}
  - {from: live, to: gone, guards: [reason]}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(errors.ManifestError) as info:
        load_lifecycle(text, source="site.yaml")
    assert str(info.value).startswith("site.yaml: invalid lifecycle")
    return info.value.problems


def test_the_default_has_the_openchami_states() -> None:
    assert list(DEFAULT.states) == ["discovered", "provisioning", "in_service", "maintenance",
                                    "firmware_update", "rma", "retired"]  # fmt: skip
    assert DEFAULT.initial == "discovered"
    assert [n for n, s in DEFAULT.states.items() if s.paused] == ["rma", "retired"]
    assert all(edge.why for edge in DEFAULT.transitions)  # every edge says why it exists


# The whole matrix: every (from, to) pair, with every guard satisfied.
EXPECTED_EDGES = {
    ("discovered", "provisioning"), ("provisioning", "in_service"), ("provisioning", "rma"),
    ("in_service", "maintenance"), ("in_service", "rma"), ("maintenance", "in_service"),
    ("maintenance", "firmware_update"), ("maintenance", "rma"), ("maintenance", "retired"),
    ("firmware_update", "maintenance"), ("firmware_update", "rma"), ("rma", "maintenance"),
    ("rma", "retired"),
}  # fmt: skip


@pytest.mark.parametrize("current,to", list(itertools.permutations(DEFAULT.states, 2)))
def test_decision_matrix(current: str, to: str) -> None:
    admin = ALL_FACTS.model_copy(update={"roles": frozenset({"admin"})})
    if (current, to) in EXPECTED_EDGES:
        assert decide(DEFAULT, current, to, admin, force=False).forced is False
    else:
        with pytest.raises(errors.TransitionError, match="is not allowed"):
            decide(DEFAULT, current, to, admin, force=False)
        assert decide(DEFAULT, current, to, admin, force=True).forced is True


@pytest.mark.parametrize(
    "current,to,facts,refusal",
    [
        ("provisioning", "in_service", Facts(converged=False), "has not converged"),
        ("provisioning", "in_service", Facts(converged=None), "has not converged"),
        ("maintenance", "firmware_update", Facts(apply_in_progress=True), "apply is in progress"),
        ("in_service", "maintenance", Facts(reason="  "), "a reason is required"),
        ("in_service", "rma", Facts(reason="fan"), "needs role 'operator'"),
        (
            "rma",
            "retired",
            Facts(reason="eol", roles=frozenset({"operator"})),
            "needs role 'admin'",
        ),
    ],
)
def test_guards_refuse_with_a_reason(current: str, to: str, facts: Facts, refusal: str) -> None:
    with pytest.raises(errors.TransitionError, match=refusal):
        decide(DEFAULT, current, to, facts, force=False)


def test_admin_has_every_role_and_force_needs_admin_and_reason() -> None:
    admin = Facts(reason="eol", roles=frozenset({"admin"}))
    assert decide(DEFAULT, "rma", "retired", admin, force=False).forced is False
    with pytest.raises(errors.TransitionError, match="only an admin"):
        decide(DEFAULT, "rma", "discovered", ALL_FACTS, force=True)
    with pytest.raises(errors.TransitionError, match="needs a reason"):
        decide(DEFAULT, "rma", "discovered", Facts(roles=frozenset({"admin"})), force=True)


def test_star_edges_never_leave_a_final_state() -> None:
    text = SMALL + "  - {from: '*', to: new, why: reset}\n"
    lifecycle = load_lifecycle(text, source="site.yaml")
    assert ("live", "new") in lifecycle.edges() and ("gone", "new") not in lifecycle.edges()


def test_validation_names_the_line() -> None:
    assert problems(SMALL.replace("initial: new", "initial: old")) == [
        "site.yaml:2: initial: unknown state 'old'"
    ]
    assert problems(SMALL.replace("to: live}", "to: alive}")) == [
        "site.yaml:8: transitions[0]: unknown state 'alive'"
    ]
    duplicate = SMALL + "  - {from: new, to: live}\n"
    assert problems(duplicate) == [
        "site.yaml:10: transitions[2]: duplicate edge new → live (first at transitions[0])"
    ]
    island = SMALL.replace("  gone:", "  island: {}\n  gone:")
    assert problems(island) == ["site.yaml:6: state 'island' is unreachable from 'new'"]
    out_of_final = SMALL + "  - {from: gone, to: live}\n"
    assert problems(out_of_final) == [
        "site.yaml:10: transitions[2]: gone is final; nothing may leave it"
    ]
    assert "transitions.1.guards.0" in problems(SMALL.replace("[reason]", "[sunshine]"))[0]
    assert problems("name: x\ninitial: [\n")[0].startswith("site.yaml:3:")


def test_a_state_cannot_both_allow_and_pause_apply() -> None:
    found = problems(SMALL.replace("live: {apply: true}", "live: {apply: true, paused: true}"))
    assert found == ["site.yaml:5: state 'live' cannot both allow apply and pause it"]


def test_diagrams_are_rendered_from_the_table() -> None:
    mermaid = to_mermaid(DEFAULT)
    assert mermaid.startswith("stateDiagram-v2\n    [*] --> discovered\n")
    for src, to in EXPECTED_EDGES:
        assert f"    {src} --> {to}" in mermaid
    assert "    maintenance --> firmware_update: no_apply_in_progress" in mermaid
    assert "    retired --> [*]" in mermaid
    dot = to_dot(DEFAULT)
    assert dot.startswith('digraph "default" {') and dot.rstrip().endswith("}")
    assert dot.count(" -> ") == len(EXPECTED_EDGES) + 1  # + the start arrow
    assert '"rma" -> "retired" [label="reason, role:admin"];' in dot


def test_a_lifecycle_is_plain_data() -> None:
    again = Lifecycle.model_validate(DEFAULT.model_dump(by_alias=True))
    assert again.edges() == DEFAULT.edges()
