import pytest

from accord import errors
from accord.engine.retry import RetryPolicy, retrying

FAST = RetryPolicy(attempts=4, base=0.001, cap=0.002)


async def test_transient_errors_are_retried_until_success() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise errors.TransientError("busy")
        return "done"

    seen: list[int] = []

    async def on_retry(attempt: int, exc: errors.TransientError, pause: float) -> None:
        seen.append(attempt)

    assert await retrying(flaky, FAST, on_retry=on_retry) == ("done", 3)
    assert seen == [1, 2]


async def test_permanent_errors_are_not_retried() -> None:
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise errors.PermanentError("no")

    with pytest.raises(errors.PermanentError):
        await retrying(broken, FAST)
    assert calls == 1


async def test_gives_up_after_the_last_attempt() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise errors.TransientError("down")

    with pytest.raises(errors.TransientError):
        await retrying(down, FAST)
    assert calls == 4


def test_delay_is_jittered_within_the_exponential_bound_and_honours_retry_after() -> None:
    policy = RetryPolicy(base=1.0, cap=10.0)
    delays = [policy.delay(3) for _ in range(200)]
    assert all(0 <= d <= 8.0 for d in delays) and len(set(delays)) > 100
    assert all(policy.delay(30) <= 10.0 for _ in range(50))
    assert policy.delay(0, retry_after=2.5) == 2.5
    assert policy.delay(0, retry_after=99) == 10.0
