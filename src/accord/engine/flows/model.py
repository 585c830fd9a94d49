"""Flow definitions: the YAML a user writes, validated into immutable values.

A flow file::

    name: firmware-update
    params: {node: null, manifest: firmware.yaml}   # null: required at run time
    linear: true                                    # each task runs after the one before it
    on_failure: {transition: rma}                   # or: revert (the default) | none
    tasks:
      - id: stage
        task: converge                              # a registered task type
        with: {manifest: "${manifest}", goal: stage}
        retry: {attempts: 3, base: 2s, cap: 1m}     # retried only on TransientError
        timeout: 10m                                # per attempt
      - id: apply
        task: converge
        after: [stage]                              # explicit edges make graphs
        with: {manifest: "${manifest}", goal: apply}

``${name}`` in ``with`` is replaced by a run parameter (``${run}`` and ``${flow}`` are always
there): a string that is exactly one placeholder takes the parameter's value with its type, a
placeholder inside a longer string is replaced by its text. Durations are seconds or strings
such as ``500ms``, ``90s``, ``10m``, ``2h``, ``1d``, ``1h30m``.

Validation reports every problem at once, each naming file, line and task id: unknown fields,
unknown task types (against the registry given at load time), unknown or self ``after`` ids,
duplicate ids, cycles (found by :meth:`accord.engine.graph.Graph.compile`), unknown
placeholders. Task parameters are checked against a task type's ``params_model`` when a run
binds its parameters (:meth:`FlowSpec.bind`), because only then are placeholders known.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from accord import errors
from accord.engine.graph import Graph
from accord.engine.retry import RetryPolicy
from accord.model.yamlpos import LOADER, Locator

ON_FAILURE_TASK = "on_failure"  # the id of the transition hook's task in the journal
TRANSITION_TASK = "transition"  # the task type that the transition policy runs
BUILTIN_PLACEHOLDERS = frozenset({"run", "flow"})
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class InvalidFlowError(errors.InputError):
    """A flow definition failed to parse or validate.

    Attributes:
        problems: one line per problem, each naming the file, line and task id.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        head = f"{source}: invalid flow ({len(problems)} problem{'s' * (len(problems) != 1)})"
        super().__init__("\n".join([head, *(f"  {p}" for p in problems)]))


def parse_duration(value: object) -> object:
    """Seconds from a number or a string like ``90s``, ``10m``, ``1h30m``; others pass through."""
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if _NUMBER.fullmatch(text):
            return float(text)
        parts = list(_DURATION_PART.finditer(text))
        if not parts or "".join(p.group(0) for p in parts) != text:
            raise ValueError(f"not a duration: {value!r} (use seconds, or e.g. 90s, 10m, 1h30m)")
        return sum(float(p.group(1)) * _UNITS[p.group(2)] for p in parts)
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
"""Seconds; YAML may say ``10m``."""


class RetrySpec(BaseModel):
    """Retries of ``TransientError``: ``attempts`` counts the first try."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(default=3, ge=1, le=1000)
    base: Duration = 0.5
    cap: Duration = 30.0

    def policy(self) -> RetryPolicy:
        return RetryPolicy(attempts=self.attempts, base=self.base, cap=self.cap)


class TaskSpec(BaseModel):
    """One task of a flow."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=100)
    task: str = Field(min_length=1, description="a registered task type")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    after: tuple[str, ...] = ()
    retry: RetrySpec | None = None
    timeout: Duration | None = Field(default=None, description="seconds per attempt")


class TransitionPolicy(BaseModel):
    """``on_failure: {transition: rma}``: move the node to a lifecycle state when the run fails."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transition: str = Field(min_length=1)
    reason: str | None = None


OnFailure = Literal["revert", "none"] | TransitionPolicy


class FlowSpec(BaseModel):
    """A validated flow definition. Immutable; a run stores it and resumes from the copy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=128)
    description: str = ""
    params: dict[str, Any] = Field(
        default_factory=dict, description="parameter name → default (null: required)"
    )
    linear: bool = Field(default=False, description="each task runs after the one before it")
    concurrency: int | None = Field(default=None, ge=1, description="tasks running at once")
    on_failure: OnFailure = "revert"
    tasks: tuple[TaskSpec, ...] = Field(min_length=1)

    _source: str = PrivateAttr(default="<flow>")
    _text: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _reserved(self) -> FlowSpec:
        clash = sorted(BUILTIN_PLACEHOLDERS & set(self.params))
        if clash:
            raise ValueError(f"params may not be called {', '.join(map(repr, clash))} (built in)")
        return self

    @property
    def source(self) -> str:
        return self._source

    def edges(self) -> list[tuple[str, tuple[str, ...]]]:
        """``(id, predecessors)`` per task: ``after`` plus, if ``linear``, the task before."""
        pairs = []
        previous: str | None = None
        for spec in self.tasks:
            deps = spec.after
            if self.linear and previous is not None and previous not in deps:
                deps = (previous, *deps)
            pairs.append((spec.id, deps))
            previous = spec.id
        return pairs

    def graph(self) -> Graph:
        return Graph.compile(self.edges())

    def bind(self, given: Mapping[str, Any], *, run_id: str) -> dict[str, Any]:
        """The run's parameters: defaults overlaid with ``given``, plus ``run`` and ``flow``.

        Raises:
            InvalidFlowError: an unknown parameter was given, or a required one is missing.
        """
        unknown = sorted(set(given) - set(self.params))
        missing = sorted(k for k, v in self.params.items() if v is None and given.get(k) is None)
        problems = [f"{self.where(('params',))}: unknown parameter {k!r}" for k in unknown]
        problems += [f"{self.where(('params', k))}: parameter {k!r} is required" for k in missing]
        if problems:
            raise InvalidFlowError(self.source, problems)
        values = {**self.params, **given}
        values.update(run=run_id, flow=self.name)
        return values

    def where(self, path: Sequence[Any]) -> str:
        """``file:line`` of a path in the document (``file:?`` when the text is not at hand)."""
        line = Locator(self._text)(path) if self._text is not None else "?"
        return f"{self._source}:{line}"

    def with_source(self, source: str, text: str | None) -> FlowSpec:
        """This flow, remembering where it came from (for messages)."""
        self._source, self._text = source, text
        return self


def substitute(value: Any, values: Mapping[str, Any]) -> Any:
    """``value`` with every ``${name}`` replaced (see the module docstring)."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return values[whole.group(1)]
        if "${" not in value:
            return value
        return _PLACEHOLDER.sub(lambda m: _as_text(values[m.group(1)]), value)
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, values) for k, v in value.items()}
    return value


def placeholders(value: Any) -> Iterator[str]:
    """Every placeholder name used in ``value``."""
    if isinstance(value, str):
        yield from (m.group(1) for m in _PLACEHOLDER.finditer(value))
    elif isinstance(value, list):
        for item in value:
            yield from placeholders(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from placeholders(item)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def load_flow(path: Path, task_types: Collection[str]) -> FlowSpec:
    """Read and validate a flow file; ``InputError`` if it is missing or invalid."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise errors.InputError(f"{path}: {exc.strerror or exc}") from None
    return parse_flow(text, source=str(path), task_types=task_types)


def parse_flow(text: str, *, source: str, task_types: Collection[str]) -> FlowSpec:
    """Parse and validate a flow definition (YAML or JSON).

    Args:
        text: the document.
        source: a name for messages, usually the file path.
        task_types: the task types that may be used (a registry's names).

    Raises:
        InvalidFlowError: listing every problem with its line and task id.
    """
    data = _load(text, source)
    try:
        flow = FlowSpec.model_validate(data)
    except ValidationError as exc:
        locate = Locator(text)
        found = exc.errors()
        if any(len(e["loc"]) > 1 and e["loc"][0] == "tasks" for e in found):
            # A bad task also makes the tuple "too short": say what is wrong with the task only.
            found = [e for e in found if not (e["loc"] == ("tasks",) and e["type"] == "too_short")]
        problems = list(dict.fromkeys(_describe(e, data, locate, source) for e in found))
        raise InvalidFlowError(source, problems) from None
    flow = flow.with_source(source, text)
    problems = check(flow, task_types)
    if problems:
        raise InvalidFlowError(source, problems)
    return flow


def check(flow: FlowSpec, task_types: Collection[str]) -> list[str]:
    """What pydantic cannot check: references, types, cycles, placeholders."""
    problems: list[str] = []
    ids = [t.id for t in flow.tasks]
    known = set(ids)
    names = set(flow.params) | BUILTIN_PLACEHOLDERS
    seen: set[str] = set()
    for i, spec in enumerate(flow.tasks):
        at = ("tasks", i)
        subject = f"task {spec.id!r}"
        if spec.id in seen:
            problems.append(f"{flow.where((*at, 'id'))}: {subject}: duplicate id")
        if spec.id == ON_FAILURE_TASK:
            problems.append(f"{flow.where((*at, 'id'))}: {subject}: the id is reserved")
        seen.add(spec.id)
        if spec.task not in task_types:
            problems.append(
                f"{flow.where((*at, 'task'))}: {subject}: unknown task type {spec.task!r}; "
                f"known: {', '.join(sorted(task_types)) or 'none'}"
            )
        for j, dep in enumerate(spec.after):
            if dep == spec.id:
                problems.append(f"{flow.where((*at, 'after', j))}: {subject}: after itself")
            elif dep not in known:
                problems.append(f"{flow.where((*at, 'after', j))}: {subject}: unknown id {dep!r}")
        for name in dict.fromkeys(placeholders(spec.with_)):
            if name not in names:
                problems.append(
                    f"{flow.where((*at, 'with'))}: {subject}: unknown parameter ${{{name}}}; "
                    f"declare it under params"
                )
    if isinstance(flow.on_failure, TransitionPolicy) and TRANSITION_TASK not in task_types:
        problems.append(
            f"{flow.where(('on_failure',))}: on_failure: a transition needs the "
            f"{TRANSITION_TASK!r} task type, which is not registered"
        )
    if problems:
        return problems
    try:
        flow.graph()
    except errors.GraphError as exc:
        cycle = str(exc).split(": ", 1)[-1].split(" → ")
        line = flow.where(("tasks", ids.index(cycle[0]))) if cycle[0] in known else flow.where(())
        problems.append(f"{line}: task {cycle[0]!r}: {exc}")
    return problems


def _load(text: str, source: str) -> Any:
    try:
        is_json = text.lstrip().startswith("{")
        data = json.loads(text) if is_json else yaml.load(text, Loader=LOADER)
    except json.JSONDecodeError as exc:
        raise InvalidFlowError(source, [f"{source}:{exc.lineno}: {exc.msg}"]) from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise InvalidFlowError(source, [f"{source}:{line}: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise InvalidFlowError(source, [f"{source}: {exc}"]) from None
    if not isinstance(data, dict):
        raise InvalidFlowError(source, [f"{source}:1: a flow is a mapping (name, tasks, ...)"])
    return data


def _describe(err: Any, data: Any, locate: Locator, source: str) -> str:
    loc: tuple[Any, ...] = tuple(err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    if loc and loc[0] == "on_failure":
        loc = ("on_failure",)
        message = "expected 'revert', 'none' or {transition: STATE}"
    subject = ""
    if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
        tasks = data.get("tasks") if isinstance(data, dict) else None
        item = tasks[loc[1]] if isinstance(tasks, list) and loc[1] < len(tasks) else None
        tid = item.get("id") if isinstance(item, dict) else None
        subject = f"task {tid!r}: " if tid else f"tasks[{loc[1]}]: "
        field = ".".join(str(part) for part in loc[2:])
    else:
        field = ".".join(str(part) for part in loc)
    return f"{source}:{locate(loc)}: {subject}{field or 'flow'}: {message}"
