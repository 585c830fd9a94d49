"""A flow run by ``accord flow run`` in its own process receives a signal sent over the API.

The flow process and the control plane (real uvicorn) share nothing but the SQLite file: the
signal is a key the control plane writes and the run's watch sees.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.server_harness import LiveServer

pytestmark = pytest.mark.timeout(60)

FLOW = """\
name: approval
params: {node: null}
linear: true
tasks:
  - {id: approve, task: wait_signal, with: {name: approve}}
  - {id: nap, task: sleep, with: {seconds: 0.01}}
"""


def wait_until_waiting(client: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        found: dict[str, Any] = client.get(f"/api/v1/flows/{run_id}").json()
        if found["run"]["state"] == "waiting":
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.02)


def test_a_signal_sent_over_the_api_reaches_a_flow_running_in_another_process(
    tmp_path: Path,
) -> None:
    (tmp_path / "approval.yaml").write_text(FLOW)
    with LiveServer.start(tmp_path) as server:
        operator = server.issue("operator", "olga")
        command = [
            sys.executable, "-m", "accord", "flow", "run", str(tmp_path / "approval.yaml"),
            "--node", "edge-1", "--store", f"sqlite:///{server.db}",
            "--state-dir", str(tmp_path / "device"), "--root", str(tmp_path),
        ]  # fmt: skip
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            try:
                assert proc.stdout is not None
                run_id = proc.stdout.readline().strip()
                assert run_id, proc.stderr.read() if proc.stderr else ""
                with server.client(operator) as olga:
                    found = wait_until_waiting(olga, run_id)
                    assert found["running_here"] is False  # the other process runs it
                    assert found["run"]["node"] == "edge-1"
                    sent = olga.post(
                        f"/api/v1/flows/{run_id}/signals",
                        json={"name": "approve", "data": {"ticket": "CHG-7"}},
                    )
                    assert sent.status_code == 201, sent.text
                    out, err = proc.communicate(timeout=30)
                    done = olga.get(f"/api/v1/flows/{run_id}").json()
            finally:
                if proc.poll() is None:
                    proc.kill()
    assert proc.returncode == 0, err
    assert out.strip().endswith(f"{run_id} succeeded")
    assert done["run"]["state"] == "succeeded"
    assert done["tasks"][0]["result"] == {"signal": "approve", "data": {"ticket": "CHG-7"}}
