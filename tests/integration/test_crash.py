"""kill -9 the real CLI at random moments during apply, then run it again.

Every trial checks what "crashes lose nothing" means here: no file is ever torn (each managed
file holds either its old or its new content, whole), the re-run converges with no debris left,
and the journal keeps the killed run, marked crashed, with the re-run recorded as resuming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

TRIALS = 20
FILES = 120
OLD = b"old content\n" * 2000  # ~24 KB: big enough that a torn write would show
pytestmark = pytest.mark.timeout(300)
APPLIED = "SELECT count(*) FROM events WHERE stream = 'journal' AND instr(data, '\"applied\"') > 0"


def new_content(i: int) -> bytes:
    return f"file {i} generation 2\n".encode() * 1500


def write_manifest(path: Path) -> None:
    resources: list[dict[str, object]] = [
        {"id": f"d{j}", "kind": "Directory", "spec": {"path": f"d{j}"}} for j in range(4)
    ]
    resources += [
        {"id": f"f{i}", "kind": "File", "depends_on": [f"d{i % 4}"],
         "spec": {"path": f"d{i % 4}/f{i}", "content": new_content(i).decode(), "mode": "0640"}}
        for i in range(FILES)
    ]  # fmt: skip
    path.write_text(json.dumps({"metadata": {"name": "crash"}, "resources": resources}))


def prepare_root(root: Path) -> None:
    """Half the files exist with old content: the kill can land on a replacement."""
    for j in range(4):
        (root / f"d{j}").mkdir(parents=True, exist_ok=True)
    for i in range(0, FILES, 2):
        (root / f"d{i % 4}/f{i}").write_bytes(OLD)


def accord(
    manifest: Path, root: Path, state: Path, *, capture: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``accord apply``; without ``capture`` its output goes nowhere (a full pipe blocks)."""
    command = [sys.executable, "-m", "accord", "apply", str(manifest), "--root", str(root),
               "--state-dir", str(state), "--json"]  # fmt: skip
    sink = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(command, stdout=sink, stderr=sink)


def wait_for_applied(state: Path, count: int, process: subprocess.Popen[bytes]) -> None:
    """Return once the run has journaled ``count`` applied resources (or has ended)."""
    deadline = time.monotonic() + 120
    while process.poll() is None:
        assert time.monotonic() < deadline, "the apply made no progress"
        if (state / "accord.db").exists():
            with contextlib.closing(
                sqlite3.connect(f"file:{state / 'accord.db'}?mode=ro", uri=True)
            ) as db:
                try:
                    (done,) = db.execute(APPLIED).fetchone()
                except sqlite3.OperationalError:  # schema not created yet, or busy
                    done = 0
            if done >= count:
                return
        time.sleep(0.001)


def history(state: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "accord", "history", "--state-dir", str(state), "--json"],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    runs: list[dict[str, object]] = json.loads(done.stdout)
    return runs


def assert_no_torn_files(root: Path) -> None:
    allowed = {hashlib.sha256(OLD).hexdigest()} | {
        hashlib.sha256(new_content(i)).hexdigest() for i in range(FILES)
    }
    for path in root.rglob("f*"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest in allowed, f"{path} is torn ({path.stat().st_size} bytes)"


def test_sigkill_at_random_moments_then_rerun_converges(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    write_manifest(manifest)

    rng = random.Random(20261122)
    crashed_runs = 0
    for trial in range(TRIALS):
        root, state = tmp_path / f"root{trial}", tmp_path / f"state{trial}"
        prepare_root(root)
        process = accord(manifest, root, state)
        # Kill after a random number of resources were applied: progress, not time, decides
        # where the kill lands, so it lands mid-apply however loaded the machine is.
        wait_for_applied(state, rng.randrange(0, FILES), process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert_no_torn_files(root)

        rerun = accord(manifest, root, state, capture=True)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, f"trial {trial}: {err.decode()}"
        assert json.loads(out)["run"]["state"] == "succeeded"
        for i in range(FILES):
            path = root / f"d{i % 4}/f{i}"
            assert path.read_bytes() == new_content(i), f"trial {trial}: {path}"
            assert path.stat().st_mode & 0o777 == 0o640
        debris = [p.name for p in root.rglob(".accord-*")]
        assert debris == [], f"trial {trial}: temp files left behind: {debris}"

        runs = history(state)
        if len(runs) == 1:  # killed before its run record was written
            assert runs[0]["state"] == "succeeded"
            continue
        killed, rerun_record = runs
        if killed["state"] == "succeeded":  # the kill came after the run had finished
            assert rerun_record["resumes"] is None and rerun_record["changed"] == 0
            continue
        assert killed["state"] == "crashed", f"trial {trial}: {killed}"
        assert rerun_record["resumes"] == killed["run_id"]  # kept, marked, and resumed
        crashed_runs += 1
    # Most kills must land mid-run, or this test proves little.
    assert crashed_runs >= TRIALS // 2, f"only {crashed_runs} of {TRIALS} kills landed mid-run"
