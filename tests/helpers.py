"""Helpers for tests: manifests from plain dicts; whether a process is gone; file edits."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from accord.model.loading import parse_manifest
from accord.model.manifest import Manifest
from accord.providers import registry as registry_module
from accord.providers.registry import Registry


def build_manifest(
    resources: list[dict[str, Any]], *, name: str = "test", generation: int = 1,
    registry: Registry | None = None,
) -> Manifest:  # fmt: skip
    """A validated manifest from plain dicts, as if loaded from a file."""
    document = {"metadata": {"name": name, "generation": generation}, "resources": resources}
    kinds = (registry or registry_module.default()).kinds()
    return parse_manifest(json.dumps(document), source=f"{name}.json", kinds=kinds)


def file(rid: str, path: str, content: str, **spec: Any) -> dict[str, Any]:
    deps = spec.pop("depends_on", [])
    return {"id": rid, "kind": "File", "spec": {"path": path, "content": content, **spec},
            "depends_on": deps}  # fmt: skip


def fake_resource(
    key: str, value: str = "v", *, depends_on: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A resource of the fake kind (``accord.testing.fakes``); its id is its key."""
    return {"id": key, "kind": "Fake", "spec": {"key": key, "value": value},
            "depends_on": list(depends_on)}  # fmt: skip


def gone(pid: int, wait: float = 2.0) -> bool:
    """Whether ``pid`` has died within ``wait`` seconds (a zombie awaiting its reaper counts)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def edit_in_place(path: str | os.PathLike[str], data: bytes = b"X") -> None:
    """Overwrite the first bytes of a file, keeping its inode, size and mtime (not its ctime)."""
    before = os.stat(path)
    with open(path, "r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
