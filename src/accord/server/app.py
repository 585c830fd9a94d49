"""The control plane's FastAPI app: one factory, one lifespan, one router per area.

``create_app(store=…, signing_keys=…)`` builds the app. ``store`` is either an open
:class:`~accord.store.base.Store` (the caller owns it and closes it; tests inject theirs) or a
store URL that the lifespan opens on start-up and closes on shutdown, inside the server's own
event loop (SQLite connections belong to the thread that opened them). The lifespan also seeds
the bootstrap admin token, if one is given. Handlers reach the store and settings through the
:func:`accord.server.context.context` dependency, which tests may override.

Routes (all under ``/api/v1`` but ``/``, ``/dashboard/*`` and ``/healthz``), see each router's
docstring for roles: ``auth`` (whoami, tokens), ``nodes`` (enrolment, labels, transitions,
history, desired, status), ``manifests``, ``assignments``, ``status``, ``events`` (SSE),
``lifecycles``, ``flows`` (workflow runs), ``meta`` (signing keys). Errors map as
:mod:`accord.server.problems` says.

Given a ``flows_dir``, the lifespan also starts a :class:`~accord.server.flows.FlowHost`,
which runs the flows ``POST /flows`` starts, resumes its unfinished ones at start-up and
stops them (resumably) at shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute

import accord
from accord import errors, signing
from accord.model.specs import Spec
from accord.providers import registry
from accord.server import auth, problems
from accord.server.context import ServerContext
from accord.server.flows import FlowHost
from accord.server.routes import (
    assignments,
    dashboard,
    enrolment,
    events,
    flows,
    lifecycles,
    manifests,
    meta,
    nodes,
    status,
)
from accord.server.routes import auth as auth_routes
from accord.store import open_store
from accord.store.base import Store

API = "/api/v1"


def _operation_id(route: APIRoute) -> str:
    """Operation ids are the handlers' names (``list_nodes``, ``put_status``, …)."""
    return route.name


def create_app(
    *,
    store: Store | str,
    signing_keys: Sequence[signing.SigningKey],
    stale_after: float = 90.0,
    admin_token: str | None = None,
    kinds: Mapping[str, type[Spec]] | None = None,
    event_poll_interval: float = 0.5,
    flows_dir: Path | None = None,
) -> FastAPI:
    """Build the control plane.

    Args:
        store: an open store (not closed by the app) or a store URL (opened by the lifespan).
        signing_keys: every published manifest is signed with each (several during a rotation).
        stale_after: seconds without a heartbeat before a node's ``Stale`` condition is True.
        admin_token: if given, seeded at start-up as an admin token named ``admin``.
        kinds: the resource kinds manifests may use (default: every installed provider's).
        event_poll_interval: seconds between reads of the events stream by an idle SSE stream.
        flows_dir: where the locks of the flow runs this control plane executes live
            (``accord server`` uses ``STATE_DIR/flows``); None: it runs no flows itself, and
            ``POST /flows`` answers 501.

    Raises:
        InputError: no signing keys, or a bad setting.
    """
    if not signing_keys:
        raise errors.InputError("the control plane needs at least one signing key")
    if stale_after <= 0 or event_poll_interval <= 0:
        raise errors.InputError("stale_after and event_poll_interval must be positive")
    chosen_kinds = dict(kinds) if kinds is not None else registry.default().kinds()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = await open_store(store) if isinstance(store, str) else store
        host: FlowHost | None = None
        try:
            if admin_token is not None:
                await auth.seed(opened, admin_token)
            if flows_dir is not None:
                host = FlowHost(opened, lock_dir=flows_dir, stale_after=stale_after)
                await host.resume_all()
            app.state.accord = ServerContext(
                store=opened,
                signing_keys=tuple(signing_keys),
                kinds=chosen_kinds,
                stale_after=stale_after,
                event_poll_interval=event_poll_interval,
                flows=host,
            )
            yield
        finally:
            if host is not None:
                await host.close()
            if isinstance(store, str):
                await opened.close()

    app = FastAPI(
        title="accord control plane",
        version=accord.__version__,
        summary="Desired state and node lifecycles for device fleets.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    problems.install(app)
    common = problems.documented(400, 401, 403, 404, 409, 422, 503)
    for module in (
        auth_routes,
        enrolment,
        nodes,
        manifests,
        assignments,
        status,
        events,
        lifecycles,
        flows,
        meta,
    ):
        app.include_router(module.router, prefix=API, responses=common)
    app.include_router(meta.health, responses=problems.documented(503))
    app.include_router(dashboard.router)
    app.mount("/dashboard", dashboard.static_files(), name="dashboard")
    return app
