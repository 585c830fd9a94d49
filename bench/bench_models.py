"""Drift checks over a large model: a no-op converge of one big ``Artifact``, repeated.

An agent re-observes its manifest every ``--drift-interval`` (60 s by default). With a 1 GiB
model that used to mean hashing 1 GiB each time. The first no-op run in a process still hashes
it (a new process verifies everything once); later ones in the same process use the digest
memo (:mod:`accord.providers.digests`) while ``lstat`` shows the file unchanged.
The baseline is a raw-Python sha256 of the same file: what every check cost before.

Run: ``uv run --frozen python bench/bench_models.py [--mib 1024] [--checks 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from accord.engine.converge import Options
from accord.engine.local import LocalSession
from accord.model.loading import parse_manifest
from accord.model.manifest import Manifest
from accord.providers import registry


def make_model(path: Path, mib: int) -> str:
    """Write ``mib`` MiB of incompressible bytes; return their sha256."""
    hasher = hashlib.sha256()
    with open(path, "wb") as out:
        for _ in range(mib):
            chunk = os.urandom(1 << 20)
            hasher.update(chunk)
            out.write(chunk)
    return hasher.hexdigest()


def raw_sha256(path: Path) -> float:
    started = time.perf_counter()
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return time.perf_counter() - started


async def checks(manifest: Manifest, root: Path, state: Path, count: int) -> list[float]:
    """The placing run, then ``count`` no-op runs in this process: their durations."""
    times = []
    async with LocalSession(roots=[root], state_dir=state) as session:
        await session.converge(manifest, base_dir=root, options=Options())
        await asyncio.sleep(2.1)  # past the memo's racy window for the file just placed
        for _ in range(count):
            started = time.perf_counter()
            _, record = await session.converge(manifest, base_dir=root, options=Options())
            times.append(time.perf_counter() - started)
            assert record.changed == 0, "a no-op run changed something"
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="model size in MiB")
    parser.add_argument("--checks", type=int, default=5, help="no-op runs after the first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        source = base / "model.bin"
        digest = make_model(source, args.mib)
        text = (
            "metadata: {name: models}\nresources:\n"
            f"  - {{id: model, kind: Artifact, spec: {{path: opt/model.bin, url: '{source}',"
            f" sha256: {digest}}}}}\n"
        )
        manifest = parse_manifest(text, source="bench", kinds=registry.default().kinds())
        times = asyncio.run(checks(manifest, base / "root", base / "state", args.checks))
        raw = statistics.median(raw_sha256(source) for _ in range(3))
    first, later = times[0], statistics.median(times[1:])
    print(f"model {args.mib} MiB; raw sha256 of it: {raw:.3f} s")
    print(f"first no-op check in a process: {first:.3f} s ({first / raw:.2f}x raw)")
    print(f"later no-op checks (median of {len(times) - 1}): {later * 1000:.1f} ms "
          f"({raw / later:,.0f}x faster than hashing)")  # fmt: skip


if __name__ == "__main__":
    main()
