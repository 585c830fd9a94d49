"""Fixtures for integration tests: real servers on 127.0.0.1, started and stopped per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from http_server import BlobServer


@pytest.fixture
def http_server() -> Iterator[BlobServer]:
    """A real HTTP server serving in-memory blobs, with scripted faults (see ``http_server``)."""
    with BlobServer() as server:
        yield server
