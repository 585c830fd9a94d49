"""``Container`` against the recording stand-in: what it runs, in what order, and what it never
runs (a pull during apply, a create or rm when nothing changed, secrets in argv)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from accord import errors
from accord.model.manifest import ResourceId
from accord.model.specs import ContainerSpec
from accord.providers.base import Context
from accord.providers.cache import Cache
from accord.providers.container import HASH_LABEL, SPEC_LABEL, ContainerProvider, spec_hash
from accord.providers.container_engine import Engine
from accord.providers.paths import Roots
from helpers import gone
from standins.container import StandIn

IMAGE = "registry.example/web@sha256:" + "5e" * 32
NEWER = "registry.example/web@sha256:" + "6f" * 32
MUTATING = {"pull", "create", "start", "stop", "rm", "rename"}


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    """A docker stand-in, first on PATH, with both images in its registry."""
    stand_in = StandIn(tmp_path / "engine")
    stand_in.publish(IMAGE, env=["PATH=/bin"], cmd=["/bin/web"])
    stand_in.publish(NEWER)
    shims = stand_in.install("docker")
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}/usr/bin:/bin")
    return stand_in


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "srv" / "web").mkdir(parents=True)
    return tmp_path / "root"


@pytest.fixture
def outputs() -> list[str]:
    return []


@pytest.fixture
def ctx(tmp_path: Path, root: Path, outputs: list[str]) -> Context:
    return Context(
        roots=Roots([root]),
        state_dir=tmp_path / "state",
        cache=Cache(tmp_path / "state" / "cache"),
        resource_id=ResourceId("web"),
        output=outputs.append,
    )


@pytest.fixture
def provider() -> ContainerProvider:
    return ContainerProvider()


def web(**fields: object) -> ContainerSpec:
    return ContainerSpec.model_validate(
        {
            "name": "web",
            "image": IMAGE,
            "env": {"TOKEN": "s3cret value"},
            "ports": [{"container_port": 80, "host_port": 8080}],
            "volumes": [{"source": "srv/web", "target": "/srv", "read_only": True}],
            "runtime": "docker",
        }
        | fields
    )


async def converge(provider: ContainerProvider, ctx: Context, spec: ContainerSpec) -> None:
    """What a run does: observe, stage if needed, apply, and check it converged."""
    current = await provider.observe(ctx, spec)
    if not await provider.staged(ctx, spec):
        await provider.stage(ctx, spec)
    await provider.apply(ctx, spec, current)
    change = provider.diff(spec, await provider.observe(ctx, spec))
    assert change.is_noop, change.describe()


def mutations(engine: StandIn) -> list[str]:
    return [verb for verb in engine.commands() if verb in MUTATING]


# Stage pulls; apply never does


async def test_stage_pulls_once_and_apply_never_pulls(
    provider: ContainerProvider, ctx: Context, engine: StandIn
) -> None:
    spec = web()
    assert not await provider.staged(ctx, spec)
    await provider.stage(ctx, spec)
    await provider.stage(ctx, spec)  # present: nothing to do
    assert await provider.staged(ctx, spec)
    assert engine.commands().count("pull") == 1

    engine.set(offline=True)  # the window: no registry
    engine.forget_calls()
    await provider.apply(ctx, spec, await provider.observe(ctx, spec))
    assert mutations(engine) == ["create", "start"]
    create = next(argv for argv in engine.calls() if argv[0] == "create")
    assert "--pull=never" in create  # and the engine is told so too


async def test_apply_without_the_image_fails_saying_to_stage_and_pulls_nothing(
    provider: ContainerProvider, ctx: Context, engine: StandIn
) -> None:
    with pytest.raises(errors.PermanentError, match=r"not on this machine.*accord stage.*never"):
        await provider.apply(ctx, web(), None)
    assert mutations(engine) == []
    assert engine.containers() == {}


async def test_pull_failures_are_classified(
    provider: ContainerProvider, ctx: Context, engine: StandIn
) -> None:
    engine.set(offline=True)
    with pytest.raises(errors.TransientError, match="no such host"):
        await provider.stage(ctx, web())
    engine.set(offline=False)
    with pytest.raises(errors.PermanentError, match="pull access denied"):
        await provider.stage(ctx, web(image="registry.example/nope:1"))


# Create, replace, start/stop, no-op


async def test_create_then_a_second_apply_does_nothing(
    provider: ContainerProvider, ctx: Context, engine: StandIn, root: Path
) -> None:
    spec = web()
    await converge(provider, ctx, spec)
    made = engine.containers()["web"]
    assert made["labels"][HASH_LABEL] == spec_hash(spec)
    assert made["running"] and made["restart"] == "unless-stopped"
    assert made["mounts"] == [
        {"type": "bind", "source": str(root / "srv/web"), "target": "/srv", "read_only": True}
    ]
    assert made["ports"] == [{"ip": "", "host": 8080, "container": 80, "protocol": "tcp"}]
    assert "TOKEN=s3cret value" in made["env"] and "PATH=/bin" in made["env"]

    engine.forget_calls()
    current = await provider.observe(ctx, spec)
    assert provider.diff(spec, current).is_noop
    await provider.apply(ctx, spec, current)
    assert mutations(engine) == []  # no create, rm, start or stop
    assert engine.containers()["web"]["id"] == made["id"]


async def test_a_changed_definition_replaces_the_container(
    provider: ContainerProvider, ctx: Context, engine: StandIn, outputs: list[str]
) -> None:
    await converge(provider, ctx, web())
    old_id = engine.containers()["web"]["id"]
    engine.forget_calls()

    await converge(provider, ctx, web(image=NEWER, env={"TOKEN": "rotated"}))

    # The new one is created before the old one is touched, then swapped in.
    assert mutations(engine) == ["pull", "create", "stop", "rm", "rename", "start"]
    create = next(argv for argv in engine.calls() if argv[0] == "create")
    assert create[create.index("--name") + 1] == "web.accord-next"
    (now,) = engine.containers().values()
    assert now["name"] == "web" and now["id"] != old_id and now["image"] == NEWER
    assert "TOKEN=rotated" in now["env"]
    assert any(line.startswith("$ docker rename web.accord-next web") for line in outputs)


async def test_only_running_changed_starts_or_stops_without_recreating(
    provider: ContainerProvider, ctx: Context, engine: StandIn
) -> None:
    await converge(provider, ctx, web())
    made = engine.containers()["web"]["id"]
    engine.forget_calls()
    await converge(provider, ctx, web(running=False))
    assert mutations(engine) == ["stop"]
    engine.forget_calls()
    await converge(provider, ctx, web(running=True))
    assert mutations(engine) == ["start"]
    assert engine.containers()["web"]["id"] == made


async def test_a_moved_tag_replaces_the_container_once_the_new_image_is_here(
    provider: ContainerProvider, ctx: Context, engine: StandIn
) -> None:
    spec = web(image="registry.example/web:stable")
    engine.publish(spec.image)
    await converge(provider, ctx, spec)
    engine.publish(spec.image)  # pushed again: stage does not re-pull what is here
    await provider.stage(ctx, spec)
    assert provider.diff(spec, await provider.observe(ctx, spec)).is_noop

    assert engine.cli("docker", "pull", spec.image).returncode == 0  # an operator pulls
    change = provider.diff(spec, await provider.observe(ctx, spec))
    assert [f.field for f in change.fields] == ["image_id"]
    await converge(provider, ctx, spec)


async def test_a_rejected_replacement_leaves_the_old_container_running(
    provider: ContainerProvider, ctx: Context, engine: StandIn, root: Path
) -> None:
    await converge(provider, ctx, web())
    before = engine.containers()["web"]
    broken = web(volumes=[{"source": "srv/missing", "target": "/srv"}])

    with pytest.raises(errors.PermanentError, match="bind source path does not exist"):
        await provider.apply(ctx, broken, await provider.observe(ctx, broken))

    assert engine.containers() == {"web": before}


async def test_an_interrupted_replacement_is_finished_by_the_next_apply(
    provider: ContainerProvider, ctx: Context, engine: StandIn
) -> None:
    await converge(provider, ctx, web())
    # A run killed after creating the replacement: its temporary container is left behind.
    await provider.stage(ctx, web(image=NEWER))
    leftover = ContainerProvider()
    await leftover._create(ctx, await leftover.engines.get("docker"), web(image=NEWER),
                           "web.accord-next", provider._binds(ctx, web()))  # fmt: skip
    assert set(engine.containers()) == {"web", "web.accord-next"}

    await converge(provider, ctx, web(image=NEWER))
    assert set(engine.containers()) == {"web"}
    assert engine.containers()["web"]["image"] == NEWER


async def test_secrets_never_reach_argv_or_the_journal(
    provider: ContainerProvider, ctx: Context, engine: StandIn, outputs: list[str]
) -> None:
    await converge(provider, ctx, web())
    argv = " ".join(" ".join(call) for call in engine.calls())
    assert "s3cret" not in argv and "s3cret" not in "\n".join(outputs)
    labels = engine.containers()["web"]["labels"]
    assert "s3cret value" in labels[SPEC_LABEL]  # where the engine keeps it: like Config.Env
    assert not any("accord-container-" in line for line in outputs)  # temp paths stripped


# Containers that are not accord's


async def test_a_container_accord_did_not_create_is_refused_and_left_alone(
    provider: ContainerProvider, ctx: Context, engine: StandIn
) -> None:
    engine.cli("docker", "pull", IMAGE)
    assert engine.cli("docker", "create", "--name", "web", "--pull=never", IMAGE).returncode == 0
    theirs = engine.containers()["web"]
    spec = web()
    current = await provider.observe(ctx, spec)
    assert current is not None and current.spec_hash is None
    assert await provider.snapshot(ctx, spec, current) is None

    with pytest.raises(errors.PermanentError, match="accord did not create it"):
        await provider.apply(ctx, spec, current)
    note = await provider.delete(ctx, spec, None)

    assert note == "left container web alone: accord did not create it"
    assert engine.containers() == {"web": theirs}


async def test_a_container_whose_id_starts_with_the_name_is_not_it(
    provider: ContainerProvider, ctx: Context, engine: StandIn
) -> None:
    engine.cli("docker", "pull", IMAGE)
    engine.cli("docker", "create", "--name", "other", "--pull=never", IMAGE)
    (other,) = engine.containers().values()
    spec = web(name=other["id"][:4])  # `inspect` would resolve it as an id prefix
    assert await provider.observe(ctx, spec) is None


# Snapshot and delete


async def test_delete_removes_the_container_but_not_its_image(
    provider: ContainerProvider, ctx: Context, engine: StandIn
) -> None:
    await converge(provider, ctx, web())
    note = await provider.delete(ctx, web(), None)
    assert note == "removed container web (its image and volumes are kept)"
    assert engine.containers() == {}
    assert IMAGE in engine.images()
    assert await provider.delete(ctx, web(), None) == "container web is already absent"


async def test_delete_with_a_snapshot_recreates_the_prior_definition(
    provider: ContainerProvider, ctx: Context, engine: StandIn
) -> None:
    await converge(provider, ctx, web(running=False))
    prior = await provider.snapshot(ctx, web(), await provider.observe(ctx, web()))
    assert prior is not None and prior["running"] is False
    await converge(provider, ctx, web(image=NEWER))

    note = await provider.delete(ctx, web(image=NEWER), prior)

    assert note == "restored container web to its prior definition"
    (back,) = engine.containers().values()
    assert back["image"] == IMAGE and not back["running"]


# Details


async def test_details_say_since_when_it_runs_and_how_often_it_restarted(
    provider: ContainerProvider, ctx: Context, engine: StandIn
) -> None:
    await converge(provider, ctx, web())
    with engine.edit() as state:
        (record,) = state["containers"].values()
        record["restart_count"] = 3
    current = await provider.observe(ctx, web())
    details = provider.details(web(), current)
    assert details == {
        "runtime": "docker",
        "status": "running",
        "running_since": record["started_at"],
        "restarts": 3,
        "image": record["image_id"][:12],
    }
    assert provider.details(web(), None) == {}


# Finding the engine


async def test_auto_prefers_podman_when_both_are_on_path(
    tmp_path: Path, provider: ContainerProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_in = StandIn(tmp_path / "both")
    monkeypatch.setenv("PATH", str(stand_in.install("docker", "podman")))
    assert (await provider.engines.get("auto")).runtime == "podman"
    assert (await provider.engines.get("docker")).runtime == "docker"


async def test_auto_takes_docker_when_podman_is_not_on_path(
    engine: StandIn, provider: ContainerProvider
) -> None:
    found = await provider.engines.get("auto")
    assert (found.runtime, Path(found.path).parent.name) == ("docker", "bin")


async def test_a_runtime_that_is_not_installed_is_permanent(
    engine: StandIn, provider: ContainerProvider
) -> None:
    with pytest.raises(errors.PermanentError, match="podman is on PATH"):
        await provider.engines.get("podman")


@pytest.mark.parametrize("flavor", ["docker", "podman"])
async def test_an_engine_that_does_not_answer_is_transient_not_absent(
    tmp_path: Path,
    provider: ContainerProvider,
    ctx: Context,
    monkeypatch: pytest.MonkeyPatch,
    flavor: str,
) -> None:
    stand_in = StandIn(tmp_path / flavor)
    monkeypatch.setenv("PATH", str(stand_in.install(flavor)))
    stand_in.set(down=True)
    spec = web(runtime=flavor)
    with pytest.raises(errors.TransientError, match=f"the {flavor} engine is not running"):
        await provider.observe(ctx, spec)
    assert not await provider.staged(ctx, spec)  # cannot tell: not staged

    stand_in.set(down=False)  # it came up
    assert await provider.observe(ctx, spec) is None
    stand_in.set(down=True)  # and went down again after it was found
    with pytest.raises(errors.TransientError, match="not running"):
        await provider.observe(ctx, spec)  # `[]` on stdout is not "absent"


@pytest.mark.skipif(
    shutil.which("docker", path="/usr/local/bin:/usr/bin:/bin") is None,
    reason="no docker CLI here to try without its daemon",
)
async def test_a_real_docker_cli_without_a_daemon_is_not_an_engine(
    provider: ContainerProvider, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # never a real daemon
    with pytest.raises(errors.TransientError, match="docker engine is not running"):
        await provider.observe(ctx, web())


async def test_a_timeout_kills_the_cli_and_what_it_started(tmp_path: Path) -> None:
    # A CLI that starts a helper which would outlive a kill of the CLI alone.
    cli = tmp_path / "docker"
    cli.write_text(f"#!/bin/sh\nsleep 60 & echo $! > {tmp_path / 'child.pid'}\nwait\n")
    cli.chmod(0o755)
    started = time.monotonic()

    with pytest.raises(errors.TransientError, match=r"did not finish within 0\.5 s; it was killed"):
        await Engine(runtime="docker", path=str(cli)).run("version", seconds=0.5)

    assert time.monotonic() - started < 5
    assert gone(int((tmp_path / "child.pid").read_text()))


# The spec


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "-web"}, "name"),
        ({"name": "w"}, "name"),
        ({"image": "--privileged"}, "image"),
        ({"image": "a b"}, "image"),
        ({"command": []}, "command"),
        ({"env": {"A B": "1"}}, "not a variable name"),
        ({"env": {"A": "two\nlines"}}, "line breaks"),
        ({"volumes": [{"source": "data", "target": "relative"}]}, "target"),
        ({"volumes": [{"source": "my vol", "target": "/v"}]}, "neither a path"),
        ({"volumes": [{"source": "/a,b", "target": "/v"}]}, "','"),
        (
            {"volumes": [{"source": "a", "target": "/v"}, {"source": "b", "target": "/v/"}]},
            "same target",
        ),
        (
            {"ports": [{"container_port": p, "host_port": 80} for p in (1, 2)]},
            "same host port",
        ),
        ({"ports": [{"container_port": 80, "host_port": 8080, "host_ip": "nope"}]}, "host_ip"),
        ({"restart": "sometimes"}, "restart"),
        ({"runtime": "lxc"}, "runtime"),
        ({"privileged": True}, "privileged"),
    ],
)
def test_bad_specs_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        web(**fields)


def test_spec_normalizes_host_ips_and_tells_paths_from_volume_names() -> None:
    spec = web(
        ports=[{"container_port": 53, "host_port": 53, "host_ip": "0:0::1", "protocol": "udp"}],
        volumes=[{"source": "./data", "target": "/d"}, {"source": "data", "target": "/n"}],
    )
    assert spec.ports[0].host_ip == "::1"
    assert [v.is_bind for v in spec.volumes] == [True, False]


async def test_bind_sources_are_confined_to_the_roots(
    provider: ContainerProvider, ctx: Context, engine: StandIn
) -> None:
    spec = web(volumes=[{"source": "/etc", "target": "/host-etc"}])
    with pytest.raises(errors.PathEscapeError, match="outside the roots"):
        await provider.observe(ctx, spec)


@pytest.mark.parametrize("prior", [{}, {"spec": "{broken"}, {"spec": "[1]", "running": True}])
async def test_a_damaged_snapshot_is_a_permanent_failure(
    provider: ContainerProvider, ctx: Context, engine: StandIn, prior: dict[str, object]
) -> None:
    with pytest.raises(errors.PermanentError, match="recorded definition is unreadable"):
        await provider.delete(ctx, web(), prior)
