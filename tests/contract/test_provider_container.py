"""The provider contract for ``Container``, against the recording stand-in of the engine CLIs.

No container engine runs here: each test gets its own stand-in (``standins.container``) beside
its sandbox, with its shims first on ``PATH``. Its containers are the live state the suite
watches (``live_extra``); pulled images are not — like the content-addressed cache, they are
staged, not live. "Withdrawing the sources" takes the stand-in's registry offline.

Starting states that need the desired spec (a converged container, one of an older definition)
are made by the provider itself, staged and applied from the spec ``Desired.make`` recorded:
"what accord created for that spec", which is what they stand for.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from accord import errors
from accord.model.plan import Action
from accord.model.specs import ContainerSpec
from accord.providers.base import Context
from accord.providers.container import ContainerProvider
from accord.providers.paths import Roots
from accord.testing.provider_contract import (
    ABSENT,
    Desired,
    Node,
    ProviderContract,
    Sandbox,
    Start,
)
from standins.container import StandIn

WEB = "registry.example/web@sha256:" + "5e" * 32
WEB_OLD = "registry.example/web@sha256:" + "01" * 32
TOOL = "registry.example/tool:1.2"
TOOL_OLD = "registry.example/tool:1.1"


def stand_in(sb: Sandbox) -> StandIn:
    """The sandbox's engine: beside it, not in it, so observing changes nothing in the tree."""
    return StandIn(Path(f"{sb.base}.engine"))


def _flavor(sb: Sandbox) -> str:
    return (stand_in(sb).directory / "flavor").read_text()


def _remember(sb: Sandbox, spec: ContainerSpec) -> ContainerSpec:
    (stand_in(sb).directory / "desired.json").write_text(spec.model_dump_json())
    return spec


def wanted(sb: Sandbox) -> ContainerSpec:
    """The spec ``Desired.make`` made for this test."""
    return ContainerSpec.model_validate_json((stand_in(sb).directory / "desired.json").read_text())


def _runtime(sb: Sandbox) -> str:
    # docker: named outright; podman: found by ``auto`` (its shim is first on PATH).
    return "docker" if _flavor(sb) == "docker" else "auto"


def _web(sb: Sandbox) -> ContainerSpec:
    sb.mkdir("srv/web")
    return _remember(
        sb,
        ContainerSpec(
            name="web",
            image=WEB,
            command=["serve", "--port", "80"],
            env={"MODE": "production", "TOKEN": "s3cret value"},
            ports=[
                {"container_port": 80, "host_port": 8080},
                {"container_port": 53, "host_port": 5353, "protocol": "udp", "host_ip": "::1"},
            ],
            volumes=[
                {"source": "srv/web", "target": "/srv", "read_only": True},
                {"source": "web-cache", "target": "/cache"},
            ],
            runtime=_runtime(sb),
        ),
    )


def _tool(sb: Sandbox) -> ContainerSpec:
    return _remember(
        sb,
        ContainerSpec(name="tool", image=TOOL, restart="no", running=False, runtime=_runtime(sb)),
    )


# Starting states


def _sync(work: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine from a (sync) ``Start.arrange`` inside a running test loop."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, work).result()


def _created(sb: Sandbox, spec: ContainerSpec) -> None:
    """What accord makes for ``spec``: staged and applied by the provider."""

    async def work() -> None:
        provider = ContainerProvider()
        ctx = Context(
            roots=Roots([sb.root]), state_dir=sb.state, cache=sb.cache, base_dir=sb.sources
        ).bind("arrange")
        await provider.stage(ctx, spec)
        await provider.apply(ctx, spec, await provider.observe(ctx, spec))

    _sync(work())


def _cli(sb: Sandbox, *args: str) -> None:
    done = stand_in(sb).cli(_flavor(sb), *args)
    assert done.returncode == 0, done.stderr


def _older(spec: ContainerSpec) -> ContainerSpec:
    old = WEB_OLD if spec.image == WEB else TOOL_OLD
    return spec.model_copy(update={"image": old, "env": {"MODE": "staging"}, "command": ["old"]})


def _flipped(sb: Sandbox) -> None:
    spec = wanted(sb)
    _created(sb, spec)
    _cli(sb, "stop" if spec.running else "start", spec.name)


def _tag_moved(sb: Sandbox) -> None:
    """Converged, then the reference was pushed again and pulled by hand: it names another
    image than the container runs."""
    spec = wanted(sb)
    _created(sb, spec)
    stand_in(sb).publish(spec.image)
    _cli(sb, "pull", spec.image)


def _foreign(sb: Sandbox) -> None:
    """A container of that name that accord did not make."""
    spec = wanted(sb)
    _cli(sb, "pull", spec.image)
    _cli(sb, "create", "--name", spec.name, "--pull=never", spec.image)


STARTS = [
    ABSENT,
    Start("image-staged", lambda sb: _cli(sb, "pull", wanted(sb).image), expect=Action.CREATE),
    Start("converged", lambda sb: _created(sb, wanted(sb)), expect=Action.NOOP),
    Start("running-flipped", _flipped, expect=Action.UPDATE),
    Start("older-definition", lambda sb: _created(sb, _older(wanted(sb))), expect=Action.UPDATE),
    Start("tag-moved", _tag_moved, expect=Action.UPDATE),
    Start("foreign", _foreign, refuses=errors.PermanentError, expect=Action.UPDATE),
]


class TestContainer(ProviderContract):
    provider = ContainerProvider()
    flavor = "docker"
    desired = [Desired("web", _web), Desired("tool-stopped", _tool)]
    starts = STARTS

    @pytest.fixture(autouse=True)
    def engine(self, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
        engine = stand_in(sandbox)
        (engine.directory / "flavor").write_text(self.flavor)
        for image in (WEB, WEB_OLD, TOOL, TOOL_OLD):
            engine.publish(image)
        shims = engine.install(self.flavor)
        monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ.get('PATH', os.defpath)}")
        yield engine
        shutil.rmtree(engine.directory)

    def live_extra(self, sandbox: Sandbox) -> dict[str, Node]:
        return {
            f"container/{name}": Node(
                type="other", mode=0, uid=0, gid=0, data=json.dumps(_observable(c), sort_keys=True)
            )
            for name, c in stand_in(sandbox).containers().items()
        }

    def withdraw_sources(self, sandbox: Sandbox) -> None:
        super().withdraw_sources(sandbox)
        stand_in(sandbox).set(offline=True)


class TestContainerPodman(TestContainer):
    """The same contract against podman's shapes and messages, found by ``runtime: auto``."""

    flavor = "podman"
    desired = [Desired("web", _web)]


def _observable(c: dict[str, Any]) -> dict[str, Any]:
    """What a container is, as far as anyone using it can tell: not its id or start time, which
    a faithful re-creation changes."""
    return {
        "image": c["image"],
        "cmd": c["cmd"],
        "env": sorted(c["env"]),
        "labels": c["labels"],
        "restart": c["restart"],
        "ports": c["ports"],
        "mounts": c["mounts"],
        "running": c["running"],
    }
