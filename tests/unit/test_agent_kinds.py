"""The agent's kind allow-list."""

from __future__ import annotations

from accord.cli.agent import accepted_kinds


def test_the_agent_accepts_files_and_artifacts_or_the_kinds_named() -> None:
    assert accepted_kinds([], allow_commands=False) == {"File", "Directory", "Symlink", "Artifact"}
    named = accepted_kinds(["File", "Package"], allow_commands=True)
    assert named == {"File", "Package", "Command"}  # naming kinds replaces the default list
