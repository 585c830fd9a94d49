"""The task contract and the registry of task types.

A task type is a class with a ``name`` and ``async execute(ctx, params) -> result``; the result
must be JSON-able (it is journaled, and resumed runs hand it to later tasks and to ``revert``).
Optionally it overrides ``async revert(ctx, params, result)`` to undo what ``execute`` did.
What each promises:

``idempotent``
    ``True`` means running ``execute`` again after a crash is harmless (converging a manifest,
    waiting, a webhook receivers deduplicate). The runner then journals only the task's end:
    one write per task. ``False`` (the default) makes the runner journal ``running`` before
    ``execute`` starts, so that a resumed run knows the task may have half happened and asks
    an operator (signal ``retry``, ``skip`` or ``abort``) instead of doing it twice.
``revert``
    Must be idempotent: a crash during a revert runs it again. It is called for every task
    that started (succeeded, failed, or was interrupted), newest first; ``result`` is ``None``
    when ``execute`` did not return one (``ctx.failure`` then says why).
``retry``
    The default retry policy of the type; a flow's ``retry:`` overrides it. Only
    ``TransientError`` is retried; every other exception fails the task at once.
``device_local``
    ``True`` (the default, so also for a third-party type that does not say) means the type
    needs the machine the flow is about: its filesystem, its state dir, a ``session``
    (``converge``; ``wait_window`` reads a windows file). Such flows run on the device with
    ``accord flow run``; the control plane runs only flows whose every type says ``False``.
``params_model``
    If set, each task's ``with`` is validated against it when a run binds its parameters, so
    a bad parameter is an input error naming file, line and task before anything runs.

Registry: built-in types (:mod:`accord.engine.flows.builtin`) are registered explicitly;
third-party types come from the ``accord.tasks`` entry-point group (name = task type, value =
the class), loaded once per process.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from accord import errors
from accord.engine.retry import RetryPolicy

if TYPE_CHECKING:
    from accord.engine.flows.context import FlowContext

GROUP = "accord.tasks"


class Task:
    """Base class of task types. Subclasses set ``name`` and implement ``execute``."""

    name: ClassVar[str]
    idempotent: ClassVar[bool] = False
    retry: ClassVar[RetryPolicy | None] = None
    device_local: ClassVar[bool] = True
    params_model: ClassVar[type[BaseModel] | None] = None

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def revert(self, ctx: FlowContext, params: dict[str, Any], result: Any) -> None:
        """Undo ``execute``. The default does nothing: the type is not reversible."""

    @property
    def reversible(self) -> bool:
        """Whether the type overrides ``revert``."""
        return type(self).revert is not Task.revert

    def __repr__(self) -> str:
        return f"<task type {self.name!r} ({type(self).__qualname__})>"


class TaskRegistry:
    """Task type name → task instance."""

    def __init__(self, tasks: Iterable[Task] = ()) -> None:
        self._tasks: dict[str, Task] = {}
        for task in tasks:
            self.register(task)

    @classmethod
    def from_entry_points(cls, base: Iterable[Task] = ()) -> TaskRegistry:
        """``base`` plus every task type of the ``accord.tasks`` entry-point group."""
        registry = cls(base)
        for entry in metadata.entry_points(group=GROUP):
            task_class = entry.load()
            if not (isinstance(task_class, type) and issubclass(task_class, Task)):
                raise errors.AccordError(
                    f"entry point {entry.name!r} ({entry.value}) is not a Task subclass"
                )
            if getattr(task_class, "name", None) != entry.name:
                raise errors.AccordError(
                    f"entry point {entry.name!r} loads {task_class.__qualname__}, "
                    f"whose name is {getattr(task_class, 'name', None)!r}"
                )
            registry.register(task_class())
        return registry

    def register(self, task: Task) -> None:
        """Add a task type; a different class under a taken name is an error."""
        present = self._tasks.get(task.name)
        if present is not None and type(present) is not type(task):
            raise errors.AccordError(
                f"task type {task.name!r} is registered twice: {present!r} and {task!r}"
            )
        self._tasks[task.name] = task

    def replace(self, task: Task) -> None:
        """Register ``task`` over whatever has its name (tests swap in fakes this way)."""
        self._tasks[task.name] = task

    def get(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            known = ", ".join(sorted(self._tasks))
            raise errors.InputError(f"unknown task type {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(list(self._tasks.values()))


_default: TaskRegistry | None = None


def default() -> TaskRegistry:
    """Built-in task types plus every installed one, loaded once per process (a copy is safe
    to extend: use ``TaskRegistry(default())``)."""
    global _default
    if _default is None:
        from accord.engine.flows.builtin import builtin_tasks

        _default = TaskRegistry.from_entry_points(builtin_tasks())
    return _default
