"""Shared by the benchmark scripts: bench manifests, timed child processes, the machine, tables.

A child process is timed from just before ``Popen`` to just after ``os.wait4`` returns, so
the figure is whole-process wall time (interpreter start, imports, work, exit). ``wait4`` also
hands back the child's own resource usage, whose ``ru_maxrss`` is that child's peak resident
set; ``RUSAGE_CHILDREN`` would instead report the largest child seen so far.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DOCS_DIR = REPO / "docs"
DIRECTORIES = 20


@dataclass(frozen=True, slots=True)
class ChildRun:
    """One finished (or killed) child process."""

    seconds: float
    peak_rss_mb: float
    returncode: int
    timed_out: bool
    stdout: bytes
    stderr: bytes


def content(i: int) -> str:
    """The ~100-byte content of file ``i``: distinct per file, 100 bytes with the newline."""
    line = f"file {i:06d} of the accord benchmark; "
    return (line * 4)[:99] + "\n"


def file_path(i: int) -> str:
    return f"d{i % DIRECTORIES:02d}/f{i:06d}.txt"


def make_manifest(n: int, *, name: str = "bench") -> dict[str, Any]:
    """``n`` File resources spread over 20 Directory resources; each file depends on its dir.

    Directories come first, so a loop over the resources in order meets every dependency
    before its dependents (the raw baseline relies on this).
    """
    resources: list[dict[str, Any]] = [
        {"id": f"d{d:02d}", "kind": "Directory", "spec": {"path": f"d{d:02d}", "mode": "0755"}}
        for d in range(DIRECTORIES)
    ]
    resources += [
        {
            "id": f"f{i:06d}",
            "kind": "File",
            "spec": {"path": file_path(i), "content": content(i), "mode": "0644"},
            "depends_on": [f"d{i % DIRECTORIES:02d}"],
        }
        for i in range(n)
    ]
    return {
        "api_version": "accord/v1",
        "metadata": {"name": name, "generation": 1},
        "resources": resources,
    }


def write_manifest(path: Path, n: int) -> Path:
    path.write_text(json.dumps(make_manifest(n), separators=(",", ":")))
    return path


def run_child(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
) -> ChildRun:
    """Run ``argv`` to completion (or kill it after ``timeout`` s); time it and read its peak RSS.

    Output goes to unlinked temporary files, not pipes, so a chatty child never blocks on a full
    pipe and the parent does no work while the child runs.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        killed = threading.Event()
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)

        def kill() -> None:
            killed.set()
            child.kill()

        killer = threading.Timer(timeout, kill)
        killer.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)
            elapsed = time.perf_counter() - started
        finally:
            killer.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return ChildRun(
            seconds=elapsed,
            peak_rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
            returncode=child.returncode,
            timed_out=killed.is_set(),
            stdout=out.read(),
            stderr=err.read(),
        )


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "revision": revision(),
    }


def revision() -> str:
    """The commit measured, and which files under src/ differed from it (others edit there)."""
    try:
        head = _git("rev-parse", "--short", "HEAD").strip()
        dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "src").splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    changed = [line[3:] for line in dirty]
    return head + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
    return done.stdout


def describe(info: dict[str, str]) -> str:
    return (
        f"machine: {info['cpus']} CPUs, {info['cpu']}, Python {info['python']}, "
        f"load average {info['load_average']}\nsource: {info['revision']}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, right-aligned numbers, usable as-is in Markdown."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def save_results(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results written to {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
