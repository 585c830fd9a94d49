"""Maintenance windows: parsing, selection, blackouts and DST, on real zoneinfo data.

No clock is mocked: every function takes ``now``. Expected instants are written in UTC with the
local time they stand for alongside, so each DST case can be checked against a calendar.
"""

from __future__ import annotations

import functools
import itertools
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from accord import errors
from accord.lifecycle import windows
from accord.lifecycle.windows import Occurrence, Window, WindowStatus

H = timedelta(hours=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def window(
    cron: str = "0 2 * * *", duration: Any = "1h", timezone: str = "UTC", **more: Any
) -> Window:
    return Window.model_validate(
        {
            "name": more.pop("name", "w"),
            "cron": cron,
            "duration": duration,
            "timezone": timezone,
            **more,
        }
    )


def starts(win: Window, after: datetime, count: int) -> list[datetime]:
    return [o.start for o in itertools.islice(windows.occurrences(win, after), count)]


def next_start(win: Window, now: datetime) -> datetime:
    found = windows.next_occurrence(win, now)
    assert found is not None
    return found.start


def local(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def problems(text: str) -> list[str]:
    with pytest.raises(windows.WindowError) as info:
        windows.load_windows(text, source="w.yaml")
    return info.value.problems


# --------------------------------------------------------------------------------------------
# Parsing and validation

GOOD = """\
windows:
  - name: nightly
    cron: "30 2 * * *"
    duration: 2h
    timezone: Europe/Berlin
    blackout: [2025-12-24, "2025-12-31", {from: 2025-12-27, to: "2026-01-02"}]
    selector: {site: plant-a}
  - name: weekend
    cron: "0 22 * * sat"
    duration: 1h30m
    timezone: America/New_York
    nodes: [node-7, node-9]
"""


def test_a_good_file_loads_typed_windows() -> None:
    schedule = windows.load_windows(GOOD, source="w.yaml")
    nightly, weekend = schedule.windows
    assert schedule.get("weekend") is weekend
    assert nightly.duration == 2 * H and weekend.duration == timedelta(minutes=90)
    assert nightly.tz == ZoneInfo("Europe/Berlin") and weekend.nodes == ("node-7", "node-9")
    assert [(r.first, r.last) for r in nightly.blackout] == [
        (date(2025, 12, 24), date(2025, 12, 24)),
        (date(2025, 12, 31), date(2025, 12, 31)),
        (date(2025, 12, 27), date(2026, 1, 2)),
    ]
    assert nightly.selector == {"site": "plant-a"} and weekend.selector == {}
    with pytest.raises(KeyError):
        schedule.get("daily")


def test_a_window_round_trips_through_json() -> None:
    nightly = windows.load_windows(GOOD, source="w.yaml").windows[0]
    dumped = nightly.model_dump(mode="json")
    assert dumped["blackout"][2] == {"from": "2025-12-27", "to": "2026-01-02"}
    assert Window.model_validate(dumped) == nightly
    assert Window.model_validate_json(nightly.model_dump_json()) == nightly


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2h", 2 * H),
        ("90m", timedelta(minutes=90)),
        ("1h30m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("1d 2h", 26 * H),
        (5400, timedelta(minutes=90)),
        (90.5, timedelta(seconds=90.5)),
        ("5400", timedelta(minutes=90)),
        ("PT2H", 2 * H),
    ],
)
def test_durations_are_read_in_several_forms(written: Any, expected: timedelta) -> None:
    assert window(duration=written).duration == expected


BAD = """\
windows:
  - name: fine
    cron: "0 1 * * *"
    duration: 1h
    timezone: UTC
  - name: broken
    cron: {cron}
    duration: {duration}
    timezone: {timezone}
"""


@pytest.mark.parametrize(
    ("field", "value", "line", "message"),
    [
        ("cron", '"61 * * * *"', 7, "not a valid cron expression: [61 * * * *]"),
        ("cron", '"0 2 * *"', 7, "expected 5 fields (minute hour day-of-month month day-of-week)"),
        ("cron", '"0 0 2 * * *"', 7, "expected 5 fields"),
        ("cron", '"0 2 * * funday"', 7, "not a valid cron expression"),
        ("cron", '"0 0 30 2 *"', 7, "'0 0 30 2 *' never fires (no such date)"),
        ("duration", "2 hours", 8, "expected a duration like '2h', '90m', '1h30m', '45s'"),
        ("duration", "0", 8, "must be more than 0 and less than 7 days, got 0s"),
        ("duration", "-30", 8, "must be more than 0 and less than 7 days, got -30s"),
        ("duration", "7d", 8, "must be more than 0 and less than 7 days, got 7d"),
        ("duration", ".inf", 8, "duration out of range"),
        ("timezone", "Europe/Berln", 9, "unknown IANA timezone 'Europe/Berln'"),
        ("timezone", "America", 9, "unknown IANA timezone 'America'"),
        ("timezone", "../../etc/passwd", 9, "unknown IANA timezone"),
    ],
)
def test_a_bad_field_is_named_with_its_file_and_line(
    field: str, value: str, line: int, message: str
) -> None:
    fields = {"cron": '"0 1 * * *"', "duration": "1h", "timezone": "UTC", field: value}
    [problem] = problems(BAD.format(**fields))
    prefix = f"w.yaml:{line}: window 'broken': {field}: "
    assert problem.startswith(prefix), problem
    assert message in problem.removeprefix(prefix), problem


def test_every_problem_is_reported_at_once() -> None:
    text = """\
windows:
  - name: a
    cron: "0 1 * * *"
    duration: 1h
    timezone: UTC
    blackout: [tomorrow, {from: 2025-12-31, to: 2025-12-01}, {from: 2025-02-30, to: 2025-03-01}]
    colour: red
  - name: a
    cron: "0 1 * * *"
  - name: a
    cron: "0 1 * * *"
    duration: 1h
    timezone: UTC
"""
    assert problems(text) == [
        "w.yaml:6: window 'a': blackout.0: expected a date 'YYYY-MM-DD', got 'tomorrow'",
        "w.yaml:6: window 'a': blackout.1: 'from' (2025-12-31) is after 'to' (2025-12-01)",
        "w.yaml:6: window 'a': blackout.2.from: no such date: '2025-02-30'",
        "w.yaml:7: window 'a': colour: Extra inputs are not permitted",
        "w.yaml:8: window 'a': duration: Field required",
        "w.yaml:8: window 'a': timezone: Field required",
        "w.yaml:8: window 'a': name: duplicate window name (first at line 2)",
        "w.yaml:10: window 'a': name: duplicate window name (first at line 2)",
    ]


def test_the_error_is_an_input_error_with_a_readable_message() -> None:
    with pytest.raises(errors.InputError) as info:
        windows.load_windows(BAD.format(cron='"x"', duration="1h", timezone="UTC"), source="w.yaml")
    assert str(info.value).startswith("w.yaml: invalid windows (1 problem)\n  w.yaml:7: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("windows:\n  - name: [\n", "w.yaml:3: did not find expected node content"),
        ("- a\n", "w.yaml:1: expected a mapping with a 'windows' list"),
        ("", "w.yaml:1: expected a mapping with a 'windows' list"),
        ("windows: 5\nwhen: now\n", "w.yaml:1: windows: Input should be a valid tuple"),
        ("windows: []\nwhen: now\n", "w.yaml:2: when: Extra inputs are not permitted"),
        ("windows:\n  - nightly\n", "w.yaml:2: windows[0]: window: Input should be a valid"),
    ],
)
def test_a_malformed_document_names_the_line(text: str, expected: str) -> None:
    assert problems(text)[0].startswith(expected), problems(text)


def test_an_empty_schedule_is_fine_and_names_are_unique_in_python_too() -> None:
    assert windows.load_windows("windows: []\n", source="w.yaml").windows == ()
    with pytest.raises(ValidationError, match="duplicate window names: w"):
        windows.Schedule(windows=(window(), window()))


# --------------------------------------------------------------------------------------------
# Next and current occurrences


def test_next_is_strictly_after_now_and_never_the_open_one() -> None:
    daily = window("0 2 * * *", "1h")
    assert windows.next_occurrence(daily, utc(2025, 6, 1, 1, 59)) == Occurrence(
        window="w", start=utc(2025, 6, 1, 2), end=utc(2025, 6, 1, 3)
    )
    # At the opening instant, and while open, "next" is tomorrow's opening.
    for now in (utc(2025, 6, 1, 2), utc(2025, 6, 1, 2, 30)):
        assert next_start(daily, now) == utc(2025, 6, 2, 2)


def test_an_occurrence_is_open_from_its_start_until_just_before_its_end() -> None:
    daily = window("0 2 * * *", "1h")
    assert windows.occurrence_at(daily, utc(2025, 6, 1, 1, 59, 59)) is None
    for now in (utc(2025, 6, 1, 2), utc(2025, 6, 1, 2, 59, 59)):
        assert windows.occurrence_at(daily, now) == Occurrence(
            window="w", start=utc(2025, 6, 1, 2), end=utc(2025, 6, 1, 3)
        )
    assert windows.occurrence_at(daily, utc(2025, 6, 1, 3)) is None


def test_now_must_be_aware_and_any_zone_is_read_as_its_utc_instant() -> None:
    daily = window("0 2 * * *", "1h")
    with pytest.raises(ValueError, match="aware"):
        windows.next_occurrence(daily, datetime(2025, 6, 1))
    berlin = datetime(2025, 6, 1, 4, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 02:30 UTC
    assert windows.occurrence_at(daily, berlin) is not None


def test_overlapping_occurrences_of_one_window_report_the_one_closing_last() -> None:
    hourly = window("0 * * * *", "90m")
    assert windows.occurrence_at(hourly, utc(2025, 6, 1, 2, 15)) == Occurrence(
        window="w", start=utc(2025, 6, 1, 2), end=utc(2025, 6, 1, 3, 30)
    )


def test_a_weekly_window_opens_on_its_day_in_local_time() -> None:
    saturday_night = window("0 22 * * sat", "4h", "Europe/Berlin")
    wednesday = utc(2025, 3, 26, 12)
    first, second = starts(saturday_night, wednesday, 2)
    assert first == utc(2025, 3, 29, 21) and local(first, "Europe/Berlin") == "2025-03-29 22:00 CET"
    assert (
        second == utc(2025, 4, 5, 20) and local(second, "Europe/Berlin") == "2025-04-05 22:00 CEST"
    )


def test_a_rare_cron_is_found_years_ahead() -> None:
    leap_day = window("0 0 29 2 *")
    assert starts(leap_day, utc(2025, 3, 1), 2) == [utc(2028, 2, 29), utc(2032, 2, 29)]


# --------------------------------------------------------------------------------------------
# Blackouts


def test_blackout_dates_and_ranges_skip_the_occurrences_that_start_on_them() -> None:
    daily = window("0 2 * * *", blackout=["2025-12-24", {"from": "2025-12-27", "to": "2025-12-29"}])
    assert [s.day for s in starts(daily, utc(2025, 12, 22), 6)] == [22, 23, 25, 26, 30, 31]


def test_an_occurrence_open_across_a_blackout_boundary_belongs_to_its_start_date() -> None:
    late = window("0 22 * * *", "4h", blackout=["2025-12-25"])
    # Started on the 24th: it runs into the blacked-out 25th until its end.
    assert windows.occurrence_at(late, utc(2025, 12, 25, 1)) == Occurrence(
        window="w", start=utc(2025, 12, 24, 22), end=utc(2025, 12, 25, 2)
    )
    assert windows.occurrence_at(late, utc(2025, 12, 25, 23)) is None
    assert next_start(late, utc(2025, 12, 24, 23)) == utc(2025, 12, 26, 22)


def test_blackout_dates_are_read_in_the_windows_timezone() -> None:
    # 00:30 in Berlin is 23:30 UTC the day before: the 25th in Berlin is skipped, not the 24th.
    berlin = window("30 0 * * *", "1h", "Europe/Berlin", blackout=["2025-12-25"])
    assert starts(berlin, utc(2025, 12, 23, 12), 2) == [
        utc(2025, 12, 23, 23, 30),
        utc(2025, 12, 25, 23, 30),
    ]


def test_a_long_blackout_is_skipped_at_once_and_a_permanent_one_means_never() -> None:
    every_minute = window(
        "* * * * *", "30s", "Europe/Berlin", blackout=[{"from": "2025-01-01", "to": "2025-12-31"}]
    )
    assert starts(every_minute, utc(2024, 12, 31, 22, 58, 30), 2) == [
        utc(2024, 12, 31, 22, 59),  # 23:59 on New Year's Eve 2024, Berlin time
        utc(2025, 12, 31, 23, 0),  # then nothing until 00:00 on 1 January 2026
    ]
    forever = window(blackout=[{"from": "2025-01-01", "to": "2199-12-31"}])
    assert windows.next_occurrence(forever, utc(2025, 6, 1)) is None


# --------------------------------------------------------------------------------------------
# Which windows a node has, and its status


SELECTION = """\
windows:
  - {name: everyone, cron: "0 1 * * *", duration: 1h, timezone: UTC}
  - {name: listed, cron: "0 2 * * *", duration: 1h, timezone: UTC, nodes: [node-7]}
  - {name: plant-a, cron: "0 3 * * *", duration: 1h, timezone: UTC, selector: {site: plant-a}}
  - name: both
    cron: "0 4 * * *"
    duration: 1h
    timezone: UTC
    nodes: [node-9]
    selector: {site: plant-b, tier: edge}
"""


@pytest.mark.parametrize(
    ("node", "labels", "expected"),
    [
        ("node-1", {}, ["everyone"]),
        ("node-7", {}, ["everyone", "listed"]),
        ("node-1", {"site": "plant-a", "rack": "4"}, ["everyone", "plant-a"]),
        ("node-1", {"site": "plant-b"}, ["everyone"]),  # a selector needs every pair
        ("node-1", {"site": "plant-b", "tier": "edge"}, ["everyone", "both"]),
        ("node-9", {}, ["everyone", "both"]),  # nodes or selector: either one is enough
        (None, {"site": "plant-a"}, ["everyone", "plant-a"]),
    ],
)
def test_a_node_has_the_windows_that_list_it_or_select_its_labels(
    node: str | None, labels: dict[str, str], expected: list[str]
) -> None:
    schedule = windows.load_windows(SELECTION, source="w.yaml")
    assert [w.name for w in windows.windows_for(schedule, node, labels)] == expected


def test_status_only_counts_the_nodes_own_windows() -> None:
    schedule = windows.load_windows(SELECTION, source="w.yaml")
    at_0230 = utc(2025, 6, 1, 2, 30)
    assert windows.status_at(schedule, "node-7", {}, at_0230) == WindowStatus(
        open=True, window="listed", closes_at=utc(2025, 6, 1, 3),
        next_opens_at=utc(2025, 6, 2, 1), next_window="everyone",
    )  # fmt: skip
    assert windows.status_at(schedule, "node-1", {}, at_0230) == WindowStatus(
        open=False, next_opens_at=utc(2025, 6, 2, 1), next_window="everyone"
    )


def test_overlapping_and_touching_windows_make_one_open_span() -> None:
    first = window("0 1 * * *", "2h", name="first")  # 01:00-03:00
    overlapping = window("30 2 * * *", "2h", name="overlapping")  # 02:30-04:30
    touching = window("30 4 * * *", "30m", name="touching")  # 04:30-05:00
    status = windows.status_of([first, overlapping, touching], utc(2025, 6, 1, 1, 30))
    assert status == WindowStatus(
        open=True, window="first", closes_at=utc(2025, 6, 1, 5),
        next_opens_at=utc(2025, 6, 2, 1), next_window="first",
    )  # fmt: skip


def test_when_two_open_windows_close_together_the_first_name_is_reported() -> None:
    a, b = window("0 1 * * *", "2h", name="b"), window("0 2 * * *", "1h", name="a")
    assert windows.status_of([a, b], utc(2025, 6, 1, 2, 30)).window == "a"
    assert windows.status_of([b, a], utc(2025, 6, 1, 2, 30)).window == "a"


def test_a_node_without_windows_is_closed_with_nothing_ahead() -> None:
    assert windows.status_of([], utc(2025, 6, 1)) == WindowStatus(open=False)


# --------------------------------------------------------------------------------------------
# Daylight saving time


@pytest.mark.parametrize(
    ("zone", "cron", "before", "expected"),
    [
        # Europe/Berlin springs forward at 02:00 CET to 03:00 CEST on 2025-03-30.
        ("Europe/Berlin", "30 2 * * *", utc(2025, 3, 28, 12), [
            ("2025-03-29 02:30 CET", utc(2025, 3, 29, 1, 30)),
            ("2025-03-30 03:00 CEST", utc(2025, 3, 30, 1)),  # 02:30 does not exist: the gap's end
            ("2025-03-31 02:30 CEST", utc(2025, 3, 31, 0, 30)),
        ]),
        # America/New_York springs forward at 02:00 EST to 03:00 EDT on 2025-03-09.
        ("America/New_York", "30 2 * * *", utc(2025, 3, 7, 12), [
            ("2025-03-08 02:30 EST", utc(2025, 3, 8, 7, 30)),
            ("2025-03-09 03:00 EDT", utc(2025, 3, 9, 7)),
            ("2025-03-10 02:30 EDT", utc(2025, 3, 10, 6, 30)),
        ]),
        # Lord Howe Island moves by 30 minutes: 02:00 +1030 becomes 02:30 +11 on 2025-10-05.
        ("Australia/Lord_Howe", "15 2 * * *", utc(2025, 10, 3), [
            ("2025-10-04 02:15 +1030", utc(2025, 10, 3, 15, 45)),
            ("2025-10-05 02:30 +11", utc(2025, 10, 4, 15, 30)),
            ("2025-10-06 02:15 +11", utc(2025, 10, 5, 15, 15)),
        ]),
        # Santiago springs forward at midnight: 00:00 -04 becomes 01:00 -03 on 2025-09-07.
        ("America/Santiago", "30 0 * * *", utc(2025, 9, 5, 12), [
            ("2025-09-06 00:30 -04", utc(2025, 9, 6, 4, 30)),
            ("2025-09-07 01:00 -03", utc(2025, 9, 7, 4)),
            ("2025-09-08 00:30 -03", utc(2025, 9, 8, 3, 30)),
        ]),
    ],
)  # fmt: skip
def test_spring_forward_moves_a_missing_start_to_the_end_of_the_gap(
    zone: str, cron: str, before: datetime, expected: list[tuple[str, datetime]]
) -> None:
    daily = window(cron, "2h", zone)
    found = list(itertools.islice(windows.occurrences(daily, before), 3))
    assert [(local(o.start, zone), o.start) for o in found] == expected
    assert all(o.end - o.start == 2 * H for o in found)  # elapsed time, even on the short day


def test_spring_forward_in_berlin_keeps_the_full_duration() -> None:
    daily = window("30 2 * * *", "2h", "Europe/Berlin")
    gap_day = windows.occurrence_at(daily, utc(2025, 3, 30, 2))
    assert gap_day is not None and local(gap_day.end, "Europe/Berlin") == "2025-03-30 05:00 CEST"


def test_several_start_times_inside_one_gap_open_once() -> None:
    quarter_hours = window("0,15,30,45 2 * * *", "10m", "Europe/Berlin")
    assert starts(quarter_hours, utc(2025, 3, 29, 12), 3) == [
        utc(2025, 3, 30, 1),  # 02:00, 02:15, 02:30 and 02:45 all fall in the gap: one opening
        utc(2025, 3, 31, 0),  # 02:00 CEST the next night
        utc(2025, 3, 31, 0, 15),
    ]


def test_fall_back_in_new_york_opens_once_at_the_first_0130_for_two_real_hours() -> None:
    # At 02:00 EDT on 2025-11-02 clocks go back to 01:00 EST: 01:30 happens twice.
    daily = window("30 1 * * *", "2h", "America/New_York")
    found = list(itertools.islice(windows.occurrences(daily, utc(2025, 11, 1)), 3))
    assert [o.start for o in found] == [
        utc(2025, 11, 1, 5, 30),
        utc(2025, 11, 2, 5, 30),
        utc(2025, 11, 3, 6, 30),
    ]
    fall_back = found[1]
    assert local(fall_back.start, "America/New_York") == "2025-11-02 01:30 EDT"
    assert local(fall_back.end, "America/New_York") == "2025-11-02 02:30 EST"
    # During the second 01:30 the window is still the first one's, and it does not open again.
    second_0145 = utc(2025, 11, 2, 6, 45)
    assert local(second_0145, "America/New_York") == "2025-11-02 01:45 EST"
    assert windows.occurrence_at(daily, second_0145) == fall_back
    assert windows.next_occurrence(daily, second_0145) == found[2]


def test_fall_back_in_berlin_opens_once() -> None:
    # At 03:00 CEST on 2025-10-26 clocks go back to 02:00 CET: 02:30 happens twice.
    daily = window("30 2 * * *", "2h", "Europe/Berlin")
    first, second = starts(daily, utc(2025, 10, 25, 12), 2)
    assert (first, local(first, "Europe/Berlin")) == (
        utc(2025, 10, 26, 0, 30),
        "2025-10-26 02:30 CEST",
    )
    assert (second, local(second, "Europe/Berlin")) == (
        utc(2025, 10, 27, 1, 30),
        "2025-10-27 02:30 CET",
    )


def test_an_hourly_window_opens_once_per_wall_clock_hour_on_the_25_hour_day() -> None:
    hourly = window("30 * * * *", "10m", "Europe/Berlin")
    zone = ZoneInfo("Europe/Berlin")
    day = [o.start for o in itertools.islice(windows.occurrences(hourly, utc(2025, 10, 25, 21)), 30)
           if o.start.astimezone(zone).date() == date(2025, 10, 26)]  # fmt: skip
    assert [s.astimezone(zone).hour for s in day] == list(range(24))
    assert utc(2025, 10, 26, 1, 30) not in day  # the second 02:30 (CET)


def test_fall_back_on_lord_howe_opens_once_at_the_first_0145() -> None:
    # At 02:00 +11 on 2025-04-06 clocks go back 30 minutes to 01:30 +1030.
    daily = window("45 1 * * *", "1h", "Australia/Lord_Howe")
    assert starts(daily, utc(2025, 4, 5), 2) == [
        utc(2025, 4, 5, 14, 45),  # 01:45 +11, the first of the two
        utc(2025, 4, 6, 15, 15),  # 01:45 +1030 the next night
    ]


# --------------------------------------------------------------------------------------------
# Property: the next opening is the first cron time after now, found by brute force


ZONES = [
    "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago",
    "Pacific/Chatham", "America/St_Johns", "Asia/Kolkata", "UTC",
]  # fmt: skip
YEAR = utc(2025, 1, 1)
MINUTE = timedelta(minutes=1)


@functools.cache
def transitions(zone: str) -> list[datetime]:
    """The instants in 2025 where the zone's UTC offset changes (found by the hour, then minute)."""
    tz = ZoneInfo(zone)

    def offset(moment: datetime) -> timedelta | None:
        return moment.astimezone(tz).utcoffset()

    hours = [YEAR + n * H for n in range(366 * 24)]
    changed = [b for a, b in itertools.pairwise(hours) if offset(a) != offset(b)]
    return [next(b - m * MINUTE for m in range(60) if offset(b - (m + 1) * MINUTE) != offset(b))
            for b in changed]  # fmt: skip


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, int, int, datetime]:
    zone = draw(st.sampled_from(ZONES))
    hour = draw(st.integers(0, 23) | st.sampled_from([0, 1, 2, 3]))  # DST moves the small hours
    minute = draw(st.integers(0, 59) | st.sampled_from([0, 15, 30, 45]))
    changes = transitions(zone)
    where = draw(st.sampled_from(["anywhere", "near a change", "aimed at a change"]))
    if not changes or where == "anywhere":
        return zone, hour, minute, YEAR + timedelta(seconds=draw(st.integers(0, 365 * 86400)))
    change = draw(st.sampled_from(changes))
    if where == "near a change":
        return zone, hour, minute, change + timedelta(seconds=draw(st.integers(-129600, 129600)))
    # A cron time the clock skips or shows twice (or the edge just after), asked the day before.
    tz = ZoneInfo(zone)
    before, after = (change - MINUTE).astimezone(tz).utcoffset(), change.astimezone(tz).utcoffset()
    assert before is not None and after is not None
    edge = (change + min(before, after)).replace(tzinfo=None)
    wall = edge + draw(st.integers(0, abs(after - before) // MINUTE)) * MINUTE
    return zone, wall.hour, wall.minute, change - timedelta(seconds=draw(st.integers(1, 108000)))


def first_fire_after(zone: str, hour: int, minute: int, now: datetime) -> datetime:
    """Step through real minutes and read the wall clock: the first that is the cron time."""
    tz = ZoneInfo(zone)
    moment = now.replace(second=0, microsecond=0) + MINUTE
    previous = (moment - MINUTE).astimezone(tz)
    while True:
        here = moment.astimezone(tz)
        wall = here.replace(tzinfo=None)
        target = datetime.combine(wall.date(), time(hour, minute))
        if wall == target and here.fold == 0:
            return moment  # the cron time, on its first pass if the clock shows it twice
        if previous.replace(tzinfo=None) < target < wall:
            return moment  # the clock jumped over the cron time: the first instant after the gap
        previous, moment = here, moment + MINUTE


@settings(max_examples=150, deadline=None)
@given(cases(), st.integers(1, 12 * 60))
def test_next_occurrence_is_the_first_cron_time_after_now(
    case: tuple[str, int, int, datetime], minutes: int
) -> None:
    zone, hour, minute, now = case
    daily = window(f"{minute} {hour} * * *", timedelta(minutes=minutes), zone)
    found = windows.next_occurrence(daily, now)
    assert found is not None
    # Equal to the brute-force scan: after now, a cron time (or a gap's end), none in between.
    assert found.start > now
    assert found.start == first_fire_after(zone, hour, minute, now)
    assert found.end == found.start + timedelta(minutes=minutes)
    # Open exactly over [start, end): at most 12h long, a daily window cannot overlap itself.
    assert windows.occurrence_at(daily, found.start) == found
    assert windows.occurrence_at(daily, found.end - timedelta(microseconds=1)) == found
    assert windows.occurrence_at(daily, found.end) is None
    assert windows.occurrence_at(daily, found.start - timedelta(microseconds=1)) is None
