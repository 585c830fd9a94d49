"""Where a no-op ``accord apply`` spends its time: cProfile over the whole CLI process.

What it does: builds the bench manifest (N files over 20 directories, as bench_files.py) and
one with the 20 directories only, converges both, then

* times, unprofiled and taking turns: the N-file no-op, the no-file no-op (the fixed cost of
  a run: start-up, imports, store, output), the N-file no-op with Python's cyclic garbage
  collector disabled (collections triggered by many live objects are charged by cProfile to
  whatever function happens to run), and a bare ``python -c pass``;
* re-encodes the ``--json`` document the run printed with ``json.dumps`` (indented, as
  ``render.emit_json`` does, and compact), to price the stdlib encoder;
* runs the N-file no-op under cProfile (as ``python -m cProfile -o PROF`` would, but
  surviving the ``os._exit`` accord's CLI ends with) and prints the phases of a run
  (imports, manifest parse and validation, observe, planning, inventory, the apply pass, the
  journal, the JSON output) with their cumulative time and share of the profiled total, and
  the top functions by own time (callees excluded). Phases nest (the store is inside the
  inventory and journal), so shares do not add up to 100%.

cProfile inflates Python-heavy code roughly 1.5-2x, so read shares, not absolute seconds.
Interpreter start-up before the profiler begins is not in the profile. Coroutines are
profiled per resumption, so a coroutine's cumulative time excludes what ran in other tasks
while it waited (``plan`` does not include ``observe``, which runs in worker tasks).

Run: ``uv run --frozen --all-groups python bench/profile_accord.py [--quick] [--n N]``
"""

from __future__ import annotations

import argparse
import json
import pstats
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common
from bench_files import accord_binary

# Runs a Python script (argv[1]) with the cyclic garbage collector disabled.
NO_GC = (
    "import gc, runpy, sys; gc.disable(); sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)

# Runs a Python script (argv[2]) under cProfile and writes the stats to argv[1], also when the
# script ends with os._exit (accord's CLI does, to skip interpreter teardown), which
# ``python -m cProfile`` would not survive.
PROFILED = """
import cProfile, os, runpy, sys
out, sys.argv = sys.argv[1], sys.argv[2:]
profiler, real_exit = cProfile.Profile(), os._exit
def _exit(code):
    profiler.disable()
    profiler.dump_stats(out)
    real_exit(code)
os._exit = _exit
profiler.enable()
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    profiler.disable()
    profiler.dump_stats(out)
"""

# (label, file suffix, function name, only when called from (file suffix, name) or None)
Func = tuple[str, str, str, tuple[str, str] | None]
PHASES: list[Func] = [
    ("imports (all modules, outermost)", "<frozen importlib._bootstrap>", "_find_and_load", None),
    ("manifest: load_manifest", "accord/engine/local.py", "load_manifest", None),
    ("  json/yaml parse", "accord/model/loading.py", "_parse", None),
    (
        "  pydantic validation",
        "pydantic/main.py",
        "model_validate",
        ("loading.py", "parse_manifest"),
    ),
    ("  _check_references", "accord/model/loading.py", "_check_references", None),
    ("registry: entry points", "accord/providers/registry.py", "from_entry_points", None),
    ("observe: File", "accord/providers/file.py", "observe", None),
    ("observe: Directory", "accord/providers/directory.py", "observe", None),
    ("  Roots.resolve", "accord/providers/paths.py", "resolve", None),
    ("  FileProvider.want (sha256 of content)", "accord/providers/file.py", "want", None),
    ("  hashlib.file_digest", "hashlib.py", "file_digest", None),
    ("diff: File", "accord/providers/file.py", "diff", None),
    ("plan (own work: slots, steps)", "accord/engine/converge.py", "plan", None),
    ("  inventory load (store.list + decode)", "accord/engine/inventory.py", "load", None),
    ("apply pass: Converge._apply", "accord/engine/converge.py", "_apply", None),
    ("  executor.execute", "accord/engine/executor.py", "execute", None),
    ("  spec.model_dump per resource", "pydantic/main.py", "model_dump", ("converge.py", "_apply")),
    ("journal: begin", "accord/engine/journal.py", "begin", None),
    ("journal: finish", "accord/engine/journal.py", "finish", None),
    ("run record: Converge._record", "accord/engine/converge.py", "_record", None),
    ("store: SqliteStore.open", "accord/store/sqlite.py", "open", None),
    ("output: plan/run model_dump", "pydantic/main.py", "model_dump", ("converge.py", "main")),
    ("output: emit_json (json.dumps indent=2)", "accord/cli/render.py", "emit_json", None),
    ("output: emit_result (pydantic to JSON)", "accord/cli/render.py", "emit_result", None),
]


def find(stats: pstats.Stats, suffix: str, name: str) -> list[tuple[Any, Any]]:
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    return [(k, v) for k, v in table.items() if k[0].endswith(suffix) and k[2] == name]


def cumulative(stats: pstats.Stats, func: Func) -> tuple[float, int]:
    """Cumulative seconds and calls of the matching functions (or of calls from ``caller``)."""
    _, suffix, name, caller = func
    seconds, calls = 0.0, 0
    for _, (_, nc, _, ct, callers) in find(stats, suffix, name):
        if caller is None:
            seconds, calls = seconds + ct, calls + nc
            continue
        for (file, _, fn), (_, c_nc, _, c_ct) in callers.items():
            if file.endswith(caller[0]) and fn == caller[1]:
                seconds, calls = seconds + c_ct, calls + c_nc
    return seconds, calls


def short(key: tuple[str, int, str]) -> str:
    file, line, name = key
    file = re.sub(r"^.*?/(src|site-packages|lib/python3\.\d+)/", "", file)
    return f"{file}:{line}({name})" if line else name


def report(stats: pstats.Stats, top: int) -> str:
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = max(v[3] for v in table.values())
    rows = []
    for func in PHASES:
        seconds, calls = cumulative(stats, func)
        if calls:
            rows.append([func[0], f"{calls:,}", f"{seconds:.3f}", f"{seconds / total:.1%}"])
    lines = [f"profiled total: {total:.3f} s (cProfile overhead included)", ""]
    lines += [common.table(["phase", "calls", "cumulative s", "share"], rows), ""]
    ranked = sorted(table.items(), key=lambda kv: kv[1][2], reverse=True)
    functions = [
        [short(k), f"{v[1]:,}", f"{v[2]:.3f}", f"{v[2] / total:.1%}", f"{v[3]:.3f}"]
        for k, v in ranked[:top]
    ]
    lines.append(f"top {top} functions by own time (where the CPU actually goes):")
    headers = ["function", "calls", "own s", "own share", "cumulative s"]
    lines += ["", common.table(headers, functions)]
    return "\n".join(lines)


def encode_seconds(document: dict[str, Any]) -> tuple[float, float]:
    """``emit_json``'s ``json.dumps(indent=2)`` (pure-Python encoder) vs compact (C encoder)."""
    pretty = min(_clock(lambda: json.dumps(document, indent=2, default=str)) for _ in range(3))
    compact = min(_clock(lambda: json.dumps(document, default=str)) for _ in range(3))
    return pretty, compact


def _clock(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: N=200, 2 repetitions")
    parser.add_argument("--n", type=int, help="files (default 10000; 200 with --quick)")
    parser.add_argument("--repeat", type=int, help="unprofiled runs of each kind (default 5)")
    parser.add_argument("--top", type=int, default=20, help="functions to list (default 20)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run (900)")
    parser.add_argument("--keep", type=Path, help="also copy the .prof file here")
    args = parser.parse_args(argv)
    n = args.n or (200 if args.quick else 10000)
    repeat = args.repeat or (2 if args.quick else 5)
    print(common.describe(common.machine()))
    print(f"no-op apply of {n:,} files + 20 directories\n")

    def run(argv: list[str], what: str, changed: int) -> tuple[float, dict[str, Any]]:
        child = common.run_child(argv, timeout=args.timeout)
        if child.timed_out:
            raise SystemExit(f"{what} timed out after {args.timeout:g} s")
        document = json.loads(child.stdout or b"{}")
        if child.returncode != 0 or document["run"]["changed"] != changed:
            raise SystemExit(f"{what} failed: {child.stderr.decode(errors='replace')[-2000:]}")
        return child.seconds, document

    with tempfile.TemporaryDirectory(prefix="accord-bench-profile-") as tmp:
        work = Path(tmp)
        script = str(accord_binary())  # a Python script with the venv's shebang
        cases: dict[str, list[str]] = {}
        for label, files in ((f"no-op, {n:,} files", n), ("no-op, no files", 0)):
            manifest = common.write_manifest(work / f"manifest-{files}.json", files)
            root = work / f"root-{files}"
            root.mkdir()
            apply = ["apply", str(manifest), "--root", str(root)]
            apply += ["--state-dir", str(work / f"state-{files}"), "--json"]
            run([script, *apply], "converge", files + common.DIRECTORIES)
            cases[label] = [script, *apply]
        noop = cases[f"no-op, {n:,} files"]
        cases["no-op, GC disabled"] = [sys.executable, "-c", NO_GC, *noop]
        cases["python -c pass"] = [sys.executable, "-c", "pass"]

        times: dict[str, list[float]] = {label: [] for label in cases}
        output: dict[str, Any] = {}
        for _ in range(repeat):  # the kinds take turns, so load changes hit them alike
            for label, argv in cases.items():
                if label == "python -c pass":
                    times[label].append(common.run_child(argv, timeout=30).seconds)
                    continue
                seconds, output = run(argv, label, 0)
                times[label].append(seconds)
        print(f"unprofiled whole-process seconds (best of {repeat}, kinds taking turns):\n")
        print(common.table(
            ["run", "best s", "median s"],
            [[label, f"{min(t):.3f}", f"{statistics.median(t):.3f}"] for label, t in times.items()],
        ))  # fmt: skip
        full, empty = times[f"no-op, {n:,} files"], times["no-op, no files"]
        gc_cost = statistics.median(
            a - b for a, b in zip(full, times["no-op, GC disabled"], strict=True)
        )
        print(f"\nfixed cost of a run (start-up, imports, store, output): {min(empty):.3f} s")
        print(f"per file: {(min(full) - min(empty)) / n * 1e6:.0f} µs")
        print(f"cyclic GC: median paired difference {gc_cost:+.3f} s")
        pretty, compact = encode_seconds(output)
        print(
            f"re-encoding the --json output here: json.dumps(indent=2) {pretty * 1e3:.0f} ms, "
            f"compact {compact * 1e3:.0f} ms"
        )

        prof = work / "noop.prof"
        seconds, _ = run([sys.executable, "-c", PROFILED, str(prof), *noop], "profiled", 0)
        print(f"\nunder cProfile: {seconds:.3f} s whole process")
        print(report(pstats.Stats(str(prof)), args.top))
        if args.keep:
            args.keep.write_bytes(prof.read_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
