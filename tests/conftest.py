"""Shared fixtures: real state dirs and roots under tmp_path, manifests built from dicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.providers.registry import Registry
from accord.testing.fakes import FakeProvider


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def registry(fake: FakeProvider) -> Registry:
    """Every installed provider plus the fake."""
    found = Registry.from_entry_points()
    found.register(fake)
    return found
