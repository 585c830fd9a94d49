"""Retries with exponential backoff and full jitter, for transient failures only."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from accord import errors

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` counts the first try. Delay before retry n: U(0, min(cap, base·2ⁿ))."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 30.0

    def delay(self, retry: int, *, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(self.cap, retry_after)
        return random.uniform(0, min(self.cap, self.base * 2**retry))


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[int, errors.TransientError, float], Awaitable[None]] | None = None,
) -> tuple[T, int]:
    """Run ``call`` until it succeeds, fails permanently or runs out of attempts.

    Returns the result and the number of attempts made. ``TransientError`` is retried; every
    other exception propagates at once.
    """
    attempt = 1
    while True:
        try:
            return await call(), attempt
        except errors.TransientError as exc:
            if attempt >= policy.attempts:
                raise
            pause = policy.delay(attempt - 1, retry_after=exc.retry_after)
            if on_retry is not None:
                await on_retry(attempt, exc, pause)
            await asyncio.sleep(pause)
            attempt += 1
