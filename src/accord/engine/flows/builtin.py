"""Built-in task types and conditions.

``converge``        converge a manifest with the run's ``services["session"]`` (an open
                    ``LocalSession``): goal ``apply`` or ``stage`` fails the task unless the run
                    succeeded; goal ``dry_run`` is a check that fails if anything would change.
``sleep``           ``seconds`` (from the first time it is reached) or ``until`` (ISO time,
                    naive means UTC); durable.
``wait_signal``     wait for a signal (``accord flow signal RUN NAME``); the result is
                    ``{"signal": NAME, "data": …}``.
``wait_condition``  poll a named condition every ``interval`` until it holds or ``timeout``
                    passes (the deadline is durable). Conditions come from
                    ``services["conditions"]`` (name → ``async (ctx, args) -> bool``), then the
                    built-in ones (:data:`CONDITIONS`).
``call_webhook``    POST ``{"flow", "run", "task", "data": body}`` as JSON, signed (see
                    :func:`sign`); 5xx, 408, 429 and connection errors are transient (retried;
                    ``Retry-After`` is honoured), other 4xx are permanent.

Built-in conditions: ``converged`` (``args: {manifest: NAME}``): the latest run of that manifest
succeeded.

Adding a type is one entry in :func:`builtin_tasks` (or an ``accord.tasks`` entry point).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from accord import errors
from accord.engine.converge import Options
from accord.engine.flows.context import FlowContext
from accord.engine.flows.lifecycle_tasks import TransitionTask, WaitWindowTask
from accord.engine.flows.model import Duration
from accord.engine.flows.signals import NAME as SIGNAL_NAME
from accord.engine.flows.tasks import Task
from accord.engine.journal import Journal
from accord.engine.retry import RetryPolicy
from accord.lifecycle import webhooks
from accord.model.manifest import StateGoal
from accord.model.status import RunState
from accord.providers.httputil import retry_after_seconds

ConditionCheck = Callable[[FlowContext, dict[str, Any]], Awaitable[bool]]
"""A named condition: ``async (ctx, args) -> bool``. ``TransientError`` counts as "not yet"."""

SIGNATURE_HEADER = "X-Accord-Signature"
TIMESTAMP_HEADER = "X-Accord-Timestamp"
DELIVERY_HEADER = "X-Accord-Delivery"


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- converge --------------------------------------------------------------------------


class ConvergeParams(_Params):
    manifest: str = Field(min_length=1, description="path, relative to the flow file")
    goal: Literal["dry_run", "stage", "apply"] = "apply"
    revert_on_failure: bool = False
    prune: bool = True


class ConvergeTask(Task):
    """Converge a manifest on this machine (converging is idempotent by design)."""

    name = "converge"
    idempotent = True
    params_model = ConvergeParams

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        from accord.engine.local import load_manifest

        p = ConvergeParams.model_validate(params)
        session = ctx.service("session")
        path = Path(p.manifest)
        if not path.is_absolute():
            path = Path(ctx.services.get("base_dir") or Path.cwd()) / path
        manifest = load_manifest(path, session.registry)
        goal = StateGoal(p.goal)
        options = Options(
            goal=goal, on_failure="revert" if p.revert_on_failure else "continue", prune=p.prune
        )
        plan, run = await session.converge(
            manifest, base_dir=path.resolve().parent, options=options, stop=ctx.stop
        )
        summary = {"manifest": manifest.metadata.name, "generation": manifest.metadata.generation}
        if goal is StateGoal.DRY_RUN:
            drift = [f"{s.id} ({s.change.action.value})" for s in plan.changes]
            if drift:
                raise errors.PermanentError(
                    f"{manifest.metadata.name}: {len(drift)} resource(s) differ: "
                    + ", ".join(drift[:10])
                )
            return {**summary, "changes": 0}
        if run.state is RunState.INTERRUPTED and ctx.stop.is_set():
            raise ctx.halted()
        if run.state is not RunState.SUCCEEDED:
            counts = ", ".join(f"{n} {phase}" for phase, n in sorted(run.counts.items()))
            raise errors.PermanentError(
                f"converging {manifest.metadata.name} ended {run.state.value} ({counts}); "
                f"see `accord history --run {run.run_id}`"
            )
        return {**summary, "run": run.run_id, "changed": run.changed}


# -- waits -----------------------------------------------------------------------------


class SleepParams(_Params):
    seconds: Duration | None = None
    until: datetime | None = None

    @model_validator(mode="after")
    def _one(self) -> SleepParams:
        if (self.seconds is None) == (self.until is None):
            raise ValueError("give exactly one of 'seconds' or 'until'")
        return self


class SleepTask(Task):
    """Sleep durably: a resumed run sleeps only what is left."""

    name = "sleep"
    idempotent = True
    device_local = False
    params_model = SleepParams

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        p = SleepParams.model_validate(params)
        if p.until is not None:
            until = p.until if p.until.tzinfo else p.until.replace(tzinfo=UTC)
            await ctx.sleep_until(until)
        else:
            await ctx.sleep(p.seconds or 0.0)
        return None


class WaitSignalParams(_Params):
    name: str = Field(pattern=SIGNAL_NAME.pattern)
    timeout: Duration | None = None


class WaitSignalTask(Task):
    """Wait for an operator's (or a system's) signal, e.g. ``approve``."""

    name = "wait_signal"
    idempotent = True
    device_local = False
    params_model = WaitSignalParams

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        p = WaitSignalParams.model_validate(params)
        data = await ctx.wait_signal(p.name, timeout=p.timeout)
        return {"signal": p.name, "data": data}


class WaitConditionParams(_Params):
    condition: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
    interval: Duration = 5.0
    timeout: Duration = 600.0


class WaitConditionTask(Task):
    """Poll a named condition until it holds; fail when the (durable) deadline passes."""

    name = "wait_condition"
    idempotent = True
    device_local = False
    params_model = WaitConditionParams

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        p = WaitConditionParams.model_validate(params)
        check = condition(ctx, p.condition)
        what = f"condition {p.condition}"
        deadline = await ctx.deadline(p.timeout, what=what)
        while True:
            try:
                met = await check(ctx, p.args)
            except errors.TransientError:
                met = False  # it could not be read this time: "not yet", poll again
            if met:
                return {"condition": p.condition, "met_at": datetime.now(UTC).isoformat()}
            left = deadline - time.time()
            if left <= 0:
                raise errors.PermanentError(f"{what} did not hold within {p.timeout:g} s")
            await ctx.pause(min(p.interval, left), what=what)


def condition(ctx: FlowContext, name: str) -> ConditionCheck:
    """The condition called ``name``: the run's own first, then the built-in ones."""
    given: Mapping[str, ConditionCheck] = ctx.services.get("conditions") or {}
    found = given.get(name) or CONDITIONS.get(name)
    if found is None:
        known = ", ".join(sorted({*given, *CONDITIONS}))
        raise errors.PermanentError(f"unknown condition {name!r}; known: {known}")
    return found


async def converged(ctx: FlowContext, args: dict[str, Any]) -> bool:
    """The latest run of manifest ``args["manifest"]`` succeeded."""
    manifest = args.get("manifest")
    if not isinstance(manifest, str) or not manifest:
        raise errors.PermanentError("condition 'converged' needs args: {manifest: NAME}")
    latest = await Journal(ctx.store).latest(manifest)
    return latest is not None and latest.state is RunState.SUCCEEDED


CONDITIONS: dict[str, ConditionCheck] = {"converged": converged}


# -- webhooks --------------------------------------------------------------------------


class WebhookParams(_Params):
    url: str = Field(pattern=r"^https?://")
    body: Any = None
    secret_env: str = Field(
        min_length=1, description="environment variable holding the signing secret"
    )
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 10.0


class CallWebhookTask(Task):
    """POST a signed JSON payload. At least once: receivers deduplicate by ``X-Accord-Delivery``
    (``<run>.<task>``), which is what makes the task idempotent."""

    name = "call_webhook"
    idempotent = True
    device_local = False
    retry: ClassVar[RetryPolicy | None] = RetryPolicy(attempts=5, base=1.0, cap=30.0)
    params_model = WebhookParams
    secret_prefix: ClassVar[str] = ""  # the variables ``secret_env`` may name
    keep_response: ClassVar[bool] = True  # the response body becomes part of the result

    async def execute(self, ctx: FlowContext, params: dict[str, Any]) -> Any:
        p = WebhookParams.model_validate(params)
        if not p.secret_env.startswith(self.secret_prefix):
            raise errors.PermanentError(
                f"secret_env {p.secret_env!r}: here it must start with {self.secret_prefix!r}"
            )
        secret = os.environ.get(p.secret_env)
        if not secret:
            raise errors.PermanentError(f"the webhook secret variable {p.secret_env} is not set")
        payload = {"flow": ctx.flow, "run": ctx.run_id, "task": ctx.task_id, "data": p.body}
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        timestamp = int(time.time())
        headers = {
            **p.headers,
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: webhooks.sign(secret, timestamp, body),  # as webhook delivery signs
            DELIVERY_HEADER: f"{ctx.run_id}.{ctx.task_id}",
        }
        client: httpx.AsyncClient | None = ctx.services.get("http")
        try:
            if client is not None:
                response = await client.post(
                    p.url, content=body, headers=headers, timeout=p.timeout
                )
            else:
                async with httpx.AsyncClient() as own:
                    response = await own.post(
                        p.url, content=body, headers=headers, timeout=p.timeout
                    )
        except httpx.TransportError as exc:
            raise errors.TransientError(f"POST {p.url}: {type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise errors.PermanentError(f"POST {p.url}: {exc}") from exc
        code = response.status_code
        if code >= 500 or code in (408, 429):
            raise errors.TransientError(
                f"POST {p.url}: HTTP {code}",
                retry_after=retry_after_seconds(
                    response.headers.get("Retry-After"), now=time.time()
                ),
            )
        if code >= 400:
            raise errors.PermanentError(f"POST {p.url}: HTTP {code}: {response.text[:200]}")
        if not self.keep_response:
            return {"status": code}
        return {"status": code, "response": _response_body(response)}


class ControlPlaneWebhookTask(CallWebhookTask):
    """``call_webhook`` as the control plane runs it for an operator's flow: the secret must be
    an ``ACCORD_WEBHOOK_*`` variable (not, say, the server's own credentials as a signing key)
    and the response body is dropped (the server must not become a way to read URLs only it
    can reach: its journal is readable by viewers)."""

    secret_prefix: ClassVar[str] = "ACCORD_WEBHOOK_"
    keep_response: ClassVar[bool] = False


def _response_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:1000] or None


def builtin_tasks() -> list[Task]:
    """Every built-in task type."""
    return [
        ConvergeTask(), SleepTask(), WaitSignalTask(), WaitConditionTask(), CallWebhookTask(),
        TransitionTask(), WaitWindowTask(),
    ]  # fmt: skip
