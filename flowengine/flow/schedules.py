"""Business hours: named schedules, time in templates, and the clock they read.

A flow's ``schedules:`` (docs/flow-language.md, *Schedules*) are compiled once per
FlowVersion by :func:`compile_schedule` into frozen :class:`Schedule` objects; templates ask
them through ``is_open('support')``, ``next_open(…)`` and ``next_close(…)``, and read the time
with ``now(tz)`` and ``today(tz)``. All of these read the call's :class:`Clock`, which the
engine gives each call (:class:`WallClock` by default; ``run --at`` and a scenario's ``at:``
give a :class:`SetClock`), through a :class:`CallTime` the template context carries under
:data:`TIME_KEY`.

Opening hours are wall-clock times in the schedule's zone: 09:00 is 09:00 local on the days
the clocks change too. A range whose end is not after its start runs overnight into the next
day (``22:00-06:00``) and belongs to the day it starts on. A ``closed:`` date cancels its own
ranges and closes the whole calendar day (an overnight range from the evening before
included); an ``open:`` entry replaces its date's weekly hours (and wins over ``closed:``).

Values handed to templates are :class:`FlowTime` objects, not ``datetime``s: a ``datetime``
reaches ``now()`` (the real clock, past the set one) and C ``strftime``, whose field widths
(``%1000000000Y``) would build any size of text. ``FlowTime.strftime`` is our own, bounded
implementation of the common directives, with English names whatever the locale.
"""

from __future__ import annotations

import bisect
import functools
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from types import MappingProxyType
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

#: The template context's key for the call's :class:`CallTime`: not a Jinja name, so no
#: template can read it.
TIME_KEY = "flowengine.time"
#: The template functions that take a schedule's name as their first argument.
SCHEDULE_FUNCTIONS = ("is_open", "next_open", "next_close")
#: The template functions that take a time zone name as their first argument.
ZONE_FUNCTIONS = ("now", "today")
#: The longest format ``strftime`` takes (its result is at most ~10 times longer).
MAX_FORMAT_LENGTH = 256
#: How far ahead ``next_open``/``next_close`` look, in days.
HORIZON_DAYS = 400

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August",
               "September", "October", "November", "December")
_DAY_INDEX = {**{d: i for i, d in enumerate(DAYS)},
              **{n.lower(): i for i, n in enumerate(DAY_NAMES)}}
_DAY_SECONDS = 86_400
_WEEK_SECONDS = 7 * _DAY_SECONDS


class ScheduleError(ValueError):
    """A time zone, day, time, date or format that cannot be used (the message says why)."""


# -- time zones --------------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _zone_or_error(name: str) -> ZoneInfo | str:
    # Cached, the error too: a template that names a bad zone on every call does not
    # walk the tz database each time.
    if not name or name.startswith(("/", ".")) or ".." in name or "\\" in name:
        return f"unknown time zone '{name}'"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown time zone '{name}'"


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Berlin``, ``UTC``).

    Raises:
        ScheduleError: when there is no such zone.
    """
    if not isinstance(name, str) or len(name) > 64:
        shown = repr(name) if not isinstance(name, str) else f"'{name[:40]}…'"
        raise ScheduleError(f"a time zone is a name such as 'Europe/Berlin', not {shown}")
    found = _zone_or_error(name)
    if isinstance(found, str):
        raise ScheduleError(found)
    return found


def zone_hint(name: str) -> str | None:
    """A 'did you mean' for an unknown zone name, or None."""
    import difflib

    names = _zone_names()
    lowered = {n.lower(): n for n in names}
    if name.lower() in lowered:
        return f"did you mean '{lowered[name.lower()]}'? (zone names are case-sensitive)"
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    if close:
        return f"did you mean '{close[0]}'?"
    return "time zones are IANA names such as 'Europe/Berlin', 'America/New_York' or 'UTC'"


@functools.cache
def _zone_names() -> list[str]:
    return sorted(available_timezones())


# -- the clock ---------------------------------------------------------------------------------

class Clock(Protocol):
    """Where a call's templates get the time."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class WallClock:
    """The machine's clock."""

    __slots__ = ()

    def now(self) -> datetime:
        """The current time (UTC)."""
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "WallClock()"


#: The clock calls get unless they are given another.
WALL_CLOCK = WallClock()


class SetClock:
    """A clock set to ``at`` when created, from then on running with the call: at
    ``time_scale`` 0.1 (simulated time ten times faster than real time) one real second
    moves it ten seconds, as the simulated call's own time moves."""

    __slots__ = ("_monotonic", "_started", "at", "time_scale")

    def __init__(self, at: datetime, time_scale: float = 1.0, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """``monotonic``: what measures the time since (the event loop's clock, for a call
        on virtual time: ``asyncio.get_running_loop().time``)."""
        if at.tzinfo is None:
            raise ValueError("a SetClock needs a timezone-aware time")
        self.at = at
        self.time_scale = time_scale
        self._monotonic = monotonic
        self._started = monotonic()

    def now(self) -> datetime:
        """``at`` plus the (scaled) time since the clock was created."""
        return self.at + timedelta(seconds=(self._monotonic() - self._started) / self.time_scale)

    def __repr__(self) -> str:
        return f"SetClock({self.at.isoformat()!r}, time_scale={self.time_scale:g})"


def parse_at(text: str, tz: str | None = None) -> datetime:
    """A moment written ``2026-12-24T18:00`` (or ``2026-12-24 18:00:30``, or a date alone:
    its midnight) in the zone ``tz`` (default UTC), or with its own offset
    (``2026-12-24T18:00+01:00``, ``…Z``; then ``tz`` must not be given).

    Raises:
        ScheduleError: for a malformed time, an unknown zone, a time with both an offset and
            a zone, or a local time that does not exist (the hour the clocks skip).
    """
    if not isinstance(text, str):
        raise ScheduleError(f"a time is written like 2026-12-24T18:00, not {text!r}")
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleError(f"'{text}' is not a time: write it like 2026-12-24T18:00 "
                            "(ISO 8601, the zone given apart)") from None
    if parsed.tzinfo is not None:
        if tz is not None:
            raise ScheduleError(f"'{text}' has its own UTC offset; give either the offset or "
                                f"the time zone ('{tz}'), not both")
        return parsed
    where = zone(tz) if tz is not None else UTC
    aware = parsed.replace(tzinfo=where)
    if _wall(_normalise(aware)) != parsed:
        raise ScheduleError(f"{parsed.isoformat(timespec='minutes')} does not exist in {tz}: "
                            "the clocks skip that hour")
    return aware


def has_offset(text: str) -> bool:
    """Whether the time ``text`` carries its own UTC offset (``…+01:00``, ``…Z``)."""
    try:
        return datetime.fromisoformat(text.strip()).tzinfo is not None
    except (ValueError, AttributeError):
        return False


def _normalise(aware: datetime) -> datetime:
    """An aware time with a real offset (a wall time in a gap moves past the gap)."""
    tz = aware.tzinfo
    assert tz is not None
    return aware.astimezone(UTC).astimezone(tz)


def _wall(aware: datetime) -> datetime:
    return aware.replace(tzinfo=None)


# -- what templates see ------------------------------------------------------------------------

class FlowTime:
    """A moment in a time zone, as templates see it (``now('Europe/Berlin')``).

    Attributes as on a ``datetime`` (``year`` … ``second``), ``tz`` (the zone's name),
    ``weekday()`` (0 = Monday), ``isoweekday()`` (1 = Monday), ``strftime(fmt)`` (bounded,
    English names), ``isoformat()``, ``timestamp()``, ``astimezone(tz)``; it prints as its
    ISO form and compares with other FlowTimes. As data (``set``, ``vars``) it becomes its
    ISO text."""

    __slots__ = ("_dt", "tz")

    def __init__(self, dt: datetime, tz: str) -> None:
        self._dt = dt
        #: The zone's name (``UTC``, ``Europe/Berlin``).
        self.tz = tz

    @property
    def year(self) -> int:
        """The year."""
        return self._dt.year

    @property
    def month(self) -> int:
        """1 (January) … 12."""
        return self._dt.month

    @property
    def day(self) -> int:
        """The day of the month."""
        return self._dt.day

    @property
    def hour(self) -> int:
        """0 … 23."""
        return self._dt.hour

    @property
    def minute(self) -> int:
        """0 … 59."""
        return self._dt.minute

    @property
    def second(self) -> int:
        """0 … 59."""
        return self._dt.second

    def weekday(self) -> int:
        """0 (Monday) … 6 (Sunday)."""
        return self._dt.weekday()

    def isoweekday(self) -> int:
        """1 (Monday) … 7 (Sunday)."""
        return self._dt.isoweekday()

    def isoformat(self) -> str:
        """``2026-12-24T18:00:00+01:00`` (to the second)."""
        return self._dt.isoformat(timespec="seconds")

    def timestamp(self) -> float:
        """Seconds since the epoch."""
        return self._dt.timestamp()

    def strftime(self, fmt: str) -> str:
        """The time formatted (see :func:`format_time`)."""
        return format_time(self._dt, fmt)

    def astimezone(self, tz: str) -> FlowTime:
        """The same moment in the zone ``tz``."""
        return FlowTime(self._dt.astimezone(zone(tz)), tz)

    def __str__(self) -> str:
        return self.isoformat()

    def __repr__(self) -> str:
        return f"FlowTime({self.isoformat()!r}, {self.tz!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlowTime) and self._dt == other._dt

    def __hash__(self) -> int:
        return hash(self._dt)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, FlowTime):
            return NotImplemented
        return self._dt < other._dt

    def __le__(self, other: object) -> bool:
        if not isinstance(other, FlowTime):
            return NotImplemented
        return self._dt <= other._dt

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, FlowTime):
            return NotImplemented
        return self._dt > other._dt

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, FlowTime):
            return NotImplemented
        return self._dt >= other._dt


def to_datetime(value: FlowTime) -> datetime:
    """The aware ``datetime`` of a FlowTime, for Python code. Not a method: templates
    reach every public attribute, and a ``datetime`` would take them past the sandbox."""
    return value._dt


def _no_pad(value: int, width: int, pad: bool) -> str:
    return f"{value:0{width}d}" if pad else str(value)


#: directive → (value, width) for the numeric ones.
_NUMERIC: dict[str, Callable[[datetime], tuple[int, int]]] = {
    "d": lambda t: (t.day, 2),
    "m": lambda t: (t.month, 2),
    "y": lambda t: (t.year % 100, 2),
    "Y": lambda t: (t.year, 4),
    "H": lambda t: (t.hour, 2),
    "I": lambda t: ((t.hour % 12) or 12, 2),
    "M": lambda t: (t.minute, 2),
    "S": lambda t: (t.second, 2),
    "j": lambda t: (t.timetuple().tm_yday, 3),
    "u": lambda t: (t.isoweekday(), 1),
    "w": lambda t: (t.isoweekday() % 7, 1),
    "V": lambda t: (t.isocalendar()[1], 2),
    "G": lambda t: (t.isocalendar()[0], 4),
}


def _offset(t: datetime) -> str:
    delta = t.utcoffset() or timedelta(0)
    minutes = int(delta.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


_TEXTUAL: dict[str, Callable[[datetime], str]] = {
    "a": lambda t: DAY_NAMES[t.weekday()][:3],
    "A": lambda t: DAY_NAMES[t.weekday()],
    "b": lambda t: MONTH_NAMES[t.month - 1][:3],
    "B": lambda t: MONTH_NAMES[t.month - 1],
    "p": lambda t: "AM" if t.hour < 12 else "PM",
    "Z": lambda t: t.tzname() or "",
    "z": _offset,
    "F": lambda t: f"{t.year:04d}-{t.month:02d}-{t.day:02d}",
    "T": lambda t: f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}",
    "R": lambda t: f"{t.hour:02d}:{t.minute:02d}",
    "%": lambda t: "%",
}
#: Every directive :func:`format_time` knows, for messages and docs.
DIRECTIVES = "".join(sorted({*_NUMERIC, *_TEXTUAL} - {"%"})) + "%"


def format_time(t: datetime, fmt: str) -> str:
    """``t`` formatted like C ``strftime``, for the directives ``%a %A %b %B %d %m %y %Y %H
    %I %M %S %p %j %u %w %V %G %z %Z %F %T %R %%``; ``%-d`` (any numeric directive with
    ``-``) leaves out the padding. Names are English. No field widths.

    Raises:
        ScheduleError: for an unknown directive or a format longer than MAX_FORMAT_LENGTH.
    """
    if not isinstance(fmt, str):
        raise ScheduleError(f"strftime takes a format text such as '%H:%M', not {fmt!r}")
    if len(fmt) > MAX_FORMAT_LENGTH:
        raise ScheduleError(f"the strftime format is {len(fmt)} characters long; at most "
                            f"{MAX_FORMAT_LENGTH}")
    out: list[str] = []
    i, n = 0, len(fmt)
    while i < n:
        char = fmt[i]
        if char != "%":
            out.append(char)
            i += 1
            continue
        pad = True
        j = i + 1
        if j < n and fmt[j] == "-":
            pad = False
            j += 1
        code = fmt[j] if j < n else ""
        numeric = _NUMERIC.get(code)
        if numeric is not None:
            value, width = numeric(t)
            out.append(_no_pad(value, width, pad))
        elif code in _TEXTUAL and pad:
            out.append(_TEXTUAL[code](t))
        else:
            shown = fmt[i:j + 1]
            raise ScheduleError(f"unknown strftime directive '{shown}'; known: "
                                + " ".join(f"%{c}" for c in DIRECTIVES)
                                + " (and %-d, %-H … without padding)")
        i = j + 1
    return "".join(out)


def check_format(fmt: str) -> None:
    """Raise ScheduleError when ``fmt`` is not a format :func:`format_time` takes."""
    format_time(datetime(2000, 1, 1, tzinfo=UTC), fmt)


def strftime_filter(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """The ``strftime`` filter: a FlowTime (``now(…)``) or an ISO 8601 text formatted."""
    if isinstance(value, FlowTime):
        return value.strftime(fmt)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ScheduleError(f"strftime: '{value[:40]}' is not an ISO 8601 time") from None
        return format_time(parsed, fmt)
    raise ScheduleError(f"strftime formats a time (now(…), next_open(…)) or ISO 8601 text, "
                        f"not a {type(value).__name__}")


# -- schedules ---------------------------------------------------------------------------------

#: A range of a day: (start, end) in seconds from its midnight; end > start, and past
#: 86,400 for a range that runs overnight into the next day.
Range = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Schedule:
    """One named schedule: weekly hours in a zone, closed dates, special openings."""

    name: str
    timezone: str
    zone: tzinfo = field(repr=False)
    #: Monday … Sunday: that day's ranges, sorted.
    weekly: tuple[tuple[Range, ...], ...]
    #: Dates closed all day.
    closed_dates: frozenset[date] = frozenset()
    #: (month, day) closed every year.
    closed_yearly: frozenset[tuple[int, int]] = frozenset()
    #: (first, last) date spans closed, both included: sorted, merged, not touching.
    closed_spans: tuple[tuple[date, date], ...] = ()
    #: The first days of ``closed_spans``, for bisect.
    _span_firsts: tuple[date, ...] = field(default=(), repr=False)
    #: date → that date's ranges instead of the weekly ones.
    special: Mapping[date, tuple[Range, ...]] = field(
        default_factory=lambda: MappingProxyType({}))

    def is_closed_date(self, day: date) -> bool:
        """Whether ``day`` is a closed date (and no special opening replaces it)."""
        if day in self.special:
            return False
        if day in self.closed_dates or (day.month, day.day) in self.closed_yearly:
            return True
        # Bisect, not a scan: next_open asks this for each of up to 400 days.
        index = bisect.bisect_right(self._span_firsts, day) - 1
        return index >= 0 and day <= self.closed_spans[index][1]

    def ranges_of(self, day: date) -> tuple[Range, ...]:
        """The ranges that start on ``day`` (none on a closed date)."""
        special = self.special.get(day)
        if special is not None:
            return special
        weekly = self.weekly[day.weekday()]
        if not weekly or self.is_closed_date(day):
            return ()
        return weekly

    def is_open(self, moment: datetime) -> bool:
        """Whether the schedule is open at ``moment`` (an aware time)."""
        local = moment.astimezone(self.zone)
        day = local.date()
        if self.is_closed_date(day):
            return False
        second = local.hour * 3600 + local.minute * 60 + local.second
        if any(start <= second < end for start, end in self.ranges_of(day)):
            return True
        overnight = second + _DAY_SECONDS
        return any(end > overnight for _, end in self.ranges_of(day - timedelta(days=1)))

    def _periods(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The open periods (wall times, adjacent ones merged) that end after ``moment``,
        in order, up to HORIZON_DAYS ahead."""
        local = _wall(moment.astimezone(self.zone))
        first = local.date() - timedelta(days=1)
        current: tuple[datetime, datetime] | None = None
        for offset in range(HORIZON_DAYS + 2):
            day = first + timedelta(days=offset)
            midnight = datetime(day.year, day.month, day.day)
            for start, end in self.ranges_of(day):
                begin = midnight + timedelta(seconds=start)
                if end > _DAY_SECONDS and self.is_closed_date(day + timedelta(days=1)):
                    end = _DAY_SECONDS  # the next day is closed: the night stops at midnight
                finish = midnight + timedelta(seconds=end)
                if finish <= local:
                    continue
                if current is not None and begin <= current[1]:
                    current = (current[0], max(current[1], finish))
                    continue
                if current is not None:
                    yield current
                current = (begin, finish)
        if current is not None:
            yield current

    def _aware(self, wall: datetime) -> datetime:
        return _normalise(wall.replace(tzinfo=self.zone))

    def next_open(self, moment: datetime) -> datetime | None:
        """``moment`` when open then, else when it next opens; None when it does not open
        within HORIZON_DAYS."""
        if self.is_open(moment):
            return moment.astimezone(self.zone)
        local = _wall(moment.astimezone(self.zone))
        for begin, _ in self._periods(moment):
            if begin > local:
                return self._aware(begin)
        return None

    def next_close(self, moment: datetime) -> datetime | None:
        """When the period open at ``moment`` ends (or, when closed then, the next one's
        end); None when it does not close within HORIZON_DAYS."""
        local = _wall(moment.astimezone(self.zone))
        for _, finish in self._periods(moment):
            # A period still open at the horizon's end (24/7 hours) is not a closing time.
            if finish.date() > local.date() + timedelta(days=HORIZON_DAYS):
                return None
            return self._aware(finish)
        return None


class CallTime:
    """One call's clock and its flow's schedules: what ``now()``, ``is_open()`` … read."""

    __slots__ = ("clock", "schedules")

    def __init__(self, clock: Clock = WALL_CLOCK,
                 schedules: Mapping[str, Schedule] | None = None) -> None:
        self.clock = clock
        self.schedules: Mapping[str, Schedule] = schedules if schedules is not None else {}

    def now(self, tz: str = "UTC") -> FlowTime:
        """The time now in ``tz``."""
        return FlowTime(self.clock.now().astimezone(zone(tz)), tz)

    def today(self, tz: str = "UTC") -> str:
        """Today's date in ``tz``, ``2026-12-24``."""
        return self.clock.now().astimezone(zone(tz)).date().isoformat()

    def schedule(self, name: str) -> Schedule:
        """The flow's schedule ``name``; ScheduleError when there is none."""
        found = self.schedules.get(name) if isinstance(name, str) else None
        if found is None:
            known = ", ".join(self.schedules) or "none"
            raise ScheduleError(f"unknown schedule {name!r}; this flow's schedules: {known}")
        return found

    def is_open(self, name: str) -> bool:
        """Whether schedule ``name`` is open now."""
        return self.schedule(name).is_open(self.clock.now())

    def next_open(self, name: str) -> FlowTime | None:
        """Now if schedule ``name`` is open, else when it next opens (None: not within
        HORIZON_DAYS), in the schedule's zone."""
        schedule = self.schedule(name)
        found = schedule.next_open(self.clock.now())
        return None if found is None else FlowTime(found, schedule.timezone)

    def next_close(self, name: str) -> FlowTime | None:
        """When schedule ``name`` closes next (None: not within HORIZON_DAYS)."""
        schedule = self.schedule(name)
        found = schedule.next_close(self.clock.now())
        return None if found is None else FlowTime(found, schedule.timezone)


#: What templates use when their context carries no CallTime (a render outside a call).
_NO_CALL = CallTime()


def call_time(context: Mapping[str, Any]) -> CallTime:
    """The CallTime of a template context (the wall clock and no schedules if it has none)."""
    found = context.get(TIME_KEY)
    return found if isinstance(found, CallTime) else _NO_CALL


# -- compiling ``schedules:`` ------------------------------------------------------------------

#: Reports one problem: (path inside ``schedules:``, message, key?, hint).
Report = Callable[[tuple[str | int, ...], str, bool, str | None], None]

_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_RANGE = re.compile(r"\s*(\S+?)\s*-\s*(\S+?)\s*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_YEARLY = re.compile(r"(\d{2})-(\d{2})")
_SPECIAL = re.compile(r"\s*(\d{4}-\d{2}-\d{2})\s+(.+)")


def parse_time(text: str, *, end: bool = False) -> int:
    """``09:00`` → seconds from midnight; ``24:00`` only as an end."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise ScheduleError(f"'{text}' is not a time of day: write HH:MM, e.g. 09:00 or 17:30")
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise ScheduleError(f"'{text}' is not a time of day: hours are 00 to 23 (24:00 only "
                            "as an end), minutes 00 to 59")
    return hours * 3600 + minutes * 60


def parse_range(text: str) -> Range:
    """``09:00-17:30`` → (start, end) seconds; an end not after the start is the next day's
    (``22:00-06:00`` runs overnight; ``18:00-00:00`` ends at midnight)."""
    match = _RANGE.fullmatch(text)
    if match is None:
        raise ScheduleError(f"'{text}' is not a range of hours: write HH:MM-HH:MM, e.g. "
                            "09:00-17:30 (22:00-06:00 runs overnight)")
    try:
        start = parse_time(match[1])
        end = parse_time(match[2], end=True)
    except ScheduleError as exc:
        raise ScheduleError(f"'{text.strip()}': {exc}") from None
    if end == start:
        raise ScheduleError(f"'{text}' starts and ends at the same time: write 00:00-24:00 "
                            "for a whole day")
    if end < start:
        end += _DAY_SECONDS
    return start, end


def parse_days(text: str) -> list[int]:
    """``mon-fri``, ``sat``, ``mon,wed,fri``, ``fri-mon`` (wraps), ``daily`` → day indexes."""
    spec = text.strip().lower()
    if spec in ("daily", "every day", "mon-sun"):
        return list(range(7))
    days: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        ends = [p.strip() for p in part.split("-")]
        if len(ends) > 2 or not all(ends):
            raise ScheduleError(f"'{text}' is not a day or a range of days: write mon, mon-fri, "
                                "sat,sun or daily")
        for end in ends:
            if end not in _DAY_INDEX:
                where = "" if end == spec else f" in '{text}'"
                raise ScheduleError(f"unknown day '{end}'{where}: days are "
                                    f"{', '.join(DAYS)} (or their full names)")
        first, last = _DAY_INDEX[ends[0]], _DAY_INDEX[ends[-1]]
        index = first
        while True:
            if index in days:
                raise ScheduleError(f"'{text}' names {DAYS[index]} twice")
            days.append(index)
            if index == last:
                break
            index = (index + 1) % 7
    return days


def parse_date(text: str) -> date:
    """``2026-12-25`` → a date."""
    if not _DATE.fullmatch(text.strip()):
        raise ScheduleError(f"'{text}' is not a date: write YYYY-MM-DD, e.g. 2026-12-25")
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleError(f"'{text}' is not a date of the calendar") from None


def _show_range(r: Range) -> str:
    def hm(s: int) -> str:
        s %= _DAY_SECONDS
        return f"{s // 3600:02d}:{s % 3600 // 60:02d}"

    return f"{hm(r[0])}-{hm(r[1]) if r[1] != _DAY_SECONDS else '24:00'}"


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _week_segments(day: int, r: Range) -> list[tuple[int, int]]:
    """A day's range as segments of the week (seconds from Monday 00:00), wrapping Sunday
    night into Monday."""
    start, end = day * _DAY_SECONDS + r[0], day * _DAY_SECONDS + r[1]
    if end <= _WEEK_SECONDS:
        return [(start, end)]
    return [(start, _WEEK_SECONDS), (0, end - _WEEK_SECONDS)]


def compile_schedule(name: str, raw: Mapping[str, Any], report: Report) -> Schedule | None:
    """One schema-valid ``schedules.<name>`` mapping → a Schedule (None after a problem,
    each reported with its path inside the mapping)."""
    problems = 0

    def problem(path: tuple[str | int, ...], message: str, key: bool = False,
                hint: str | None = None) -> None:
        nonlocal problems
        problems += 1
        report(path, message, key, hint)

    tz_name = raw["timezone"]
    tz: tzinfo = UTC
    try:
        tz = zone(tz_name)
    except ScheduleError as exc:
        problem(("timezone",), str(exc), False, zone_hint(tz_name))
    weekly: list[list[Range]] = [[] for _ in DAYS]
    # (week segment, what it is, path) of every range written, for the overlap check.
    written: list[tuple[tuple[int, int], str, tuple[str | int, ...]]] = []
    for spec, value in (raw.get("hours") or {}).items():
        try:
            days = parse_days(spec)
        except ScheduleError as exc:
            problem(("hours", spec), str(exc), True)
            continue
        items = [value] if isinstance(value, str) else list(value)
        for i, item in enumerate(items):
            path: tuple[str | int, ...] = ("hours", spec) if isinstance(value, str) \
                else ("hours", spec, i)
            if item.strip().lower() == "closed":
                continue
            for part in item.split(","):
                try:
                    r = parse_range(part)
                except ScheduleError as exc:
                    problem(path, str(exc))
                    continue
                for day in days:
                    what = f"{_show_range(r)} on {DAYS[day]}"
                    if spec.strip().lower() != DAYS[day]:
                        what += f" ({spec})"
                    for segment in _week_segments(day, r):
                        clash = next((w for w in written if _overlap(w[0], segment)), None)
                        if clash is not None:
                            problem(path, f"{what} overlaps {clash[1]}", False,
                                    "a day's ranges may touch (12:00-13:00, 13:00-17:00) but "
                                    "not overlap; an overnight range counts into the next day")
                            break
                    else:
                        written.extend((s, what, path) for s in _week_segments(day, r))
                        weekly[day].append(r)
    closed_dates: set[date] = set()
    yearly: set[tuple[int, int]] = set()
    spans: list[tuple[date, date]] = []
    closed_at: dict[date, int] = {}
    for i, text in enumerate(raw.get("closed") or ()):
        try:
            if ".." in text:
                first_text, last_text = text.split("..", 1)
                first, last = parse_date(first_text), parse_date(last_text)
                if last < first:
                    raise ScheduleError(f"'{text}' ends before it starts")
                spans.append((first, last))
            elif _YEARLY.fullmatch(text.strip()):
                match = _YEARLY.fullmatch(text.strip())
                assert match is not None
                month, mday = int(match[1]), int(match[2])
                try:
                    date(2000, month, mday)  # a leap year: 02-29 is a date
                except ValueError:
                    raise ScheduleError(f"'{text}' is not a day of the year (MM-DD)") from None
                yearly.add((month, mday))
            else:
                closed = parse_date(text)
                closed_dates.add(closed)
                closed_at[closed] = i
        except ScheduleError as exc:
            problem(("closed", i), str(exc), False,
                    "closed dates are YYYY-MM-DD, MM-DD (every year) or YYYY-MM-DD..YYYY-MM-DD")
    special: dict[date, list[Range]] = {}
    for i, text in enumerate(raw.get("open") or ()):
        match = _SPECIAL.fullmatch(text)
        if match is None:
            problem(("open", i), f"'{text}' is not a special opening: write the date and its "
                    "hours, e.g. '2026-12-24 09:00-12:00'")
            continue
        try:
            opening = parse_date(match[1])
            ranges = [parse_range(part) for part in match[2].split(",")]
        except ScheduleError as exc:
            problem(("open", i), str(exc))
            continue
        if opening in closed_at:
            problem(("open", i), f"{opening.isoformat()} is also a closed date (closed, item "
                    f"{closed_at[opening] + 1})", False, "a special opening replaces its date's "
                    "hours; leave the date out of closed:")
            continue
        existing = special.setdefault(opening, [])
        for r in ranges:
            other = next((e for e in existing if _overlap(e, r)), None)
            if other is not None:
                problem(("open", i), f"{_show_range(r)} on {opening.isoformat()} overlaps "
                        f"{_show_range(other)}")
                continue
            existing.append(r)
    if problems:
        return None
    merged: list[tuple[date, date]] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1] + timedelta(days=1):
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return Schedule(
        name=name, timezone=tz_name, zone=tz,
        weekly=tuple(tuple(sorted(day)) for day in weekly),
        closed_dates=frozenset(closed_dates), closed_yearly=frozenset(yearly),
        closed_spans=tuple(merged), _span_firsts=tuple(first for first, _ in merged),
        special=MappingProxyType({d: tuple(sorted(r)) for d, r in special.items()}))
