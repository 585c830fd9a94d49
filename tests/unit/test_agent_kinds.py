"""The agent's kind allow-list."""

from __future__ import annotations

from accord.cli.agent import accepted_kinds


def test_the_agent_accepts_files_and_artifacts_and_opted_in_kinds() -> None:
    assert accepted_kinds([], allow_commands=False) == {"File", "Directory", "Symlink", "Artifact"}
    extra = accepted_kinds(["Package", "Container"], allow_commands=True)
    assert extra == {"File", "Directory", "Symlink", "Artifact", "Package", "Container", "Command"}
