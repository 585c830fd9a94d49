"""The fleet's key names (see :mod:`accord.model.fleet` for what lives under them)."""

from __future__ import annotations

from accord.store.base import key_part


def desired_key(node: str) -> str:
    """The signed manifest envelope addressed to ``node``."""
    return f"fleet.desired.{key_part(node)}"


def sequence_key(node: str) -> str:
    """``node``'s publish counter: the last sequence taken for a change of its desired key
    (control plane only; agents never read it, and no node credential grants it)."""
    return f"fleet.sequence.{key_part(node)}"


def status_key(node: str) -> str:
    """``node``'s status, written by its agent."""
    return f"fleet.status.{key_part(node)}"


def manifest_key(name: str) -> str:
    """A manifest's versions."""
    return f"fleet.manifests.{key_part(name)}"


def assignment_key(name: str) -> str:
    """Which nodes (label selector) a manifest is assigned to."""
    return f"fleet.assignments.{key_part(name)}"
