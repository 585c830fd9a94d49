"""``Command``: real subprocesses in a tmp root — guards, policy, output, failures, timeouts."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from accord import errors
from accord.model.manifest import ResourceId
from accord.model.plan import Action
from accord.model.specs import CommandSpec
from accord.providers.base import Context
from accord.providers.cache import Cache
from accord.providers.command import CommandProvider, CommandState
from accord.providers.paths import Roots
from accord.providers.process import OUTPUT_CAP
from helpers import gone

PY = sys.executable
provider = CommandProvider()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
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
        base_dir=tmp_path,
        allow_commands=True,
        resource_id=ResourceId("cmd"),
        output=outputs.append,
    )


def spec(*argv: str, **fields: object) -> CommandSpec:
    return CommandSpec.model_validate({"argv": list(argv), **fields})


def py(code: str) -> list[str]:
    return [PY, "-c", code]


async def test_refused_without_allow_commands(ctx: Context, root: Path) -> None:
    denied = dataclasses.replace(ctx, allow_commands=False)
    touch = spec(*py("open('ran', 'w')"))

    with pytest.raises(errors.PolicyError, match=r"'cmd'.*--allow-commands"):
        await provider.observe(denied, touch)
    with pytest.raises(errors.PolicyError):
        await provider.apply(denied, touch, None)
    assert not (root / "ran").exists()


async def test_no_guard_runs_on_every_apply(ctx: Context) -> None:
    always = spec("true")

    change = provider.diff(always, await provider.observe(ctx, always))

    assert change.action is Action.CREATE
    assert change.reason == "no creates/unless guard: runs on every apply"


async def test_creates_guard(ctx: Context, root: Path) -> None:
    make = spec(*py("open('made', 'w').write('x')"), creates="made")

    before = provider.diff(make, await provider.observe(ctx, make))
    assert before.action is Action.CREATE
    assert before.reason == f"creates {root / 'made'} is absent"

    await provider.apply(ctx, make, None)

    assert (root / "made").read_text() == "x"
    after = provider.diff(make, await provider.observe(ctx, make))
    assert after.is_noop
    assert after.reason == f"creates {root / 'made'} exists"


async def test_creates_not_created_after_exit_0_is_permanent(ctx: Context, root: Path) -> None:
    made = re.escape(str(root / "made"))
    with pytest.raises(errors.PermanentError, match=f"exited 0 but did not create {made}$"):
        await provider.apply(ctx, spec("true", creates="made"), None)


async def test_unless_guard_exit_0_is_noop(ctx: Context, root: Path) -> None:
    (root / "marker").touch()
    # Runs in the root (the default cwd), so a relative test finds the marker.
    guarded = spec("false", unless=["test", "-f", "marker"])

    change = provider.diff(guarded, await provider.observe(ctx, guarded))

    assert change.is_noop
    assert change.reason == "unless `test -f marker` exited 0"


async def test_unless_guard_nonzero_runs(ctx: Context) -> None:
    guarded = spec("true", unless=py("raise SystemExit(3)"), creates="absent")

    change = provider.diff(guarded, await provider.observe(ctx, guarded))

    assert change.action is Action.CREATE
    assert "is absent; unless `" in change.reason
    assert change.reason.endswith("exited 3")


def test_diff_is_pure_over_states() -> None:
    guarded = spec("true", creates="/x", unless=["test", "-f", "y"])

    assert provider.diff(guarded, CommandState("/r/x", creates_exists=True)).reason == (
        "creates /r/x exists"
    )
    assert provider.diff(guarded, CommandState("/r/x", unless_exit=0)).is_noop
    unobserved = provider.diff(guarded, None)
    assert unobserved.action is Action.CREATE
    assert unobserved.reason == "creates /x is absent; unless `test -f y` was not run"


async def test_env_cwd_and_interleaved_output(ctx: Context, root: Path, outputs: list[str]) -> None:
    (root / "sub").mkdir()
    code = (
        "import os, sys\n"
        "print('out', os.getcwd(), os.environ['GREETING'], 'PATH' in os.environ, flush=True)\n"
        "print('err', file=sys.stderr, flush=True)\n"
        "print('out again', flush=True)\n"
    )

    await provider.apply(ctx, spec(*py(code), env={"GREETING": "hi"}, cwd="sub"), None)

    assert outputs == [f"out {root / 'sub'} hi True\nerr\nout again\n"]


async def test_output_is_capped_keeping_head_and_tail(ctx: Context, outputs: list[str]) -> None:
    code = "import sys; sys.stdout.write('HEAD' + 'x' * 200_000 + 'TAIL')"

    await provider.apply(ctx, spec(*py(code)), None)

    [text] = outputs
    head, note, tail = text.split("\n")
    assert head == "HEAD" + "x" * (len(head) - 4)
    assert tail == "x" * (len(tail) - 4) + "TAIL"
    assert len(head) + len(tail) == OUTPUT_CAP
    assert note == f"[… {200_008 - OUTPUT_CAP} bytes of output dropped …]"


async def test_nonzero_exit_is_permanent_with_code_and_tail(
    ctx: Context, outputs: list[str]
) -> None:
    code = "import sys; print('working'); print('disk on fire', file=sys.stderr); sys.exit(3)"

    with pytest.raises(errors.PermanentError, match=r"exited 3:\nworking\ndisk on fire$"):
        await provider.apply(ctx, spec(*py(code)), None)
    assert outputs == ["working\ndisk on fire\n"]


async def test_missing_program_is_permanent(ctx: Context) -> None:
    with pytest.raises(errors.PermanentError, match="cannot start"):
        await provider.apply(ctx, spec("/nonexistent/program"), None)


async def test_cwd_outside_roots_is_refused(ctx: Context) -> None:
    with pytest.raises(errors.PathEscapeError):
        await provider.apply(ctx, spec("true", cwd="/"), None)


async def test_timeout_kills_the_whole_process_group(
    ctx: Context, root: Path, outputs: list[str]
) -> None:
    # The shell starts a grandchild that would outlive a kill of the shell alone.
    script = "sleep 60 & echo $! > child.pid; echo started; wait"
    started = time.monotonic()

    with pytest.raises(errors.PermanentError, match=r"timed out after 0\.5 s and was killed"):
        await provider.apply(ctx, spec("sh", "-c", script, timeout=0.5), None)

    assert time.monotonic() - started < 5
    assert outputs == ["started\n"]  # what it printed before the timeout is kept
    child = int((root / "child.pid").read_text())
    assert gone(child)


async def test_timeout_with_an_escaped_holder_of_stdout(
    ctx: Context, root: Path, outputs: list[str]
) -> None:
    # A process in its own session keeps the output pipe open and survives the group kill; the
    # run must still end at the timeout and release the pipe.
    script = "setsid sh -c 'echo $$ > escaped.pid; exec sleep 30' & echo started"
    started = time.monotonic()
    try:
        with pytest.raises(errors.PermanentError, match="timed out"):
            await provider.apply(ctx, spec("sh", "-c", script, timeout=0.5), None)
        assert time.monotonic() - started < 5
        assert outputs == ["started\n"]
    finally:
        pid_file = root / "escaped.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


async def test_unless_timeout_is_permanent(ctx: Context) -> None:
    hung = spec("true", unless=["sleep", "60"], timeout=0.2)

    with pytest.raises(errors.PermanentError, match="`sleep 60` timed out"):
        await provider.observe(ctx, hung)


async def test_snapshot_and_delete_do_nothing(ctx: Context, root: Path) -> None:
    made = spec(*py("open('made', 'w')"), creates="made")
    (root / "made").touch()

    assert await provider.snapshot(ctx, made, None) is None
    assert await provider.delete(ctx, made, None) == "commands are not undone"
    assert (root / "made").exists()
    assert CommandProvider.reversible is False
