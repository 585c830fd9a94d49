"""Ctrl-C on the real CLI: the running step finishes, nothing new starts, the run is recorded."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

SLOW_STEP = "import time, pathlib; time.sleep(1.0); pathlib.Path('{name}').write_text('done')"


def command(name: str, after: str | None = None) -> str:
    deps = f", depends_on: [{after}]" if after else ""
    argv = json.dumps([sys.executable, "-c", SLOW_STEP.format(name=name)])
    return f"  - {{id: {name}, kind: Command, spec: {{argv: {argv}, creates: {name}}}{deps}}}\n"


def test_sigint_finishes_the_running_step_and_records_an_interrupted_run(
    tmp_path: Path, root: Path, state_dir: Path
) -> None:
    manifest = tmp_path / "slow.yaml"
    manifest.write_text(
        "metadata: {name: slow}\nresources:\n" + command("first") + command("second", "first")
    )
    where = ["--root", str(root), "--state-dir", str(state_dir), "--allow-commands", "--json"]
    process = subprocess.Popen(
        [sys.executable, "-m", "accord", "apply", str(manifest), *where],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (state_dir / "accord.db").exists():  # past start-up: the run is under way
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.4)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)

    assert process.returncode == 130, err.decode()
    assert b"finishing running steps" in err
    run = json.loads(out)["run"]
    assert run["state"] == "interrupted"
    assert run["counts"] == {"applied": 1, "interrupted": 1}
    assert (root / "first").read_text() == "done"  # the running step was allowed to finish
    assert not (root / "second").exists()  # and nothing new started

    rerun = subprocess.run(
        [sys.executable, "-m", "accord", "apply", str(manifest), *where],
        capture_output=True, timeout=60,
    )  # fmt: skip
    resumed = json.loads(rerun.stdout)["run"]
    assert rerun.returncode == 0 and resumed["resumes"] == run["run_id"]
    assert resumed["changed"] == 1 and (root / "second").read_text() == "done"
