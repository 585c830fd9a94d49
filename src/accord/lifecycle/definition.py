"""A site's node lifecycle: states, the table of allowed transitions, guards and policies.

A lifecycle is data (YAML), validated as a whole: unknown states, duplicate edges, unreachable
states and edges out of a final state are errors that name the line. Every edge may say *why*
it exists (``why:``), and the diagrams are rendered from the same table the code decides with,
so the picture cannot drift from the behaviour.

``decide()`` is the whole state machine: a pure function from (lifecycle, current state,
target, facts) to a decision. Guards are built in and named — never code looked up by string:

``converged``             the node's desired state is applied (its latest run succeeded)
``no_apply_in_progress``  no convergence run is under way on the node
``reason``                the request carries a non-empty reason
``{role: NAME}``          the initiator has the role (``admin`` has every role)

An admin may *force* a transition the table does not allow; it is recorded as forced.
"""

from __future__ import annotations

import functools
from collections import deque
from importlib import resources
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from accord import errors
from accord.model.yamlpos import LOADER, Locator

StateName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
BuiltinGuard = Literal["converged", "no_apply_in_progress", "reason"]
ADMIN = "admin"


class RoleGuard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: str = Field(min_length=1)


Guard = BuiltinGuard | RoleGuard


class State(BaseModel):
    """A lifecycle state and the desired-state policy that holds in it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    apply: bool = False  # may desired state be applied in this state (inside its windows)?
    paused: bool = False  # is desired state paused altogether (no staging, no drift repair)?
    final: bool = False  # no way out (retired)
    on_enter: str | None = None  # a flow file, relative to the lifecycle file, run on entry


class Transition(BaseModel):
    """One edge of the table (``from`` may list several states, or ``"*"`` for all)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: list[StateName] | Literal["*"] = Field(alias="from")
    to: StateName
    guards: tuple[Guard, ...] = ()
    why: str = ""

    @field_validator("from_", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) and value != "*" else value


class Lifecycle(BaseModel):
    """A validated lifecycle. Build with :func:`load_lifecycle`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StateName
    description: str = ""
    initial: StateName
    states: dict[StateName, State]
    transitions: tuple[Transition, ...]

    @functools.cached_property
    def table(self) -> dict[tuple[str, str], Transition]:
        """(from, to) → the transition that allows it, ``"*"`` expanded (never out of a final)."""
        table: dict[tuple[str, str], Transition] = {}
        for edge in self.transitions:
            sources = (
                [name for name, state in self.states.items() if not state.final]
                if edge.from_ == "*"
                else edge.from_
            )
            for source in sources:
                if source != edge.to:
                    table.setdefault((source, edge.to), edge)
        return table

    def edges(self) -> dict[tuple[str, str], Transition]:
        return self.table

    def allowed_from(self, state: str) -> list[str]:
        return sorted(to for (src, to) in self.edges() if src == state)


class Facts(BaseModel):
    """What the guards look at, gathered by the caller before deciding."""

    model_config = ConfigDict(frozen=True)

    converged: bool | None = None  # None: unknown (no run recorded)
    apply_in_progress: bool = False
    reason: str = ""
    roles: frozenset[str] = frozenset()


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    forced: bool
    transition: Transition | None  # None when forced outside the table


def decide(lifecycle: Lifecycle, current: str, to: str, facts: Facts, *, force: bool) -> Decision:
    """Whether ``current → to`` may happen. Raises ``TransitionError`` saying why not."""
    if to not in lifecycle.states:
        known = ", ".join(lifecycle.states)
        raise errors.TransitionError(
            f"unknown state {to!r} in lifecycle {lifecycle.name!r}: {known}"
        )
    if current == to:
        raise errors.TransitionError(f"the node is already {to}")
    edge = lifecycle.edges().get((current, to))
    if force:
        if ADMIN not in facts.roles:
            raise errors.TransitionError("only an admin may force a transition")
        if not facts.reason.strip():
            raise errors.TransitionError("a forced transition needs a reason")
        return Decision(forced=edge is None, transition=edge)
    if edge is None:
        allowed = ", ".join(lifecycle.allowed_from(current)) or "nothing (final state)"
        raise errors.TransitionError(f"{current} → {to} is not allowed; from {current}: {allowed}")
    failed = [_describe(g) for g in edge.guards if not _holds(g, facts)]
    if failed:
        raise errors.TransitionError(f"{current} → {to} refused: {'; '.join(failed)}")
    return Decision(forced=False, transition=edge)


def _holds(guard: Guard, facts: Facts) -> bool:
    if isinstance(guard, RoleGuard):
        return guard.role in facts.roles or ADMIN in facts.roles
    if guard == "converged":
        return facts.converged is True
    if guard == "no_apply_in_progress":
        return not facts.apply_in_progress
    return bool(facts.reason.strip())  # "reason"


def _describe(guard: Guard) -> str:
    if isinstance(guard, RoleGuard):
        return f"needs role {guard.role!r}"
    return {
        "converged": "the node has not converged (its latest run did not succeed)",
        "no_apply_in_progress": "an apply is in progress",
        "reason": "a reason is required (--reason)",
    }[guard]


# -- loading and validation ------------------------------------------------------------


def load_lifecycle(text: str, *, source: str) -> Lifecycle:
    """Parse and validate a lifecycle; ``ManifestError``-style problems name file and line."""
    try:
        data = yaml.load(text, Loader=LOADER)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise errors.ManifestError(
            source, [f"{source}:{line}: {exc.problem}"], what="lifecycle"
        ) from None
    locate = Locator(text)
    try:
        lifecycle = Lifecycle.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(p) for p in loc) or "lifecycle"
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{source}:{locate(loc)}: {field}: {message}")
        raise errors.ManifestError(source, problems, what="lifecycle") from None
    problems = _check(lifecycle, locate, source)
    if problems:
        raise errors.ManifestError(source, problems, what="lifecycle")
    return lifecycle


def _check(lifecycle: Lifecycle, locate: Locator, source: str) -> list[str]:
    problems: list[str] = []
    states = lifecycle.states
    if lifecycle.initial not in states:
        problems.append(
            f"{source}:{locate(('initial',))}: initial: unknown state {lifecycle.initial!r}"
        )
    seen: dict[tuple[str, str], int] = {}
    for index, edge in enumerate(lifecycle.transitions):
        where = f"{source}:{locate(('transitions', index))}: transitions[{index}]"
        sources = list(states) if edge.from_ == "*" else edge.from_
        for name in [*([] if edge.from_ == "*" else edge.from_), edge.to]:
            if name not in states:
                problems.append(f"{where}: unknown state {name!r}")
        for src in sources:
            if src == edge.to and edge.from_ != "*":
                problems.append(f"{where}: {src} → {src} goes nowhere")
            elif (src, edge.to) in seen and edge.from_ != "*":
                first = seen[(src, edge.to)]
                problems.append(
                    f"{where}: duplicate edge {src} → {edge.to} (first at transitions[{first}])"
                )
            seen.setdefault((src, edge.to), index)
            if src in states and states[src].final and edge.from_ != "*":
                problems.append(f"{where}: {src} is final; nothing may leave it")
    if problems:
        return problems
    reachable = _reachable(lifecycle)
    for name, state in states.items():
        where = f"{source}:{locate(('states', name))}: state {name!r}"
        if name not in reachable:
            problems.append(f"{where} is unreachable from {lifecycle.initial!r}")
        if state.apply and state.paused:
            problems.append(f"{where} cannot both allow apply and pause it")
    return problems


def _reachable(lifecycle: Lifecycle) -> set[str]:
    table = lifecycle.edges()
    seen = {lifecycle.initial}
    queue = deque([lifecycle.initial])
    while queue:
        state = queue.popleft()
        for src, to in table:
            if src == state and to not in seen and not lifecycle.states[src].final:
                seen.add(to)
                queue.append(to)
    return seen


def default_lifecycle() -> Lifecycle:
    """The lifecycle accord ships, modelled on OpenCHAMI's node-lifecycle RFD."""
    text = resources.files("accord.lifecycle").joinpath("default.yaml").read_text()
    return load_lifecycle(text, source="accord/lifecycle/default.yaml")


# -- rendering -----------------------------------------------------------------------


def _label(edge: Transition) -> str:
    parts = [g if isinstance(g, str) else f"role:{g.role}" for g in edge.guards]
    return ", ".join(parts)


def to_mermaid(lifecycle: Lifecycle) -> str:
    """A Mermaid ``stateDiagram-v2`` of the table."""
    lines = ["stateDiagram-v2", f"    [*] --> {lifecycle.initial}"]
    for (src, to), edge in lifecycle.edges().items():
        label = _label(edge)
        lines.append(f"    {src} --> {to}" + (f": {label}" if label else ""))
    for name, state in lifecycle.states.items():
        if state.final:
            lines.append(f"    {name} --> [*]")
        if state.description:
            lines.append(f"    {name}: {name} — {state.description}")
    return "\n".join(lines) + "\n"


def to_dot(lifecycle: Lifecycle) -> str:
    """A Graphviz DOT digraph of the table: apply states bold, paused states dashed."""
    lines = [f'digraph "{lifecycle.name}" {{', "    rankdir=LR;", '    "__start" [shape=point];']
    for name, state in lifecycle.states.items():
        style = (
            ["rounded"] + (["bold"] if state.apply else []) + (["dashed"] if state.paused else [])
        )
        shape = "doublecircle" if state.final else "box"
        lines.append(f'    "{name}" [shape={shape}, style="{",".join(style)}"];')
    lines.append(f'    "__start" -> "{lifecycle.initial}";')
    for (src, to), edge in lifecycle.edges().items():
        label = _label(edge)
        lines.append(f'    "{src}" -> "{to}"' + (f' [label="{label}"];' if label else ";"))
    lines.append("}")
    return "\n".join(lines) + "\n"
