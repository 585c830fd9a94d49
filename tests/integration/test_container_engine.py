"""``Container`` against a real podman or docker engine: runs only where one answers.

Selected by the ``container_engine`` marker (``pytest -m container_engine``) and skipped, saying
why, where neither ``podman info`` nor ``docker info`` succeeds — a docker CLI without a daemon
does not count. Staging needs the registry: set ``ACCORD_TEST_IMAGE`` to an image the engine
already has (or can pull) to run it offline; a registry that cannot be reached skips too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord import errors
from accord.model.manifest import ResourceId
from accord.model.specs import ContainerSpec
from accord.providers.base import Context
from accord.providers.cache import Cache
from accord.providers.container import ContainerProvider
from accord.providers.paths import Roots

IMAGE = os.environ.get("ACCORD_TEST_IMAGE", "docker.io/library/busybox:1.36")


def _working_engine() -> tuple[str | None, str]:
    """The first engine whose ``info`` succeeds, or why there is none."""
    why = []
    for runtime in ("podman", "docker"):
        path = shutil.which(runtime)
        if path is None:
            why.append(f"{runtime}: not on PATH")
            continue
        try:
            done = subprocess.run(
                [path, "info"], capture_output=True, text=True, timeout=20, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            why.append(f"{runtime}: {exc}")
            continue
        if done.returncode == 0:
            return runtime, ""
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        why.append(f"{runtime} at {path}: `{runtime} info` failed ({said[-1] if said else ''})")
    return None, "no container engine answers here: " + "; ".join(why)


RUNTIME, WHY = _working_engine()
pytestmark = [
    pytest.mark.container_engine,
    pytest.mark.skipif(RUNTIME is None, reason=WHY),
]


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    (tmp_path / "root" / "data").mkdir(parents=True)
    return Context(
        roots=Roots([tmp_path / "root"]),
        state_dir=tmp_path / "state",
        cache=Cache(tmp_path / "state" / "cache"),
        resource_id=ResourceId("it"),
    )


@pytest.fixture
def name() -> Iterator[str]:
    name = f"accord-it-{uuid.uuid4().hex[:8]}"
    yield name
    assert RUNTIME is not None
    for leftover in (name, f"{name}.accord-next"):
        subprocess.run([RUNTIME, "rm", "--force", leftover], capture_output=True, check=False)


async def test_a_real_engine_stages_creates_replaces_stops_and_removes(
    ctx: Context, name: str
) -> None:
    assert RUNTIME is not None
    provider = ContainerProvider()
    spec = ContainerSpec(
        name=name,
        image=IMAGE,
        command=["sleep", "3600"],
        env={"GREETING": "hello world"},
        volumes=[{"source": "./data", "target": "/data", "read_only": True}],  # a bind mount
        runtime=RUNTIME,
    )
    try:
        await provider.stage(ctx, spec)
    except errors.TransientError as exc:
        pytest.skip(f"cannot stage {IMAGE} (set ACCORD_TEST_IMAGE to a local image): {exc}")
    assert await provider.staged(ctx, spec)

    await provider.apply(ctx, spec, await provider.observe(ctx, spec))
    current = await provider.observe(ctx, spec)
    assert provider.diff(spec, current).is_noop, provider.diff(spec, current).describe()
    assert current is not None and current.running and current.started_at
    details = provider.details(spec, current)
    assert details["runtime"] == RUNTIME and details["restarts"] == 0
    first = current.id

    await provider.apply(ctx, spec, current)  # converged: nothing happens
    assert (again := await provider.observe(ctx, spec)) is not None and again.id == first

    changed = spec.model_copy(update={"env": {"GREETING": "hello again"}})
    await provider.apply(ctx, changed, await provider.observe(ctx, changed))
    replaced = await provider.observe(ctx, changed)
    assert replaced is not None and replaced.id != first and replaced.running
    assert provider.diff(changed, replaced).is_noop

    stopped = changed.model_copy(update={"running": False})
    await provider.apply(ctx, stopped, replaced)
    assert provider.diff(stopped, await provider.observe(ctx, stopped)).is_noop

    assert await provider.delete(ctx, stopped, None) == (
        f"removed container {name} (its image and volumes are kept)"
    )
    assert await provider.observe(ctx, stopped) is None
    assert await provider.staged(ctx, stopped)  # the image stays
