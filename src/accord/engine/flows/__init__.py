"""Durable flows: graphs of tasks with execute / revert, journaled step by step, resumable.

A flow is a YAML definition (:mod:`.model`) of tasks of registered types (:mod:`.tasks`,
:mod:`.builtin`) joined by ``after`` edges. :class:`FlowRunner` (:mod:`.runner`, which states
the crash and resume contract) runs it on the engine's DAG executor, journals every task
transition in the store (:mod:`.journal`), reverts in reverse order on failure, and resumes
after a crash without redoing finished tasks. Tasks wait durably for signals, times and
conditions through their :class:`FlowContext` (:mod:`.context`, :mod:`.waits`,
:mod:`.signals`). The states of runs and tasks are tables (:mod:`.states`).

Modules::

    model       FlowSpec, TaskSpec, parse_flow / load_flow (errors name file:line and task)
    tasks       Task (the contract), TaskRegistry (explicit + the ``accord.tasks`` entry points)
    builtin     converge, sleep, wait_signal, wait_condition, call_webhook; conditions
    context     FlowContext: what a task gets; Halted
    runner      FlowRunner.run / resume: the contract
    observer    Observer: who is told about progress
    execution   one process's turn at a run: the graph, then the failure policy
    waits       halts, durable waits, operator decisions, the record while waiting
    signals     send(), the per-run signal watch
    journal     FlowRun records, the ``flow-journal`` stream, replay
    view        what readers see: every task's state from the journal, runs selected
    lock        the per-run lock that tells a live run from a crashed one
    states      FlowState, TaskState and their transition tables
"""

from __future__ import annotations

from accord.engine.flows.context import FlowContext, Halted
from accord.engine.flows.journal import FlowJournal, FlowRun
from accord.engine.flows.model import FlowSpec, InvalidFlowError, TaskSpec, load_flow, parse_flow
from accord.engine.flows.observer import NullObserver, Observer
from accord.engine.flows.runner import FlowRunner
from accord.engine.flows.signals import send as send_signal
from accord.engine.flows.states import FlowState, TaskState
from accord.engine.flows.tasks import Task, TaskRegistry

__all__ = [
    "FlowContext",
    "FlowJournal",
    "FlowRun",
    "FlowRunner",
    "FlowSpec",
    "FlowState",
    "Halted",
    "InvalidFlowError",
    "NullObserver",
    "Observer",
    "Task",
    "TaskRegistry",
    "TaskSpec",
    "TaskState",
    "load_flow",
    "parse_flow",
    "send_signal",
]
