"""Running a command: asyncio, Ctrl-C, and the mapping from errors to exit codes.

Exit codes: 0 converged, 1 a resource failed (or the run could not proceed), 2 bad input,
130 interrupted by Ctrl-C. The first Ctrl-C lets running steps finish and starts nothing new;
the second cancels them.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

import typer

from accord import errors

OK, FAILED, BAD_INPUT, INTERRUPTED = 0, 1, 2, 130


def run(main: Callable[[asyncio.Event], Coroutine[Any, Any, int]]) -> NoReturn:
    """Run ``main(stop)`` and exit with its code; errors become messages and exit codes."""
    try:
        code = asyncio.run(_with_signals(main))
    except errors.InputError as exc:
        _error(str(exc))
        code = BAD_INPUT
    except errors.AccordError as exc:
        _error(str(exc))
        code = FAILED
    except KeyboardInterrupt:
        code = INTERRUPTED
    raise typer.Exit(code)


async def _with_signals(main: Callable[[asyncio.Event], Coroutine[Any, Any, int]]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def interrupt() -> None:
        if stop.is_set() and task is not None:
            task.cancel()  # second Ctrl-C: stop now
            return
        stop.set()
        print("\ninterrupted: finishing running steps (Ctrl-C again to stop now)", file=sys.stderr)

    loop.add_signal_handler(signal.SIGINT, interrupt)
    loop.add_signal_handler(signal.SIGTERM, interrupt)
    try:
        return await main(stop)
    except asyncio.CancelledError:
        return INTERRUPTED
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)


def fail(exc: errors.AccordError) -> NoReturn:
    """Report an error from a command that runs no event loop, with the right exit code."""
    _error(str(exc))
    raise typer.Exit(BAD_INPUT if isinstance(exc, errors.InputError) else FAILED)


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
