"""Run a program for a provider: an argv, no shell, stdin closed, a timeout, output captured.

Each run is its own process group (a new session): a timeout or a cancellation kills the program
and all it started, then reaps it. Output comes through pipes of our own, whose ends we close
whatever happens, even when a process that escaped the group (``setsid``) still holds the other.
A run ends when the program has exited and its output has closed (a background process holding
the output holds the run until the timeout), or with ``linger``, that long after it exited.

Failing to start raises ``OSError``; a timeout is a result (``code`` None, with the output so
far): each provider words both, and classifies them, itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

OUTPUT_CAP = 64 * 1024
TAIL = 4 * 1024  # of the cap, kept from the end
CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Finished:
    """How a run ended."""

    code: int | None  # None: killed at the timeout; negative: killed by that signal
    stdout: str  # merged: stdout and stderr interleaved
    stderr: str = ""  # merged: empty


async def run(
    argv: Sequence[str],
    *,
    seconds: float | None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    merge: bool = False,
    cap: int | None = OUTPUT_CAP,
    linger: float | None = None,
) -> Finished:
    """Run ``argv`` in its own process group for at most ``seconds`` (see the module docstring).

    Args:
        argv: the program and its arguments; never run through a shell.
        seconds: until the group is killed; None waits as long as it takes.
        env: the whole environment; None inherits ours.
        cwd: where it runs; None is our own working directory.
        merge: stderr into stdout, interleaved as written; else each captured apart.
        cap: bytes kept of each stream: the head, the tail (where errors are printed), and a
            note of what was dropped between; None keeps everything.
        linger: seconds to keep reading after the program exited; None reads until EOF.

    Raises:
        OSError: it could not be started (not found, not executable, no such cwd).
    """
    pipes = [os.pipe() for _ in range(1 if merge else 2)]
    files = [os.fdopen(read_end, "rb", 0) for read_end, _ in pipes]
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=pipes[0][1],
            stderr=asyncio.subprocess.STDOUT if merge else pipes[1][1],
            env=env,
            cwd=cwd,
            start_new_session=True,  # its own process group, so a kill reaches its children too
        )
    except BaseException:
        for file in files:
            file.close()
        raise
    finally:
        for _, write_end in pipes:
            os.close(write_end)  # the child has its copy; EOF comes when every holder closes it
    captures = [_Capture(cap) for _ in files]
    reading = asyncio.gather(*map(_drain, files, captures))
    code: int | None = None  # stays None at a timeout and at a cancellation
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                exited = await process.wait()
                # Done when the output closes too, not when the leader exits: its children may
                # still be writing.
                await asyncio.wait({reading}, timeout=linger)
                code = exited
    finally:
        reading.cancel()
        if code is None:
            # Timed out or cancelled: kill the whole group, not only the leader, then reap.
            with contextlib.suppress(ProcessLookupError):  # the group is already gone
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        await asyncio.gather(reading, return_exceptions=True)
        for file in files:
            file.close()  # if its reader never started; else already closed
    return Finished(code, *(capture.text() for capture in captures))


async def _drain(file: IO[bytes], capture: _Capture) -> None:
    reader = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), file
    )
    try:
        while chunk := await reader.read(CHUNK):
            capture.feed(chunk)
    finally:
        transport.close()


class _Capture:
    """Output kept within ``cap`` bytes: the head, the tail, and a count of what is between."""

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self.head = bytearray()
        self.tail = b""
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = len(chunk) if self.cap is None else max(self.cap - TAIL - len(self.head), 0)
        self.head += chunk[:room]
        merged = self.tail + chunk[room:]
        self.dropped += max(len(merged) - TAIL, 0)
        self.tail = merged[-TAIL:]

    def text(self) -> str:
        text = self.head.decode(errors="replace")
        if self.dropped:
            text += f"\n[… {self.dropped} bytes of output dropped …]\n"
        return text + self.tail.decode(errors="replace")
