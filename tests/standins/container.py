"""Set up and read the recording stand-in of the container CLIs (``container_cli``).

A test makes a :class:`StandIn` in a directory of its own, publishes images to its fake
registry, puts ``install()``'s shims first on ``PATH``, and afterwards reads the argv log and
the containers the provider left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from standins import container_cli

SCRIPT = Path(container_cli.__file__).resolve()


class StandIn:
    """One stand-in engine in ``directory``: its state, its log, its shims."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def log_path(self) -> Path:
        return self.directory / "log.jsonl"

    def install(self, *flavors: str) -> Path:
        """Write one shim per flavour (``docker``, ``podman``) into ``bin/``; returns that
        directory, to be put first on ``PATH``."""
        bin_dir = self.directory / "bin"
        bin_dir.mkdir(exist_ok=True)
        for flavor in flavors:
            shim = bin_dir / flavor
            # A Python script itself (no shell in between) that imports the stand-in, so its
            # bytecode is cached: every call starts a Python, and this halves what it costs.
            where, state = str(SCRIPT.parent), str(self.directory)
            shim.write_text(
                f"#!{sys.executable} -IS\nimport sys\nsys.path.insert(0, {where!r})\n"
                "import container_cli\n"
                f"sys.exit(container_cli.main([{flavor!r}, {state!r}, *sys.argv[1:]]))\n"
            )
            shim.chmod(0o755)
        return bin_dir

    def load(self) -> dict[str, Any]:
        return container_cli.load(str(self.directory))

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        with open(self.directory / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.load()
            yield state
            container_cli.save(str(self.directory), state)

    def publish(
        self,
        reference: str,
        *,
        env: Sequence[str] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
        cmd: Sequence[str] = ("/bin/sh",),
        entrypoint: Sequence[str] | None = None,
    ) -> str:
        """Put an image into the fake registry under ``reference``; returns its id (hex). Another
        call for the same reference is a push to a moving tag: a new image."""
        with self.edit() as state:
            serial = state.setdefault("pushes", 0) + 1
            state["pushes"] = serial
            digest = hashlib.sha256(f"{reference}#{serial}".encode()).hexdigest()
            image_id = hashlib.sha256(f"config-{digest}".encode()).hexdigest()
            name = reference.split("@")[0]
            repo = name.rsplit(":", 1)[0] if ":" in name.split("/")[-1] else name
            state["registry"][reference] = {
                "id": image_id,
                "digest": f"sha256:{digest}",
                "tags": [] if "@" in reference else [reference],
                "repo": repo,
                "env": list(env),
                "cmd": list(cmd),
                "entrypoint": None if entrypoint is None else list(entrypoint),
            }
        return image_id

    def set(self, **flags: bool) -> None:
        """``offline``: the registry cannot be reached; ``down``: the engine does not answer."""
        with self.edit() as state:
            state.update(flags)

    def calls(self) -> list[list[str]]:
        """Every argv so far (without the program's name)."""
        if not self.log_path.exists():
            return []
        return [json.loads(line)["argv"] for line in self.log_path.read_text().splitlines()]

    def commands(self) -> list[str]:
        """The verb of each call so far: ``container inspect``, ``pull``, ``create``, …"""
        return [_verb(argv) for argv in self.calls()]

    def forget_calls(self) -> None:
        self.log_path.unlink(missing_ok=True)

    def containers(self) -> dict[str, dict[str, Any]]:
        """Name → the stand-in's record of that container."""
        return {c["name"]: c for c in self.load()["containers"].values()}

    def images(self) -> dict[str, dict[str, Any]]:
        """Reference → the local image it names."""
        return dict(self.load()["images"])

    def cli(self, flavor: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the stand-in as the CLI, as an operator would type it (recorded too)."""
        return subprocess.run(
            [sys.executable, "-I", "-S", str(SCRIPT), flavor, str(self.directory), *args],
            capture_output=True,
            text=True,
            check=False,
        )


def _verb(argv: Sequence[str]) -> str:
    if argv[:1] in (["container"], ["image"]):
        return " ".join(argv[:2])
    return argv[0] if argv else ""
