"""``SystemdUnit`` against a real, running systemd, on ``/``: marked ``systemd``.

It installs a throwaway ``accord-test-*.service`` (``sleep infinity``) with its config file in
``/etc``, restarts it through ``restart_on``, then prunes it, and cleans up after a failure too.
Hosts without a running systemd (containers, CI runners: no ``/run/systemd/system``) or without
root skip it, saying why. Run only it with ``uv run pytest -m systemd``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accord.engine.converge import Options
from accord.engine.local import LocalSession
from accord.model.status import Phase, RunRecord, RunState
from helpers import build_manifest, file

pytestmark = [
    pytest.mark.systemd,
    pytest.mark.skipif(
        not Path("/run/systemd/system").is_dir(),
        reason="no running systemd here (/run/systemd/system is absent)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="installing a systemd unit needs root"),
]


@pytest.fixture
def name() -> Iterator[str]:
    unit = f"accord-test-{secrets.token_hex(4)}"
    yield unit
    # Whatever happened, leave no unit behind.
    subprocess.run(["systemctl", "disable", "--now", f"{unit}.service"], capture_output=True)
    for leftover in (f"/etc/systemd/system/{unit}.service", f"/etc/{unit}.conf"):
        Path(leftover).unlink(missing_ok=True)
    subprocess.run(["systemctl", "daemon-reload"], capture_output=True)


def resources(name: str, port: int) -> list[dict[str, Any]]:
    unit = (
        f"[Unit]\nDescription=accord live test\n[Service]\nExecStart=/bin/sleep infinity\n"
        f"EnvironmentFile=/etc/{name}.conf\n[Install]\nWantedBy=multi-user.target\n"
    )
    return [
        file("config", f"/etc/{name}.conf", f"PORT={port}\n"),
        {"id": "unit", "kind": "SystemdUnit",
         "spec": {"name": f"{name}.service", "content": unit, "enabled": True, "active": True,
                  "restart_on": ["config"]}},
    ]  # fmt: skip


def main_pid(name: str) -> int:
    shown = subprocess.run(
        ["systemctl", "show", "-p", "MainPID", "--value", f"{name}.service"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(shown.stdout.strip())


async def converge(items: list[dict[str, Any]], state_dir: Path) -> RunRecord:
    async with LocalSession(roots=["/"], state_dir=state_dir) as session:
        _, record = await session.converge(
            build_manifest(items), base_dir=state_dir, options=Options()
        )
    return record


async def test_a_real_unit_is_installed_restarted_on_its_config_and_pruned(
    name: str, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    record = await converge(resources(name, 80), state_dir)
    assert record.state is RunState.SUCCEEDED, record.resources
    first = main_pid(name)
    assert first > 0
    assert Path(f"/etc/systemd/system/multi-user.target.wants/{name}.service").is_symlink()

    record = await converge(resources(name, 80), state_dir)
    assert record.changed == 0 and main_pid(name) == first  # nothing changed: not restarted

    record = await converge(resources(name, 81), state_dir)
    unit = next(r for r in record.resources if r.id == "unit")
    assert unit.reason == "restarted: 'config' changed"
    assert unit.details["active"] == "active"
    assert main_pid(name) not in (0, first)

    record = await converge([], state_dir)  # prune: stopped, disabled, files removed
    assert record.state is RunState.SUCCEEDED
    assert {p.phase for p in record.resources} == {Phase.PRUNED}
    assert not Path(f"/etc/systemd/system/{name}.service").exists()
    assert main_pid(name) == 0
