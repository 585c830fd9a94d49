"""``process.run`` directly: streams kept apart, ``linger``, and a cancellation killing the group.

The providers' own tests cover the rest through it: merged output and its cap, failing to start,
and timeouts killing the whole group (``test_command``, ``test_container``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from accord.providers import process
from helpers import gone


async def test_stdout_and_stderr_apart_and_the_exit_code() -> None:
    done = await process.run(["sh", "-c", "echo out; echo err >&2; exit 3"], seconds=5)

    assert done == process.Finished(3, "out\n", "err\n")


async def test_linger_ends_the_run_soon_after_exit_though_a_child_holds_the_output(
    tmp_path: Path,
) -> None:
    script = f"sleep 60 & echo $! > {tmp_path / 'child.pid'}; echo started"
    started = time.monotonic()

    done = await process.run(["sh", "-c", script], seconds=30, merge=True, linger=0.2)

    assert done == process.Finished(0, "started\n")
    assert time.monotonic() - started < 5
    child = int((tmp_path / "child.pid").read_text())
    assert not gone(child, wait=0.1)  # the program finished: what it left running is its own
    os.kill(child, signal.SIGKILL)


async def test_a_cancelled_run_kills_the_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    running = asyncio.ensure_future(process.run(["sh", "-c", script], seconds=30))
    for _ in range(250):  # at most 5 s for the shell to start its child
        if pid_file.exists() and pid_file.read_text():
            break
        await asyncio.sleep(0.02)

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    assert gone(int(pid_file.read_text()))
