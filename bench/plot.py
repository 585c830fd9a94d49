"""Bar charts of the benchmark results (matplotlib, Agg backend: no display needed).

Reads bench/results/files.json and bench/results/engine.json (written by bench_files.py and
bench_engine.py) and draws docs/benchmarks-files.png and docs/benchmarks-engine.png. The two
scripts call the same functions when given ``--plot``.

Run: ``uv run --frozen --all-groups python bench/plot.py``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: no display needed

import matplotlib.pyplot as plt

import common

COLORS = {"accord": "#c0392b", "raw": "#2c7fb8"}
ENGINE_COLORS = ("#c0392b", "#2c7fb8", "#7fbf7b")


def plot_files(document: dict[str, Any], path: Path) -> None:
    """Seconds per scenario and N (log scale), one bar per implementation; timeouts hatched."""
    measurements = document["measurements"]
    impls = list(dict.fromkeys(m["impl"] for m in measurements))
    groups = list(dict.fromkeys((m["scenario"], m["n"]) for m in measurements))
    found = {(m["impl"], m["scenario"], m["n"]): m for m in measurements}
    timeout = document["config"]["timeout"]
    width = 0.8 / len(impls)
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(groups)), 5))
    for k, impl in enumerate(impls):
        for g, key in enumerate(groups):
            m = found.get((impl, *key))
            if m is None:
                continue
            x = g + (k - (len(impls) - 1) / 2) * width
            if m["skipped"]:
                ax.annotate(
                    "not run",
                    (x, 0),
                    xycoords=("data", "axes fraction"),
                    xytext=(0, 4),
                    textcoords="offset points",
                    ha="center",
                    rotation=90,
                    fontsize=7,
                )
                continue
            if m["timed_out"]:
                ax.bar(
                    x, timeout, width, color="white", edgecolor=COLORS.get(impl, "grey"), hatch="//"
                )
                ax.annotate(f">{timeout:g} s", (x, timeout), ha="center", va="bottom", fontsize=7)
            else:
                ax.bar(x, m["seconds"], width, color=COLORS.get(impl, "grey"))
                ax.annotate(
                    f"{m['seconds']:.2g}", (x, m["seconds"]), ha="center", va="bottom", fontsize=7
                )
    for impl in impls:
        ax.bar(0, 0, 0, color=COLORS.get(impl, "grey"), label=impl)
    ax.set_xticks(range(len(groups)), [f"{s}\nN={n:,}" for s, n in groups])
    ax.set_yscale("log")
    ax.set_ylabel("whole-process wall time, s (log scale)")
    ax.set_title("accord apply vs a raw Python loop (best of runs; hatched: killed at timeout)")
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    _save(fig, path)


def plot_engine(document: dict[str, Any], path: Path) -> None:
    """Left: executor µs per trivial step. Right: µs per journalled step, accord vs sqlite3."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    plain = document["no_persistence"]
    labels = [f"{r['graph']}\n{r['steps']:,} steps" for r in plain]
    series = [
        ("accord executor", "engine_us"),
        ("asyncio task floor", "floor_us"),
        ("executor, instant path", "instant_us"),
    ]
    _grouped(left, labels, [(name, [r[key] for r in plain]) for name, key in series])
    left.axhline(50, color="black", linestyle="--", linewidth=1, label="target 50 µs")
    left.set_ylabel("µs per step")
    left.set_title("(a) no persistence")
    left.legend(fontsize=8)

    journal = document["persistence"]
    labels = [f"{r['graph']}\n{r['synchronous']}, {r['steps']:,}" for r in journal]
    _grouped(
        right,
        labels,
        [
            ("accord (executor + journal)", [r["accord_us"] for r in journal]),
            ("raw sqlite3 loop", [r["raw_us"] for r in journal]),
        ],
    )
    right.set_ylabel("µs per step")
    right.set_title("(b) one journal event per step, SQLite WAL")
    right.legend(fontsize=8)
    _save(fig, path)


def _grouped(ax: Any, labels: list[str], series: list[tuple[str, list[float]]]) -> None:
    width = 0.8 / len(series)
    for k, (name, values) in enumerate(series):
        xs = [g + (k - (len(series) - 1) / 2) * width for g in range(len(labels))]
        ax.bar(xs, values, width, label=name, color=ENGINE_COLORS[k % len(ENGINE_COLORS)])
        for x, v in zip(xs, values, strict=True):
            ax.annotate(f"{v:.3g}", (x, v), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot written to {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--files", type=Path, default=common.RESULTS_DIR / "files.json")
    parser.add_argument("--engine", type=Path, default=common.RESULTS_DIR / "engine.json")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: draw into a temporary directory, leave docs/ alone",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="accord-bench-plot-") as tmp:
        out = Path(tmp) if args.quick else common.DOCS_DIR
        drawn = 0
        jobs = (
            (args.files, plot_files, "benchmarks-files.png"),
            (args.engine, plot_engine, "benchmarks-engine.png"),
        )
        for source, draw, name in jobs:
            if source.is_file():
                draw(json.loads(source.read_text()), out / name)
                drawn += 1
            else:
                print(f"no {source}; run the benchmark first", file=sys.stderr)
    return 0 if drawn else 1


if __name__ == "__main__":
    sys.exit(main())
