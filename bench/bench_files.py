"""Whole-process cost of ``accord apply`` on many small files, against a raw-Python loop.

What it measures: for N files (default 1,000 and 10,000) spread over 20 directories, each
~100 bytes with mode 0644 and depending on its directory, three scenarios —

* ``fresh``: empty root and empty state dir, then apply;
* ``noop``:  apply again on the converged tree;
* ``drift``: edit 1% of the files (same size, different bytes) and chmod another 0.5% to
  0600, then apply;

each run as a child process — ``.venv/bin/accord apply M --root R --state-dir S --json`` and
``python bench/raw_loop.py M --root R`` with the same interpreter — timed from spawn to reap
(``time.perf_counter`` around ``Popen`` + ``os.wait4``), with the child's own peak RSS from
``wait4``'s ``ru_maxrss``. Every child's output is checked: accord must report
``succeeded`` and both must report exactly the expected number of changed resources. Dirty
pages are flushed (``os.sync``) before each timed run so one run's write-back does not land
on the next. Each figure is the best of ``--repeat`` runs (fewer when one run takes longer
than ``--slow`` seconds); peak RSS is the largest seen. A run is killed after ``--timeout``.
accord and raw take turns run by run; "paired ratio" is the median over those back-to-back
pairs, a steadier figure than best over best when the machine is shared.

Targets (from the performance issue): N=1,000 no-op under 0.5 s whole-process; N=10,000
no-op within 5x the raw loop; accord's peak RSS under 150 MB at N=10,000.

Run: ``uv run --frozen --all-groups python bench/bench_files.py [--quick] [--plot]``
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import common

ACCORD, RAW = "accord", "raw"
IMPLS = (ACCORD, RAW)
SCENARIOS = ("fresh", "noop", "drift")
RAW_LOOP = common.BENCH_DIR / "raw_loop.py"


@dataclass
class Measurement:
    impl: str
    scenario: str
    n: int
    times: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    timed_out: bool = False
    skipped: str = ""  # why it was not run

    @property
    def seconds(self) -> float | None:
        return min(self.times) if self.times and not self.timed_out else None


Found = dict[tuple[str, str, int], Measurement]


def accord_binary() -> Path:
    """The venv's console script (not ``uv run``, which adds its own start-up to every run)."""
    return Path(sys.executable).parent / "accord"


def drift(root: Path, n: int) -> int:
    """Edit 1% of the files and chmod another 0.5%; return how many resources now differ."""
    edited = range(0, n, 100)
    chmodded = range(50, n, 200)
    for i in edited:
        path = root / common.file_path(i)
        data = path.read_bytes()
        path.write_bytes(b"X" + data[1:])  # same size: accord must hash it to see the change
    for i in chmodded:
        os.chmod(root / common.file_path(i), 0o600)
    return len(edited) + len(chmodded)


def changed_count(impl: str, stdout: bytes) -> int:
    """What the child says it changed; raises if an accord run did not succeed."""
    document = json.loads(stdout)
    if impl == RAW:
        return int(document["changed"])
    run = document["run"]
    if run["state"] != "succeeded":
        raise RuntimeError(f"accord run ended {run['state']}: {run.get('conditions')}")
    return int(run["changed"])


class Bench:
    """Runs the scenarios in a scratch directory; every fresh run gets a new tree."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.trees = 0

    def measure(self, n: int, manifest: Path) -> list[Measurement]:
        """All three scenarios at one N, accord and raw taking turns run by run.

        Alternating means a change in the machine's speed (other load, disk write-back) hits
        both sides of a ratio alike. The no-op and drift runs reuse the tree of the last fresh
        run of the same implementation.
        """
        results = {(impl, s): Measurement(impl, s, n) for impl in IMPLS for s in SCENARIOS}
        roots: dict[str, Path] = {}
        for scenario in SCENARIOS:
            todo = [i for i in IMPLS if scenario == "fresh" or results[i, "fresh"].seconds]
            for impl in set(IMPLS) - set(todo):
                results[impl, scenario].skipped = "the fresh run did not finish"
            for _ in range(self.args.repeat):
                for impl in list(todo):
                    if scenario == "fresh":
                        if impl in roots:
                            shutil.rmtree(roots[impl].parent)
                        roots[impl] = self._new_tree(impl, n)
                        expected = n + common.DIRECTORIES
                    elif scenario == "noop":
                        expected = 0
                    else:
                        expected = drift(roots[impl], n)
                    if not self._record(results[impl, scenario], manifest, roots[impl], expected):
                        todo.remove(impl)  # killed, or too slow to repeat
        for root in roots.values():
            shutil.rmtree(root.parent)
        return list(results.values())

    def _new_tree(self, impl: str, n: int) -> Path:
        self.trees += 1
        root = self.workdir / f"{impl}-{n}-{self.trees}" / "root"
        root.mkdir(parents=True)
        return root

    def _record(self, into: Measurement, manifest: Path, root: Path, expected: int) -> bool:
        """Run once, add the result to ``into``; False when no further repetition should run."""
        state = root.parent / "state"
        if into.impl == RAW:
            argv = [sys.executable, str(RAW_LOOP), str(manifest), "--root", str(root)]
        else:
            argv = [str(accord_binary()), "apply", str(manifest), "--root", str(root)]
            argv += ["--state-dir", str(state), "--json"]
        os.sync()
        run = common.run_child(argv, timeout=self.args.timeout)
        into.peak_rss_mb = max(into.peak_rss_mb, run.peak_rss_mb)
        label = f"  {into.impl:>6} {into.scenario:>5} N={into.n:<6}"
        if run.timed_out:
            into.timed_out = True
            print(f"{label} killed after {self.args.timeout:g} s", flush=True)
            return False
        if run.returncode != 0:
            tail = run.stderr.decode(errors="replace")[-2000:]
            raise RuntimeError(f"{into.impl} exited {run.returncode}:\n{tail}")
        got = changed_count(into.impl, run.stdout)
        if got != expected:
            raise RuntimeError(f"{into.impl} changed {got} resources, expected {expected}")
        print(f"{label} {run.seconds:8.3f} s {run.peak_rss_mb:6.1f} MB", flush=True)
        into.times.append(run.seconds)
        return run.seconds < self.args.slow


def fmt_seconds(m: Measurement, timeout: float) -> str:
    if m.skipped:
        return "not run"
    if m.seconds is None:
        return f"> {timeout:g} (killed)"
    return f"{m.seconds:.3f}"


def fmt_ratio(ours: Measurement, raw: Measurement, timeout: float) -> str:
    if raw.seconds is None or ours.skipped:
        return "-"
    if ours.seconds is None:
        return f"> {timeout / raw.seconds:.0f}x"
    return f"{ours.seconds / raw.seconds:.1f}x"


def paired_ratio(ours: Measurement, raw: Measurement) -> str:
    """Median of accord's run k over raw's run k: the two ran back to back, under like load."""
    pairs = sorted(a / r for a, r in zip(ours.times, raw.times, strict=False))
    return f"{statistics.median(pairs):.1f}x" if pairs and ours.seconds else "-"


def report(found: Found, sizes: list[int], timeout: float) -> str:
    headers = ["scenario", "N", "runs", "accord s", "raw s", "ratio", "paired ratio", "accord MB",
               "raw MB"]  # fmt: skip
    rows = []
    for n in sizes:
        for scenario in SCENARIOS:
            ours, raw = found[ACCORD, scenario, n], found[RAW, scenario, n]
            rows.append(
                [
                    scenario,
                    f"{n:,}",
                    f"{len(ours.times)}/{len(raw.times)}",
                    fmt_seconds(ours, timeout),
                    fmt_seconds(raw, timeout),
                    fmt_ratio(ours, raw, timeout),
                    paired_ratio(ours, raw),
                    "-" if ours.skipped else f"{ours.peak_rss_mb:.1f}",
                    f"{raw.peak_rss_mb:.1f}",
                ]
            )
    return common.table(headers, rows)


def targets(found: Found) -> list[dict[str, str]]:
    """The issue's three targets, each PASS, FAIL, UNKNOWN or SKIP (that N was not run)."""
    verdicts = []

    def add(target: str, verdict: str, detail: str) -> None:
        verdicts.append({"target": target, "verdict": verdict, "detail": detail})

    noop = found.get((ACCORD, "noop", 1000))
    if noop is None:
        add("N=1,000 no-op < 0.5 s", "SKIP", "N=1,000 not measured")
    elif noop.seconds is None:
        add("N=1,000 no-op < 0.5 s", "FAIL", noop.skipped or "killed at the timeout")
    else:
        verdict = "PASS" if noop.seconds < 0.5 else "FAIL"
        add("N=1,000 no-op < 0.5 s", verdict, f"{noop.seconds:.3f} s")

    noop, raw = found.get((ACCORD, "noop", 10000)), found.get((RAW, "noop", 10000))
    if noop is None or raw is None or raw.seconds is None:
        add("N=10,000 no-op < 5x raw", "SKIP", "N=10,000 not measured")
    elif noop.seconds is None:
        add("N=10,000 no-op < 5x raw", "FAIL", noop.skipped or "killed at the timeout")
    else:
        ratio = noop.seconds / raw.seconds
        detail = f"{noop.seconds:.3f} s vs raw {raw.seconds:.3f} s = {ratio:.1f}x"
        detail += f" (paired median {paired_ratio(noop, raw)})"
        add("N=10,000 no-op < 5x raw", "PASS" if ratio < 5 else "FAIL", detail)

    at_10k = [m for (impl, _, n), m in found.items() if impl == ACCORD and n == 10000]
    if not at_10k:
        add("N=10,000 peak RSS < 150 MB", "SKIP", "N=10,000 not measured")
    else:
        peak = max(m.peak_rss_mb for m in at_10k)
        unfinished = [m.scenario for m in at_10k if m.seconds is None]
        verdict = "FAIL" if peak >= 150 else "UNKNOWN" if unfinished else "PASS"
        detail = f"peak {peak:.1f} MB"
        if unfinished:
            detail += f" (unfinished: {', '.join(unfinished)})"
        add("N=10,000 peak RSS < 150 MB", verdict, detail)
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: N=200, one run each")
    parser.add_argument("--sizes", type=int, nargs="+", help="file counts (default 1000 10000)")
    parser.add_argument("--repeat", type=int, help="runs per measurement, best kept (default 5)")
    parser.add_argument("--timeout", type=float, help="seconds before a run is killed (300)")
    parser.add_argument(
        "--slow", type=float, default=30.0, help="after a run this long, do not repeat it (30)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="results JSON (default bench/results/files.json; quick runs write none unless given)",
    )
    parser.add_argument("--plot", action="store_true", help="write docs/benchmarks-files.png")
    args = parser.parse_args(argv)
    args.sizes = args.sizes or ([200] if args.quick else [1000, 10000])
    args.repeat = args.repeat or (1 if args.quick else 5)
    args.timeout = args.timeout or (60.0 if args.quick else 300.0)
    if args.out is None and not args.quick:
        args.out = common.RESULTS_DIR / "files.json"

    # accord is installed editable and PYTHONDONTWRITEBYTECODE is set on our machines, so its
    # own modules would be recompiled on every run (~50 ms). An installed wheel ships compiled:
    # compile src/ once, as pip or uv would at install time.
    compileall.compile_dir(common.REPO / "src", quiet=1)
    machine = common.machine()
    print(common.describe(machine))
    print(f"sizes {args.sizes}, best of {args.repeat}, runs killed after {args.timeout:g} s")
    found: Found = {}
    with tempfile.TemporaryDirectory(prefix="accord-bench-files-") as tmp:
        bench = Bench(args, Path(tmp))
        for n in args.sizes:
            manifest = common.write_manifest(Path(tmp) / f"manifest-{n}.json", n)
            for m in bench.measure(n, manifest):
                found[m.impl, m.scenario, n] = m

    print("\naccord vs raw loop: whole-process seconds (best of runs), peak RSS (largest)\n")
    print(report(found, args.sizes, args.timeout))
    verdicts = targets(found)
    print("\ntargets:")
    for v in verdicts:
        print(f"  {v['verdict']:<7} {v['target']:<28} {v['detail']}")

    document: dict[str, Any] = {
        "machine": machine,
        "config": {"sizes": args.sizes, "repeat": args.repeat, "timeout": args.timeout},
        "measurements": [asdict(m) | {"seconds": m.seconds} for m in found.values()],
        "targets": verdicts,
    }
    if args.out:
        common.save_results(args.out, document)
    if args.plot:
        import plot

        plot.plot_files(document, common.DOCS_DIR / "benchmarks-files.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
