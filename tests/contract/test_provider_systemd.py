"""The provider contract over ``SystemdUnit``, with no running systemd.

Unit files and enablement are the real thing: the real ``systemctl --root`` on the sandbox. The
running state goes to the recording stand-in (``accord.testing.systemctl``), first on ``PATH``,
installed beside each sandbox (not in it: observing must leave the sandbox alone, and the
stand-in logs every call); ``live_extra`` shows the units it runs, so the suite holds the
running state to the contract too. Without a real ``systemctl`` the suite is skipped, loudly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord import errors
from accord.model.plan import Action
from accord.model.specs import SystemdUnitSpec
from accord.providers import systemctl as systemctl_calls
from accord.providers.base import Context
from accord.providers.paths import Roots
from accord.providers.systemd import SystemdUnitProvider
from accord.testing import systemctl
from accord.testing.provider_contract import Desired, Node, ProviderContract, Sandbox, Start

REAL_SYSTEMCTL = shutil.which("systemctl")
NEEDS_SYSTEMCTL = pytest.mark.skipif(
    REAL_SYSTEMCTL is None,
    reason="systemctl not found: install systemd (apt-get install systemd) to test SystemdUnit",
)

UNITS = "etc/systemd/system"
APP = (
    "[Unit]\nDescription=app\n[Service]\nExecStart=/usr/bin/app\n"
    "[Install]\nWantedBy=multi-user.target\n"
)
LIMITS = "[Service]\nLimitNOFILE=65536\n"
VENDOR = "[Service]\nExecStart=/usr/bin/vendor\n[Install]\nWantedBy=multi-user.target\n"
OVERRIDE = "[Service]\nEnvironment=MODE=accord\n"


def standin_for(sandbox: Sandbox) -> systemctl.StandIn:
    """The stand-in of this sandbox: beside it, outside the tree the suite watches."""
    return systemctl.StandIn(sandbox.base.parent / f"{sandbox.base.name}-systemctl")


def enable(sandbox: Sandbox, name: str) -> None:
    """Enable with the real systemctl, beside another unit's link as on a real machine (so
    that disabling ours does not empty the ``.wants`` directory, which systemctl removes)."""
    assert REAL_SYSTEMCTL is not None
    sandbox.link(f"{UNITS}/multi-user.target.wants/ssh.service", "/lib/systemd/system/ssh.service")
    subprocess.run(
        [REAL_SYSTEMCTL, f"--root={sandbox.root}", "enable", name], check=True, capture_output=True
    )


def _running(*names: str) -> Start:
    return Start(
        f"running-{'-'.join(n.split('.')[0] for n in names)}",
        lambda sb: [standin_for(sb).set_unit(name) for name in names],
    )


class _SystemdContract(ProviderContract):
    provider = SystemdUnitProvider(runtime=True)  # the stand-in is the service manager
    several_things = True  # file, drop-in directory, enablement link, process

    @pytest.fixture(autouse=True)
    def _standin(self, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        standin = standin_for(sandbox)
        systemctl.install(standin.directory, root=sandbox.root, real=REAL_SYSTEMCTL)
        monkeypatch.setenv("PATH", f"{standin.directory}:{os.environ.get('PATH', '')}")
        yield
        shutil.rmtree(standin.directory, ignore_errors=True)

    def live_extra(self, sandbox: Sandbox) -> dict[str, Node]:
        """The units the stand-in runs (a failed or stopped unit runs nothing)."""
        return {
            name: Node(type="other", mode=0, uid=0, gid=0, data=f"{unit['active']} ({unit['sub']})")
            for name, unit in standin_for(sandbox).units().items()
            if unit["active"] in ("active", "reloading", "activating")
        }


# A unit accord writes: file, drop-ins, enablement, running state


@NEEDS_SYSTEMCTL
class TestSystemdUnit(_SystemdContract):
    desired = [
        Desired(
            "full",
            lambda sb: SystemdUnitSpec(
                name="app.service",
                content=APP,
                dropins={"limits.conf": LIMITS},
                enabled=True,
                active=True,
            ),
        ),
        Desired(
            "stopped-disabled",
            lambda sb: SystemdUnitSpec(
                name="app.service",
                content=APP,
                dropins={"old.conf": None},
                enabled=False,
                active=False,
            ),
        ),
        Desired("file-only", lambda sb: SystemdUnitSpec(name="app.service", content=APP)),
    ]
    starts = [
        Start("absent", lambda sb: None, expect=Action.CREATE),
        Start(
            "stale-running-enabled",
            lambda sb: (
                sb.write(f"{UNITS}/app.service", APP.replace("app\n", "old\n").encode()),
                sb.write(f"{UNITS}/app.service.d/old.conf", b"[Service]\nNice=5\n"),
                enable(sb, "app.service"),
                standin_for(sb).set_unit("app.service"),
            ),
            expect=Action.UPDATE,
        ),
        Start(
            "same-enabled-running",
            lambda sb: (
                sb.write(f"{UNITS}/app.service", APP.encode()),
                sb.write(f"{UNITS}/app.service.d/limits.conf", LIMITS.encode()),
                enable(sb, "app.service"),
                standin_for(sb).set_unit("app.service"),
            ),
        ),
        Start(
            "same-failed",
            lambda sb: (
                sb.write(f"{UNITS}/app.service", APP.encode()),
                standin_for(sb).set_unit("app.service", "failed", "failed"),
            ),
        ),
        Start("masked", lambda sb: sb.link(f"{UNITS}/app.service", "/dev/null")),
        Start(
            "dir-in-the-way",
            lambda sb: sb.write(f"{UNITS}/app.service/keep", b"mine"),
            refuses=errors.PermanentError,
            expect=Action.UPDATE,
        ),
    ]


# A unit a package installed: accord adds drop-ins, enables and runs it


def _vendor(spec: SystemdUnitSpec) -> Desired:
    def make(sb: Sandbox) -> SystemdUnitSpec:
        sb.write("usr/lib/systemd/system/vendor.service", VENDOR.encode())
        return spec

    return Desired(f"vendor-{'on' if spec.active else 'files'}", make)


@NEEDS_SYSTEMCTL
class TestSystemdVendorUnit(_SystemdContract):
    desired = [
        _vendor(
            SystemdUnitSpec(
                name="vendor.service",
                dropins={"override.conf": OVERRIDE, "old.conf": None},
                enabled=True,
                active=True,
            )
        ),
        _vendor(SystemdUnitSpec(name="vendor.service", dropins={"override.conf": OVERRIDE})),
    ]
    starts = [
        Start("absent", lambda sb: None, expect=Action.CREATE),
        Start(
            "old-dropins-running",
            lambda sb: (
                sb.write(f"{UNITS}/vendor.service.d/override.conf", b"[Service]\n"),
                sb.write(f"{UNITS}/vendor.service.d/old.conf", b"[Service]\nNice=5\n"),
                sb.write(f"{UNITS}/vendor.service.d/theirs.conf", b"[Service]\nNice=1\n"),
                standin_for(sb).set_unit("vendor.service"),
            ),
            expect=Action.UPDATE,
        ),
        _running("vendor.service"),
        Start(
            "dropin-dir-in-the-way",
            lambda sb: sb.write(f"{UNITS}/vendor.service.d/override.conf/keep", b"mine"),
            refuses=errors.PermanentError,
            expect=Action.UPDATE,
        ),
    ]


@NEEDS_SYSTEMCTL
class TestSystemdMaskedVendorUnit(_SystemdContract):
    """A masked unit is not unmasked behind its owner's back: enabling or starting it is refused
    before anything changes (with ``content``, the unit file replaces the mask: see above)."""

    desired = [
        _vendor(SystemdUnitSpec(name="vendor.service", dropins={"o.conf": OVERRIDE}, active=True)),
        _vendor(SystemdUnitSpec(name="vendor.service", enabled=True)),
    ]
    starts = [
        Start(
            "masked",
            lambda sb: sb.link(f"{UNITS}/vendor.service", "/dev/null"),
            refuses=errors.PermanentError,
        ),
    ]


# Behaviour beside the contract


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox.create(tmp_path / "sandbox")


@pytest.fixture
def standin(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> systemctl.StandIn:
    installed = systemctl.install(standin_for(sandbox).directory, root=sandbox.root)
    monkeypatch.setenv("PATH", f"{installed.directory}:{os.environ.get('PATH', '')}")
    return installed


@pytest.fixture
def ctx(sandbox: Sandbox) -> Context:
    return ProviderContract().context(sandbox).bind("app")


LIVE = SystemdUnitProvider(runtime=True)


async def converge(ctx: Context, spec: SystemdUnitSpec) -> None:
    await LIVE.apply(ctx, spec, await LIVE.observe(ctx, spec))


async def test_apply_leaves_the_start_to_the_refresh_that_follows(
    ctx: Context, standin: systemctl.StandIn
) -> None:
    spec = SystemdUnitSpec(name="app.service", content=APP, active=True, restart_on=["config"])
    triggered = ctx.bind("app", triggered=("config",))
    current = await LIVE.observe(triggered, spec)
    await LIVE.apply(triggered, spec, current)
    assert standin.runtime_calls() == ["daemon-reload"]  # no start: refresh follows
    assert await LIVE.refresh(triggered, spec, current) == "started"
    assert standin.runtime_calls() == ["daemon-reload", "restart app.service"]
    assert LIVE.diff(spec, await LIVE.observe(ctx, spec)).is_noop


async def test_refresh_of_an_unmanaged_active_state_restarts_only_a_running_unit(
    ctx: Context, standin: systemctl.StandIn
) -> None:
    spec = SystemdUnitSpec(name="app.service", content=APP, restart_on=["config"])
    await converge(ctx, spec)
    assert await LIVE.refresh(ctx, spec, await LIVE.observe(ctx, spec)) == (
        "not running, not restarted"
    )
    assert standin.units()["app.service"]["active"] == "inactive"
    standin.set_unit("app.service")
    assert await LIVE.refresh(ctx, spec, await LIVE.observe(ctx, spec)) == "restarted"
    assert standin.runtime_calls()[-1] == "try-restart app.service"


async def test_a_reload_the_manager_still_needs_is_done_even_when_files_match(
    ctx: Context, sandbox: Sandbox, standin: systemctl.StandIn
) -> None:
    spec = SystemdUnitSpec(name="app.service", content=APP, active=True)
    await converge(ctx, spec)
    # A run that wrote the file and died before its daemon-reload: the manager has the old one.
    sandbox.write(f"{UNITS}/app.service", b"[Service]\nExecStart=/usr/bin/old\n")
    standin.set_unit("app.service")  # loaded (and running) the old definition
    sandbox.write(f"{UNITS}/app.service", APP.encode())
    change = LIVE.diff(spec, await LIVE.observe(ctx, spec))
    assert [f.field for f in change.fields] == ["loaded"], change.describe()
    standin.forget_calls()
    await converge(ctx, spec)
    assert standin.runtime_calls() == ["daemon-reload", "restart app.service"]  # ran the old one
    app = standin.units()["app.service"]
    assert app["started_from"] == app["loaded"] and "/usr/bin/app" in app["loaded"]["text"]
    assert LIVE.diff(spec, await LIVE.observe(ctx, spec)).is_noop


async def test_a_failed_start_is_a_permanent_error_that_quotes_systemd(
    ctx: Context, standin: systemctl.StandIn
) -> None:
    spec = SystemdUnitSpec(name="app.service", content="[Service]\nExecStart=/bin/false\n",
                           active=True)  # fmt: skip
    with pytest.raises(errors.PermanentError, match=r"Job for app\.service failed"):
        await converge(ctx, spec)
    assert standin.units()["app.service"]["active"] == "failed"


async def test_an_unreachable_manager_is_a_transient_error(
    ctx: Context, standin: systemctl.StandIn
) -> None:
    standin.fault("show", "Failed to connect to bus: No such file or directory")
    with pytest.raises(errors.TransientError, match="Failed to connect to bus"):
        await LIVE.observe(ctx, SystemdUnitSpec(name="app.service", active=True))


NOT_BOOTED = (
    "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
    "Failed to connect to bus: Host is down"
)  # systemctl in a container or CI job, where systemd is not PID 1


async def test_a_system_not_booted_with_systemd_is_a_permanent_error(
    ctx: Context, standin: systemctl.StandIn
) -> None:
    standin.fault("show", NOT_BOOTED)
    with pytest.raises(errors.PermanentError, match="systemd is not running here"):
        await LIVE.observe(ctx, SystemdUnitSpec(name="app.service", active=True))


def test_the_running_state_is_managed_on_slash_only_where_systemd_runs(
    ctx: Context, tmp_path: Path
) -> None:
    slash = Context(roots=Roots(["/"]), state_dir=tmp_path, cache=ctx.cache)
    booted = SystemdUnitProvider(booted=lambda: True)
    assert booted.live(slash) and booted.offline(slash) == ""
    assert not booted.live(ctx)  # another root, systemd or not
    assert booted.offline(ctx) == f"root {ctx.roots.primary} is not the live system"
    not_booted = SystemdUnitProvider(booted=lambda: False)
    assert not not_booted.live(slash)
    assert not_booted.offline(slash) == "systemd is not running here, no /run/systemd/system"
    assert SystemdUnitProvider(runtime=True, booted=lambda: False).live(slash)  # a stand-in
    assert systemctl_calls.booted() == Path("/run/systemd/system").is_dir()


@NEEDS_SYSTEMCTL
async def test_on_slash_without_a_running_systemd_only_files_and_enablement_are_managed(
    ctx: Context, standin: systemctl.StandIn, tmp_path: Path
) -> None:
    """Image builds and containers: ``/`` is the root, but systemctl cannot reach a manager."""
    standin.fault("show", NOT_BOOTED, times=99)
    standin.fault("restart", NOT_BOOTED, times=99)
    slash = Context(roots=Roots(["/"]), state_dir=tmp_path, cache=ctx.cache).bind("app")
    provider = SystemdUnitProvider(booted=lambda: False)
    name = "accord-test-absent-0b7f.service"  # read only: nothing is written under /
    spec = SystemdUnitSpec(name=name, content=APP, enabled=True, active=True,
                           restart_on=["config"])  # fmt: skip
    current = await provider.observe(slash, spec)
    assert current.runtime is None and current.enabled == "not-found"
    change = provider.diff(spec, current)
    assert change.action is Action.CREATE
    assert [f.field for f in change.fields] == ["content", "enabled"]
    assert change.reason.endswith(
        "(running state not managed: systemd is not running here, no /run/systemd/system)"
    )
    assert provider.triggers(slash, spec) == ()  # the plan promises no restart
    assert await provider.refresh(slash, spec, current) == (
        "not restarted (systemd is not running here, no /run/systemd/system)"
    )
    assert all(any(a.startswith("--root=") for a in argv) for argv in standin.calls())


async def test_without_systemctl_the_error_says_what_to_install(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(errors.PermanentError, match="systemctl not found on PATH"):
        await LIVE.observe(ctx, SystemdUnitSpec(name="app.service", enabled=True))


async def test_files_alone_need_no_systemctl_under_another_root(
    ctx: Context, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    provider = SystemdUnitProvider()  # the root is a tmp dir: not the live system
    spec = SystemdUnitSpec(name="app.service", content=APP, dropins={"a.conf": LIMITS})
    await provider.apply(ctx, spec, await provider.observe(ctx, spec))
    assert (sandbox.root / UNITS / "app.service.d/a.conf").read_text() == LIMITS
    assert provider.triggers(ctx, spec.model_copy(update={"restart_on": ("x",)})) == ()


@NEEDS_SYSTEMCTL
async def test_a_unit_without_an_install_section_cannot_be_enabled(
    ctx: Context, sandbox: Sandbox, standin: systemctl.StandIn
) -> None:
    spec = SystemdUnitSpec(name="app.service", content="[Service]\nExecStart=/x\n", enabled=True)
    with pytest.raises(errors.PermanentError, match="cannot be enabled: is-enabled says 'static'"):
        await converge(ctx, spec)


@NEEDS_SYSTEMCTL
async def test_a_changed_install_section_is_followed(
    ctx: Context, sandbox: Sandbox, standin: systemctl.StandIn
) -> None:
    await converge(ctx, SystemdUnitSpec(name="app.service", content=APP, enabled=True))
    moved = APP.replace("multi-user.target", "graphical.target")
    await converge(ctx, SystemdUnitSpec(name="app.service", content=moved, enabled=True))
    assert not (sandbox.root / UNITS / "multi-user.target.wants/app.service").exists()
    assert (sandbox.root / UNITS / "graphical.target.wants/app.service").is_symlink()
