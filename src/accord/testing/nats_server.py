"""A real ``nats-server`` with JetStream for tests: :mod:`accord.store.nats_server`, plus a skip.

Tests that cannot get a server call :func:`start_or_skip`, which skips them with the reason
instead of letting them pass.
"""

from __future__ import annotations

from accord.store.nats_server import (
    MAX_PAYLOAD,
    MIN_VERSION,
    NatsServer,
    NatsServerError,
    binary_version,
    find_binary,
    find_usable_binary,
)

__all__ = [
    "MAX_PAYLOAD",
    "MIN_VERSION",
    "NatsServer",
    "NatsServerError",
    "binary_version",
    "find_binary",
    "find_usable_binary",
    "start_or_skip",
]


def start_or_skip(server: NatsServer) -> NatsServer:
    """Start ``server`` for a test, or skip the test, saying why (never pass it)."""
    import pytest  # only tests call this

    try:
        return server.start()
    except NatsServerError as exc:
        pytest.skip(f"NATS tests SKIPPED, no usable nats-server: {exc}")
