"""Maintenance windows: recurring spans of time in which a node may apply changes.

A schedule is a YAML document::

    windows:
      - name: nightly
        cron: "30 2 * * *"          # when it opens: minute hour day-of-month month day-of-week
        duration: 2h                # how long it stays open: 2h, 90m, 1h30m, 45s, or seconds
        timezone: Europe/Berlin     # IANA name; the cron is read on this zone's wall clock
        blackout: [2025-12-24, {from: 2025-12-27, to: 2026-01-02}]
        selector: {site: plant-a}   # or nodes: [node-7]; with neither it applies to every node

The rules, in the order they are applied:

- **Cron in local wall time.** Fire times are computed on the window's wall clock (croniter over
  naive local times), five fields with the usual cron meaning (when both day-of-month and
  day-of-week are restricted, either one matching is enough). Only then is each fire time turned
  into an instant with zoneinfo.
- **Spring forward.** A fire time that does not exist (02:30 in Europe/Berlin on the last Sunday
  of March) moves forward to the first valid instant after the gap: the transition itself, 03:00
  local. Several fire times in one gap collapse into that one occurrence.
- **Fall back.** A fire time that happens twice (01:30 in America/New_York on the first Sunday of
  November) means its first occurrence (``fold=0``), and the window opens once, not twice.
- **Duration is elapsed time.** An occurrence ends ``duration`` of real time after it starts, so a
  2h window opening at 01:30 EDT on fall-back night closes at 02:30 EST.
- **Blackouts go by the start date.** An occurrence whose start falls, in the window's timezone,
  on a blackout date (or within a ``{from, to}`` range, both ends included) does not happen. One
  that started the day before runs to its end even though it is open across the boundary.
- **Half-open.** An occurrence is open from ``start`` (included) to ``end`` (excluded).
- **Overlaps merge.** For a node, overlapping or touching occurrences of all its windows form one
  open span: ``closes_at`` is when the last of them closes.

What happens at the close is the gate's business (no new resource starts after ``closes_at``;
the one running finishes); this module only says when that is. Everything here is pure: the
current time is always a parameter, an aware ``datetime`` (converted to UTC), and every instant
returned is in UTC. Searches look ``HORIZON`` ahead at most; a window with no occurrence in that
span (blacked out for good, or a cron such as Feb 29 that is rare) reports none.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from accord import errors
from accord.model.yamlpos import LOADER, Locator

HORIZON = timedelta(days=3653)
"""How far ahead a search looks: ten years, enough for a Feb 29 cron across 2100."""
MAX_MERGED = 1000
"""Occurrences merged into one open span at most; past it ``closes_at`` is an early bound."""
MAX_DURATION = timedelta(days=7)


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# A cron must fire at least once in croniter's 50-year search from here (rejects "0 0 30 2 *").
_CRON_PROBE = datetime(2000, 1, 1)
_FROZEN = ConfigDict(frozen=True, extra="forbid")


class WindowError(errors.InputError):
    """A windows file failed to parse or validate.

    Attributes:
        problems: one line per problem: ``file:line: window 'name': field: message``.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        head = f"{source}: invalid windows ({len(problems)} problem{'s' * (len(problems) != 1)})"
        super().__init__("\n".join([head, *(f"  {p}" for p in problems)]))


def format_duration(value: timedelta) -> str:
    """``1h30m`` style, the form ``duration`` accepts (whole seconds)."""
    seconds = int(value.total_seconds())
    parts = []
    rest = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return ("-" if seconds < 0 else "") + ("".join(parts) or "0s")


def _as_date(value: object) -> date:
    # Checked by hand: pydantic would read a number as a Unix timestamp and accept datetimes.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"no such date: {value!r}") from None
    raise ValueError(f"expected a date 'YYYY-MM-DD', got {value!r}")


class DateRange(BaseModel):
    """Blackout days ``from`` .. ``to``, both included, in the window's timezone."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True
    )

    first: date = Field(alias="from")
    last: date = Field(alias="to")

    @field_validator("first", "last", mode="before")
    @classmethod
    def _iso_date(cls, value: object) -> date:
        return _as_date(value)

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.first > self.last:
            raise ValueError(f"'from' ({self.first}) is after 'to' ({self.last})")
        return self

    def covers(self, day: date) -> bool:
        return self.first <= day <= self.last


def _one_day(value: object) -> object:
    """A bare date in ``blackout`` is a one-day range."""
    if isinstance(value, Mapping | DateRange):
        return value
    day = _as_date(value)
    return DateRange(first=day, last=day)


def _parse_duration(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    try:
        if isinstance(value, int | float):
            return timedelta(seconds=value)
        if isinstance(value, str):
            text = "".join(value.split()).lower()
            if text.isdigit():
                return timedelta(seconds=int(text))
            match = _DURATION.fullmatch(text)
            if text and match:
                days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
                return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
            if text.startswith("p"):
                return value  # ISO 8601 ("PT2H"), the form model_dump(mode="json") writes
            raise ValueError(
                "expected a duration like '2h', '90m', '1h30m', '45s' or a number of seconds, "
                f"got {value!r}"
            )
    except OverflowError:  # an absurd number (or .inf) of seconds
        raise ValueError(f"duration out of range: {value!r}") from None
    return value  # a timedelta already, or something pydantic will reject with its own message


class Window(BaseModel):
    """One recurring maintenance window. See the module docstring for the rules."""

    model_config = _FROZEN

    name: str = Field(min_length=1)
    cron: str
    duration: timedelta
    timezone: str
    blackout: tuple[Annotated[DateRange, BeforeValidator(_one_day)], ...] = ()
    nodes: tuple[str, ...] = ()
    selector: dict[str, str] = Field(default_factory=dict)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5:
            raise ValueError(
                "expected 5 fields (minute hour day-of-month month day-of-week), "
                f"got {len(fields)} in {value!r}"
            )
        expression = " ".join(fields)
        from croniter import (  # imported on use: croniter costs ~15 ms of every CLI start
            CroniterBadDateError,
            CroniterBadTypeRangeError,
            CroniterError,
            croniter,
        )

        try:
            croniter(expression, _CRON_PROBE).get_next(datetime)
        except CroniterBadDateError:
            raise ValueError(f"{expression!r} never fires (no such date)") from None
        except (CroniterError, CroniterBadTypeRangeError) as exc:
            raise ValueError(f"not a valid cron expression: {exc}") from None
        return expression

    @field_validator("duration", mode="before")
    @classmethod
    def _readable_duration(cls, value: object) -> object:
        return _parse_duration(value)

    @field_validator("duration")
    @classmethod
    def _duration_in_range(cls, value: timedelta) -> timedelta:
        if not timedelta(0) < value < MAX_DURATION:
            raise ValueError(
                f"must be more than 0 and less than 7 days, got {format_duration(value)}"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (KeyError, ValueError, OSError):  # not found, a malformed key, a directory
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # zoneinfo caches instances by key

    def applies_to(self, node_id: str | None, labels: Mapping[str, str]) -> bool:
        """Listed in ``nodes``, or labels match every pair of ``selector``; neither: everyone."""
        if not self.nodes and not self.selector:
            return True
        if node_id is not None and node_id in self.nodes:
            return True
        return bool(self.selector) and all(labels.get(k) == v for k, v in self.selector.items())

    def blacked_out(self, day: date) -> DateRange | None:
        """The blackout range that covers ``day`` (a date in the window's timezone), if any."""
        return next((r for r in self.blackout if r.covers(day)), None)


class Schedule(BaseModel):
    """The windows of a site; names are unique."""

    model_config = _FROZEN

    windows: tuple[Window, ...] = ()

    @field_validator("windows")
    @classmethod
    def _unique_names(cls, windows: tuple[Window, ...]) -> tuple[Window, ...]:
        names = [w.name for w in windows]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate window names: {', '.join(duplicates)}")
        return windows

    def get(self, name: str) -> Window:
        """The window called ``name``; ``KeyError`` if there is none."""
        for window in self.windows:
            if window.name == name:
                return window
        raise KeyError(name)


class Occurrence(BaseModel):
    """One opening of a window: open from ``start`` (included) to ``end`` (excluded), in UTC."""

    model_config = _FROZEN

    window: str
    start: datetime
    end: datetime


class WindowStatus(BaseModel):
    """Whether a node may apply at one instant, and until or from when.

    Attributes:
        open: some window of the node is open.
        window: the open window (the one closing last if several are), else None.
        closes_at: when the open span ends (overlapping and touching occurrences of all the
            node's windows merge); None when closed.
        next_opens_at: when closed, the next opening; when open, the first opening after
            ``closes_at``. None if there is none within ``HORIZON``.
        next_window: the window that opens at ``next_opens_at``.
    """

    model_config = _FROZEN

    open: bool
    window: str | None = None
    closes_at: datetime | None = None
    next_opens_at: datetime | None = None
    next_window: str | None = None


# ---------------------------------------------------------------------------------------------
# Loading


def load_windows(text: str, *, source: str) -> Schedule:
    """Parse and validate a windows document (``windows: [...]``).

    Args:
        text: YAML (or JSON).
        source: a name for messages, usually the file path.

    Raises:
        WindowError: listing every problem as ``file:line: window 'name': field: message``.
    """
    data = _parse(text, source)
    if not isinstance(data, dict):
        raise WindowError(source, [f"{source}:1: expected a mapping with a 'windows' list"])
    items = data.get("windows")
    duplicates = _duplicates(items, text, source) if isinstance(items, list) else []
    try:
        document = _Document.model_validate(data)
    except ValidationError as exc:
        locate = Locator(text)
        problems = [_describe(err, items, locate, source) for err in exc.errors()]
        raise WindowError(source, [*problems, *duplicates]) from None
    if duplicates:
        raise WindowError(source, duplicates)
    return Schedule(windows=document.windows)


class _Document(BaseModel):
    """A schedule before its cross-window checks, which need line numbers (see load_windows)."""

    model_config = _FROZEN

    windows: tuple[Window, ...] = ()


def _parse(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=LOADER)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise WindowError(source, [f"{source}:{line}: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise WindowError(source, [f"{source}: {exc}"]) from None


def _duplicates(items: list[Any], text: str, source: str) -> list[str]:
    """Names used twice, checked on the raw items so they are reported with the other problems."""
    first: dict[str, int] = {}
    problems: list[str] = []
    locate: Locator | None = None
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue  # pydantic reports it
        if name not in first:
            first[name] = index
            continue
        locate = locate or Locator(text)  # lines are looked up only for what is wrong
        earlier = locate(("windows", first[name], "name"))
        problems.append(
            f"{source}:{locate(('windows', index, 'name'))}: window {name!r}: name: "
            f"duplicate window name (first at line {earlier})"
        )
    return problems


def _describe(err: Any, items: Any, locate: Locator, source: str) -> str:
    loc: tuple[Any, ...] = tuple(err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    if len(loc) >= 2 and loc[0] == "windows" and isinstance(loc[1], int):
        raw = items[loc[1]]  # pydantic reported an index into the list, so the item is there
        name = raw.get("name") if isinstance(raw, dict) else None
        subject = f"window {name!r}" if isinstance(name, str) and name else f"windows[{loc[1]}]"
        field = ".".join(str(part) for part in loc[2:]) or "window"
        return f"{source}:{locate(loc)}: {subject}: {field}: {message}"
    return f"{source}:{locate(loc)}: {'.'.join(str(p) for p in loc)}: {message}"


def occurrences(window: Window, after: datetime) -> Iterator[Occurrence]:
    """Every occurrence of ``window`` that starts strictly after ``after``, in order.

    Stops at ``HORIZON`` past ``after``. Lazy: take what you need.
    """
    after = _utc(after)
    zone = window.tz
    wall = after.astimezone(zone).replace(tzinfo=None)
    limit = wall + HORIZON
    from croniter import CroniterBadDateError, croniter

    fires = croniter(window.cron, wall)
    last = after
    while True:
        try:
            fire: datetime = fires.get_next(datetime)
        except CroniterBadDateError:  # croniter's own 50-year search found nothing
            return
        if fire > limit:
            return
        start = _instant(fire, zone)
        if start <= last:
            # Not after `after` (wall times repeat at fall-back, and `wall` lost the fold), or a
            # second fire time in the same gap collapsing onto the occurrence just yielded.
            continue
        blocked = window.blacked_out(start.astimezone(zone).date())
        if blocked is not None:
            # Jump past the whole range: stepping a minutely cron through weeks would crawl.
            fires.set_current(datetime.combine(blocked.last + timedelta(days=1), time()) - _SECOND)
            continue
        last = start
        yield Occurrence(window=window.name, start=start, end=start + window.duration)


def next_occurrence(window: Window, now: datetime) -> Occurrence | None:
    """The next opening: the first occurrence starting strictly after ``now``.

    An occurrence open at ``now`` is not "next"; ask ``occurrence_at`` for it. None if the
    window does not open within ``HORIZON``.
    """
    return next(occurrences(window, now), None)


def occurrence_at(window: Window, now: datetime) -> Occurrence | None:
    """The occurrence open at ``now`` (``start <= now < end``), if any.

    If several overlap (a cron firing more often than ``duration``), the one closing last.
    """
    now = _utc(now)
    current = None
    for occurrence in occurrences(window, now - window.duration):  # start > now - duration
        if occurrence.start > now:
            break
        current = occurrence  # same duration for all, so the latest start closes last
    return current


def windows_for(
    schedule: Schedule, node_id: str | None, labels: Mapping[str, str]
) -> tuple[Window, ...]:
    """The windows that apply to a node (``node_id`` None: matched by labels only)."""
    return tuple(w for w in schedule.windows if w.applies_to(node_id, labels))


def upcoming(windows: Iterable[Window], now: datetime) -> Iterator[Occurrence]:
    """Occurrences of all ``windows`` starting strictly after ``now``, merged in start order."""
    streams = [occurrences(w, now) for w in windows]
    return heapq.merge(*streams, key=lambda o: (o.start, o.window))


def status_of(windows: Sequence[Window], now: datetime) -> WindowStatus:
    """Open or closed at ``now`` over exactly these windows. See ``WindowStatus``."""
    now = _utc(now)
    following = upcoming(windows, now)
    open_now = [o for w in windows if (o := occurrence_at(w, now)) is not None]
    if not open_now:
        first = next(following, None)
        if first is None:
            return WindowStatus(open=False)
        return WindowStatus(open=False, next_opens_at=first.start, next_window=first.window)
    # Ties on the close go to the first name, so the answer does not depend on file order.
    current = max(sorted(open_now, key=lambda o: o.window), key=lambda o: o.end)
    closes_at = current.end
    for occurrence in itertools.islice(following, MAX_MERGED):
        if occurrence.start > closes_at:
            return WindowStatus(
                open=True,
                window=current.window,
                closes_at=closes_at,
                next_opens_at=occurrence.start,
                next_window=occurrence.window,
            )
        closes_at = max(closes_at, occurrence.end)  # opens before the span closes: extends it
    return WindowStatus(open=True, window=current.window, closes_at=closes_at)


def status_at(
    schedule: Schedule, node_id: str | None, labels: Mapping[str, str], now: datetime
) -> WindowStatus:
    """Whether ``node_id`` (with ``labels``) is inside one of its windows at ``now``."""
    return status_of(windows_for(schedule, node_id, labels), now)


_SECOND = timedelta(seconds=1)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"expected an aware datetime, got the naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant a local wall-clock time names, by the DST rules of the module docstring."""
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant  # it exists; if it is ambiguous, fold=0 picked the first of the two
    # In a gap. Read with the offset before the jump and with the one after (fold=0 and fold=1),
    # the wall time names two instants that bracket the transition; bisect to it in seconds.
    readings = (instant, wall.replace(tzinfo=zone, fold=1).astimezone(UTC))
    low, high = (int(moment.timestamp()) for moment in sorted(readings))
    after = datetime.fromtimestamp(high, zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)
