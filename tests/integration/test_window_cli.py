"""``accord window next`` through Typer's runner, over a real windows file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from accord.cli import window

runner = CliRunner()

WINDOWS = """\
windows:
  - name: nightly
    cron: "30 2 * * *"
    duration: 2h
    timezone: Europe/Berlin
    blackout: [2025-03-31]
    selector: {site: plant-a}
  - name: ny-late
    cron: "30 1 * * *"
    duration: 2h
    timezone: America/New_York
    nodes: [node-7]
"""


def accord(*args: str | Path) -> tuple[int, str, str]:
    # Mounted the way the root app mounts command groups, so `window next` is what a user types.
    root = typer.Typer()
    root.add_typer(window.app, name="window")
    result = runner.invoke(root, ["window", *(str(a) for a in args)])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def schedule(tmp_path: Path) -> Path:
    path = tmp_path / "windows.yaml"
    path.write_text(WINDOWS)
    return path


def test_text_output_says_whether_open_and_lists_openings_in_utc_and_local_time(
    schedule: Path,
) -> None:
    # Berlin's spring-forward night: 02:30 does not exist, so the window opens at 03:00 CEST.
    code, out, _ = accord("next", schedule, "--node", "node-1", "--label", "site=plant-a",
                          "--at", "2025-03-29T12:00:00Z", "--count", "2")  # fmt: skip
    assert code == 0, out
    assert "windows for node node-1 (site=plant-a) at 2025-03-29 12:00 UTC: nightly" in out
    assert "closed" in out
    assert "next: 'nightly' opens 2025-03-30 01:00 UTC (in 13h)" in out
    assert "2025-03-30 01:00 to 03:00" in out and "2025-03-30 03:00 to 05:00 CEST" in out
    # The 31st is blacked out: the second opening is on 1 April.
    assert "2025-04-01 00:30 to 02:30" in out and "2025-03-31" not in out
    assert "ny-late" not in out


def test_an_open_window_says_until_when(schedule: Path) -> None:
    # New York's fall-back night: open from 01:30 EDT for two real hours, until 02:30 EST.
    code, out, _ = accord("next", schedule, "--node", "node-7", "--at", "2025-11-02T06:45:00+00:00")
    assert code == 0, out
    assert "open: 'ny-late' until 2025-11-02 07:30 UTC (45m left)" in out
    assert "2025-11-03 01:30 to 03:30 EST" in out


def test_json_output(schedule: Path) -> None:
    code, out, _ = accord("next", schedule, "--at", "2025-11-02T04:00:00", "-n", "2", "--json")
    assert code == 0, out
    document = json.loads(out)
    assert document["at"] == "2025-11-02T04:00:00Z"  # no offset given: UTC
    assert document["node"] is None and document["windows"] == ["nightly", "ny-late"]
    assert document["status"] == {
        "open": False, "window": None, "closes_at": None,
        "next_opens_at": "2025-11-02T05:30:00Z", "next_window": "ny-late",
    }  # fmt: skip
    assert document["occurrences"] == [
        {
            "window": "ny-late", "timezone": "America/New_York",
            "start": "2025-11-02T05:30:00Z", "end": "2025-11-02T07:30:00Z",
            "local_start": "2025-11-02T01:30:00-04:00", "local_end": "2025-11-02T02:30:00-05:00",
        },
        {
            "window": "nightly", "timezone": "Europe/Berlin",
            "start": "2025-11-03T01:30:00Z", "end": "2025-11-03T03:30:00Z",
            "local_start": "2025-11-03T02:30:00+01:00", "local_end": "2025-11-03T04:30:00+01:00",
        },
    ]  # fmt: skip


def test_a_node_without_windows(schedule: Path) -> None:
    code, out, _ = accord("next", schedule, "--node", "node-1", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["windows"] == [] and document["occurrences"] == []
    assert document["status"]["open"] is False and document["status"]["next_opens_at"] is None
    code, out, _ = accord("next", schedule, "--node", "node-1")
    assert code == 0 and "no window applies" in out


@pytest.mark.parametrize(
    ("line", "bad", "expected"),
    [
        ('    cron: "30 2 * * *"', '    cron: "30 25 * * *"', ":3: window 'nightly': cron: "),
        ("    timezone: America/New_York", "    timezone: America/Gotham",
         ":11: window 'ny-late': timezone: unknown IANA timezone 'America/Gotham'"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_naming_the_file_and_line(
    schedule: Path, line: str, bad: str, expected: str
) -> None:
    schedule.write_text(WINDOWS.replace(line, bad))
    code, out, err = accord("next", schedule)
    assert code == 2 and out == ""
    assert f"error: {schedule}: invalid windows (1 problem)" in err
    assert f"{schedule}{expected}" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--label", "site"],
        ["--at", "tomorrow"],
        ["--count", "0"],
    ],
)
def test_bad_options_exit_2(schedule: Path, args: list[str]) -> None:
    code, _, err = accord("next", schedule, *args)
    assert code == 2 and "Invalid value" in err


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    code, _, err = accord("next", tmp_path / "nope.yaml")
    assert code == 2 and "nope.yaml: No such file or directory" in err
