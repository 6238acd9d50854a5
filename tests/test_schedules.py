"""Business hours: schedules, time in templates, and the clock calls read it from."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from flowengine.flow import FlowError, TemplateRenderError, compile_flow, load_flow
from flowengine.flow.schedules import (
    CallTime,
    FlowTime,
    Schedule,
    ScheduleError,
    SetClock,
    compile_schedule,
    format_time,
    parse_at,
    to_datetime,
)
from flowengine.flow.templates import render, template_context
from flowengine.scenario import load_scenarios, run_file
from tests.flowtools import FLOWS, ROOT, run_flow, variant, write_flow

FLOWENGINE = [sys.executable, "-m", "flowengine.cli"]


def schedule(raw: dict, name: str = "s") -> Schedule:
    problems: list[tuple] = []
    found = compile_schedule(name, raw, lambda *p: problems.append(p))
    assert not problems and found is not None, problems
    return found


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, tz: str) -> datetime:
    return parse_at(text, tz)


# -- opening hours across the clock changes ---------------------------------------------------

NEW_YORK_DAILY = {"timezone": "America/New_York", "hours": {"daily": "09:00-17:00"}}


@pytest.mark.parametrize("moment,is_open", [
    # 2026-03-08: New York springs forward (EST -5 → EDT -4); 09:00 local stays 09:00 local.
    ("2026-03-07T13:59", False), ("2026-03-07T14:00", True),     # 08:59 / 09:00 EST
    ("2026-03-08T12:59", False), ("2026-03-08T13:00", True),     # 08:59 / 09:00 EDT
    ("2026-03-08T20:59", True), ("2026-03-08T21:00", False),     # 16:59 / 17:00 EDT
    # 2026-11-01: it falls back (EDT → EST).
    ("2026-10-31T12:59", False), ("2026-10-31T13:00", True),     # 08:59 / 09:00 EDT
    ("2026-11-01T13:59", False), ("2026-11-01T14:00", True),     # 08:59 / 09:00 EST
    ("2026-11-01T21:59", True), ("2026-11-01T22:00", False),     # 16:59 / 17:00 EST
])
def test_new_york_hours_stay_local_across_both_clock_changes(moment, is_open):
    assert schedule(NEW_YORK_DAILY).is_open(utc(moment)) is is_open


@pytest.mark.parametrize("moment,is_open", [
    # 2026-03-29: Berlin springs forward (CET +1 → CEST +2).
    ("2026-03-28T07:59", False), ("2026-03-28T08:00", True),     # 08:59 / 09:00 CET
    ("2026-03-29T06:59", False), ("2026-03-29T07:00", True),     # 08:59 / 09:00 CEST
    ("2026-03-29T15:59", True), ("2026-03-29T16:00", False),     # 17:59 / 18:00 CEST
])
def test_berlin_hours_stay_local_across_the_spring_change(moment, is_open):
    berlin = schedule({"timezone": "Europe/Berlin", "hours": {"daily": "09:00-18:00"}})
    assert berlin.is_open(utc(moment)) is is_open


def test_next_open_across_the_spring_change_is_nine_local():
    s = schedule(NEW_YORK_DAILY)
    # Saturday 18:00 EST: it opens Sunday 09:00 EDT, which is 13:00 UTC (not 14:00).
    assert s.next_open(local("2026-03-07T18:00", "America/New_York")) == utc("2026-03-08T13:00")
    assert s.next_close(local("2026-03-08T10:00", "America/New_York")) == utc("2026-03-08T21:00")


def test_the_hour_the_clocks_skip_and_the_hour_they_repeat():
    night = schedule({"timezone": "America/New_York", "hours": {"sun": "01:00-02:00"}})
    # 2026-11-01 01:30 happens twice (EDT, then EST): open both times.
    assert night.is_open(utc("2026-11-01T05:30")) and night.is_open(utc("2026-11-01T06:30"))
    assert not night.is_open(utc("2026-11-01T07:00"))  # 02:00 EST
    # 2026-03-08: 02:00 EST is 03:00 EDT; 01:59 EST was still open.
    assert night.is_open(utc("2026-03-08T06:59")) and not night.is_open(utc("2026-03-08T07:00"))
    with pytest.raises(ScheduleError, match="does not exist in America/New_York"):
        parse_at("2026-03-08T02:30", "America/New_York")


# -- holidays, overnight ranges, several ranges a day ------------------------------------------

OFFICE = {"timezone": "America/New_York",
          "hours": {"mon-fri": ["09:00-12:00", "13:00-17:30"], "sat": "10:00-14:00"},
          "closed": ["2026-12-25", "01-01", "2026-08-03..2026-08-05"],
          "open": ["2026-12-24 09:00-12:00", "2027-01-01 10:00-11:00"]}


@pytest.mark.parametrize("moment,is_open", [
    ("2026-12-23T12:30", False),                                  # lunch
    ("2026-12-23T17:29", True), ("2026-12-23T17:30", False),
    ("2026-12-25T10:00", False),                                  # a Friday, Christmas
    ("2026-12-26T10:00", True),                                   # Saturday
    ("2026-12-27T10:00", False),                                  # Sunday: no hours
    ("2026-12-24T11:59", True), ("2026-12-24T13:00", False),      # special: until noon
    ("2027-01-01T09:30", False), ("2027-01-01T10:30", True),      # the opening beats 01-01
    ("2028-01-01T10:30", False),                                  # 01-01 is every year
    ("2026-08-04T10:00", False), ("2026-08-06T10:00", True),      # the span ends on the 5th
])
def test_holidays_special_openings_and_lunch(moment, is_open):
    assert schedule(OFFICE).is_open(local(moment, "America/New_York")) is is_open


def test_next_open_skips_the_holiday_and_the_weekend():
    s = schedule(OFFICE)
    at = local("2026-12-24T12:00", "America/New_York")
    assert s.next_open(at) == local("2026-12-26T10:00", "America/New_York")
    assert s.next_close(local("2026-12-23T10:00", "America/New_York")) == \
        local("2026-12-23T12:00", "America/New_York")
    # Closed now: the close of the next opening.
    assert s.next_close(local("2026-12-23T12:15", "America/New_York")) == \
        local("2026-12-23T17:30", "America/New_York")


@pytest.mark.parametrize("moment,is_open", [
    ("2026-12-04T21:59", False), ("2026-12-04T22:00", True),      # Friday night
    ("2026-12-05T05:59", True), ("2026-12-05T06:00", False),      # into Saturday morning
    ("2026-12-07T01:59", True), ("2026-12-07T02:00", False),      # Sunday night → Monday
    ("2026-12-24T23:00", False),                                  # Thursday: no night shift
    ("2026-12-26T03:00", False),                                  # from Christmas: cancelled
    ("2026-12-31T23:59", True), ("2027-01-01T00:30", False),      # into a holiday: to midnight
])
def test_overnight_ranges(moment, is_open):
    nights = schedule({"timezone": "America/New_York",
                       "hours": {"fri": "22:00-06:00", "sun": "22:00-02:00",
                                 "thu": "22:00-06:00"},
                       "closed": ["2026-12-24", "2026-12-25", "01-01"]})
    assert nights.is_open(local(moment, "America/New_York")) is is_open


def test_next_close_merges_days_open_around_the_clock():
    s = schedule({"timezone": "UTC", "hours": {"mon-fri": "00:00-24:00"}})
    assert s.next_close(utc("2026-12-01T10:00")) == utc("2026-12-05T00:00")  # Tue → Sat 00:00
    always = schedule({"timezone": "UTC", "hours": {"daily": "00:00-24:00"}})
    assert always.next_close(utc("2026-12-01T10:00")) is None
    never = schedule({"timezone": "UTC", "hours": {}})
    assert never.next_open(utc("2026-12-01T10:00")) is None


def test_closed_spans_overlapping_and_many():
    odd_days = [f"2026-07-{d:02d}..2026-07-{d:02d}" for d in range(1, 31, 2)]
    s = schedule({"timezone": "UTC", "hours": {"daily": "09:00-17:00"},
                  "closed": [*odd_days, "2026-07-02..2026-07-03", "2026-07-20..2026-07-24",
                             "2026-07-22..2026-07-26"]})
    assert not s.is_open(utc("2026-07-03T10:00")) and s.is_open(utc("2026-07-04T10:00"))
    assert s.next_open(utc("2026-07-01T10:00")) == utc("2026-07-04T09:00")
    assert not s.is_open(utc("2026-07-29T10:00")) and s.is_open(utc("2026-07-30T10:00"))
    assert s.next_open(utc("2026-07-19T18:00")) == utc("2026-07-28T09:00")  # 20..27 closed
    assert s.is_open(utc("2026-06-30T10:00")) and s.is_open(utc("2026-08-01T10:00"))


# -- check: every mistake at its file:line:col ------------------------------------------------

FLOW = """\
name: hours
schedules:
  support:
    timezone: America/New_York
    hours:
      mon-fri: "09:00-17:30"
      sat: ["10:00-12:00", "13:00-14:00"]
      sun: "22:00-06:00"
    closed: ["2026-12-25", "01-01"]
    open: ["2026-12-24 09:00-12:00"]
steps:
  route:
    branch:
      - when: is_open('support')
        goto: open
      - goto: closed
  open:
    log: "open until {{ next_close('support') | strftime('%H:%M') }}"
    next: null
  closed:
    log: "closed until {{ next_open('support').strftime('%A %H:%M') }}, {{ now('Europe/Berlin') }}"
"""


def test_the_example_schedule_checks_clean():
    result = compile_flow(FLOW, "hours.yaml")
    assert result.ok and result.diagnostics == ()
    assert set(result.version.schedules) == {"support"}


@pytest.mark.parametrize("old,new,expected", [
    ("timezone: America/New_York", "timezone: America/New_Yrok",
     "hours.yaml:4:15: error: schedule 'support': unknown time zone 'America/New_Yrok'; "
     "did you mean 'America/New_York'?"),
    ("mon-fri:", "mon-fry:",
     "hours.yaml:6:7: error: schedule 'support': unknown day 'fry' in 'mon-fry'"),
    ('mon-fri: "09:00-17:30"', 'mon-fri: "9-17"',
     "hours.yaml:6:16: error: schedule 'support': '9-17': '9' is not a time of day"),
    ('mon-fri: "09:00-17:30"', 'mon-fri: "09:00-17:60"',
     "hours.yaml:6:16: error: schedule 'support': '09:00-17:60': '17:60' is not a time of day"),
    ('"13:00-14:00"', '"11:30-14:00"',
     "hours.yaml:7:28: error: schedule 'support': 11:30-14:00 on sat overlaps 10:00-12:00 on sat"),
    ('sun: "22:00-06:00"', 'sun: "22:00-09:30"',
     "hours.yaml:8:12: error: schedule 'support': 22:00-09:30 on sun overlaps 09:00-17:30 on "
     "mon (mon-fri)"),
    ('"2026-12-25"', '"2026-02-30"',
     "hours.yaml:9:14: error: schedule 'support': '2026-02-30' is not a date of the calendar"),
    ('"01-01"', '"2026-1-1"',
     "hours.yaml:9:28: error: schedule 'support': '2026-1-1' is not a date: write YYYY-MM-DD"),
    ('"2026-12-24 09:00-12:00"', '"2026-12-25 09:00-12:00"',
     "hours.yaml:10:12: error: schedule 'support': 2026-12-25 is also a closed date"),
    ("is_open('support')", "is_open('nope')",
     "hours.yaml:14:15: error: unknown schedule 'nope' in is_open('nope'); this flow's "
     "schedules: support"),
    ("next_close('support')", "next_close('suport')",
     "hours.yaml:18:10: error: unknown schedule 'suport' in next_close('suport'); did you mean "
     "'support'?"),
    ("now('Europe/Berlin')", "now('Europe/Berln')",
     "hours.yaml:21:10: error: unknown time zone 'Europe/Berln' in now('Europe/Berln')"),
    ("strftime('%H:%M')", "strftime('%H:%Q')",
     "hours.yaml:18:10: error: unknown strftime directive '%Q'"),
    ("    timezone: America/New_York\n", "",
     "hours.yaml:3:3: error: schedule 'support' needs 'timezone'"),
])
def test_check_reports_each_schedule_mistake_where_it_is(tmp_path, monkeypatch, capsys, old,
                                                         new, expected):
    from flowengine.cli import main

    (tmp_path / "hours.yaml").write_text(variant(FLOW, (old, new)))
    monkeypatch.chdir(tmp_path)
    assert main(["check", "hours.yaml"]) == 1
    out = capsys.readouterr().out
    errors = [line for line in out.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(expected), out


def test_check_as_a_user_runs_it(tmp_path):
    (tmp_path / "hours.yaml").write_text(variant(FLOW, ("is_open('support')", "is_open('x')")))
    proc = subprocess.run([*FLOWENGINE, "check", "hours.yaml"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60, check=False)
    assert proc.returncode == 1 and "hours.yaml:14:15: error: unknown schedule 'x'" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_a_schedule_name_only_known_when_the_call_runs_fails_that_step(tmp_path):
    flow = write_flow(tmp_path, variant(FLOW, ("is_open('support')", "is_open(vars.which)"),
                                        ("steps:", "vars: {which: nope}\nsteps:")))
    with pytest.raises(TemplateRenderError) as caught:
        render(flow.steps["route"].branches[0].when, _context(flow, "2026-12-23T10:00"))
    assert str(caught.value).endswith(
        "flow.yaml:15:15: in step 'route' (when in branch choice 1): unknown schedule 'nope'; "
        "this flow's schedules: support")


# -- templates under a set clock ---------------------------------------------------------------

def _context(flow, at: str, tz: str = "America/New_York") -> dict:
    call = {"id": "c", "from": "+15550000000", "to": "+15559870000", "direction": "inbound",
            "context": "default", "state": "answered"}
    from flowengine.flow import initial_vars

    time = CallTime(SetClock(parse_at(at, tz)), flow.schedules)
    return template_context(call, {}, initial_vars(flow, call, time=time), flow.template_flow,
                            time)


def test_templates_read_the_set_clock(tmp_path):
    flow = write_flow(tmp_path, FLOW)
    closed = render(flow.steps["closed"].params, _context(flow, "2026-12-24T18:00"))
    assert closed.startswith("closed until Saturday 10:00, 2026-12-25T00:00:")
    assert closed.endswith("+01:00")  # Berlin, the same moment
    opened = render(flow.steps["open"].params, _context(flow, "2026-12-23T10:00"))
    assert opened == "open until 17:30"
    when = flow.steps["route"].branches[0].when
    assert render(when, _context(flow, "2026-12-26T11:00")) is True
    assert render(when, _context(flow, "2026-12-25T11:00")) is False  # Christmas


def test_now_and_today_in_templates_and_as_data(tmp_path):
    flow = write_flow(tmp_path, """\
name: t
vars: {started: "{{ now('America/New_York') }}"}
steps:
  s:
    set:
      stamp: "{{ now('Europe/Berlin') }}"
      day: "{{ today('Europe/Berlin') }}"
      hour: "{{ now('Europe/Berlin').hour }}"
      weekday: "{{ now('Europe/Berlin').weekday() }}"
      text: "{{ now('Europe/Berlin') | strftime('%a %-d %b %Y, %-I:%M %p %Z') }}"
      utc: "{{ now().strftime('%F %T %z') }}"
""")
    at = "2026-12-31T23:30"  # New York: in Berlin it is already 2027
    context = _context(flow, at)
    assert context["vars"]["started"].startswith("2026-12-31T23:30:")
    assert context["vars"]["started"].endswith("-05:00")
    values = render(flow.steps["s"].params, context)
    assert values == {"stamp": "2027-01-01T05:30:00+01:00", "day": "2027-01-01", "hour": 5,
                      "weekday": 4, "text": "Fri 1 Jan 2027, 5:30 AM CET",
                      "utc": "2027-01-01 04:30:00 +0000"}


def test_the_time_in_templates_stays_inside_the_sandbox(tmp_path):
    flow = write_flow(tmp_path, """\
name: t
vars: {fmt: "%1000000000Y"}
steps:
  big:
    log: "{{ now().strftime(vars.fmt) }}"
  private:
    log: "{{ now()['_dt'] }}"
  real_clock:
    log: "{{ now().now() }}"
  raw:
    log: "{{ now().as_datetime() }}"
""")
    context = _context(flow, "2026-12-24T18:00")
    for sid, reason in (("big", "unknown strftime directive '%1'"),
                        ("private", "_dt"), ("real_clock", "has no attribute 'now'"),
                        ("raw", "has no attribute 'as_datetime'")):
        with pytest.raises(Exception) as caught:
            render(flow.steps[sid].params, context)
        assert reason in str(caught.value), (sid, caught.value)
    with pytest.raises(ScheduleError, match="at most 256"):
        format_time(datetime(2026, 1, 1, tzinfo=UTC), "%Y" * 200)


def test_flowtime_compares_and_converts():
    a = FlowTime(utc("2026-12-24T17:00"), "UTC")
    b = a.astimezone("Europe/Berlin")
    assert a == b and str(b) == "2026-12-24T18:00:00+01:00" and b.tz == "Europe/Berlin"
    assert to_datetime(b) == utc("2026-12-24T17:00") and to_datetime(b).utcoffset().seconds == 3600
    assert FlowTime(utc("2026-12-24T16:00"), "UTC") < b


# -- the clock of a call -----------------------------------------------------------------------

CLOCKED = """\
name: clocked
context: office
limits: {max_duration: 600}
schedules:
  desk:
    timezone: Europe/Berlin
    hours: {mon-fri: "09:00-17:30"}
steps:
  greet:
    answer: {}
  before:
    log: "{{ now('Europe/Berlin').strftime('%H:%M:%S') }} {{ is_open('desk') }}"
  wait:
    play: [{silence: 20}]
  after:
    log: "{{ now('Europe/Berlin').strftime('%H:%M:%S') }} {{ is_open('desk') }}"
"""


def _seconds(text: str) -> int:
    h, m, s = (int(x) for x in text.split()[0].split(":"))
    return h * 3600 + m * 60 + s


async def _clocked_run(tmp_path: Path):
    flow = write_flow(tmp_path, CLOCKED)
    return await run_flow(flow, "silent", at="2026-12-23T17:29:50", tz="Europe/Berlin")


@pytest.mark.anyio
async def test_the_set_clock_runs_with_the_call(tmp_path):
    run = await _clocked_run(tmp_path)
    before = run.report.steps["before"]["text"]
    after = run.report.steps["after"]["text"]
    assert before.endswith("True") and after.endswith("False"), (before, after)
    # 20 simulated seconds of silence (plus a little real time, scaled) lie between.
    assert 20 <= _seconds(after) - _seconds(before) <= 40, (before, after)
    assert _seconds(before) >= _seconds("17:29:50")


def test_run_at_takes_the_open_and_the_closed_path():
    proc = subprocess.run([*FLOWENGINE, "run", "flows/after_hours.yaml", "--at",
                           "2026-12-24T18:00", "--tz", "Europe/Berlin", "--time-scale", "0.01"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
                          env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    assert "clock set to 2026-12-24T18:00:00+01:00" in proc.stdout
    # 18:00 in Berlin is noon on a Thursday in New York: the office is open.
    lines = proc.stdout.splitlines()
    assert any("office_hours" in line and "branch0" in line for line in lines), proc.stdout
    proc = subprocess.run([*FLOWENGINE, "run", "flows/after_hours.yaml", "--at",
                           "2026-12-24T23:30", "--tz", "Europe/Berlin", "--time-scale", "0.01"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
                          env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any("office_hours" in line and "branch1" in line for line in lines), proc.stdout
    assert any("closed" in line and "play" in line for line in lines), proc.stdout


@pytest.mark.parametrize("args,message", [
    (["--at", "yesterday"], "error: --at: 'yesterday' is not a time"),
    (["--at", "2026-12-24T18:00", "--tz", "Mars/Base"], "error: --at: unknown time zone"),
    (["--tz", "Europe/Berlin"], "error: --tz says which zone --at is written in"),
    (["--at", "2026-12-24T18:00Z", "--tz", "Europe/Berlin"], "give either the offset"),
])
def test_run_refuses_a_bad_clock(args, message):
    proc = subprocess.run([*FLOWENGINE, "run", "flows/after_hours.yaml", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
                          env=_clean_env())
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items()
            if not k.startswith(("SIGNALWIRE_", "FLOWENGINE_"))}


# -- scenarios with at: ------------------------------------------------------------------------

SCENARIOS = """\
flow: ../after_hours.yaml
tz: America/New_York
at: 2026-12-23T19:30
scenarios:
  - name: open
    at: 2026-12-23T10:00
    caller: peer:answer:2
    expect:
      path: [greet, office_hours, front_desk, bye]
  - name: holiday
    at: 2026-12-25T10:00
    expect:
      path: [greet, office_hours, who_is_calling, closed, bye]
      said: ["we open again Monday, December 28 at 9:00 AM."]
  - name: closed, by the file's at
    expect:
      path: [greet, office_hours, who_is_calling, closed, bye]
      said: ["we open again Thursday, December 24 at 9:00 AM."]
"""


def _scenario_results(tmp_path: Path, flow_text: str, scenarios: str = SCENARIOS):
    (tmp_path / "after_hours.yaml").write_text(flow_text)
    tests = tmp_path / "tests"
    tests.mkdir(exist_ok=True)
    (tests / "s.test.yaml").write_text(scenarios)
    loaded = load_scenarios(tests / "s.test.yaml")
    return {r.scenario.name: r for r in anyio.run(run_file, loaded)}


def test_scenarios_take_the_open_holiday_and_closed_paths_by_their_clock(tmp_path):
    results = _scenario_results(tmp_path, (FLOWS / "after_hours.yaml").read_text())
    assert {name: r.passed for name, r in results.items()} == {
        "open": True, "holiday": True, "closed, by the file's at": True}, \
        [r.failure_text() for r in results.values()]


def test_the_holiday_scenario_fails_when_the_flow_forgets_the_holiday(tmp_path):
    text = variant((FLOWS / "after_hours.yaml").read_text(), ('"12-25", ', ""))
    results = _scenario_results(tmp_path, text)
    assert not results["holiday"].passed
    assert "front_desk" in results["holiday"].failure_text()
    assert results["open"].passed


@pytest.mark.parametrize("old,new,expected", [
    ("at: 2026-12-23T19:30", "at: 2026-12-32T19:30", "s.test.yaml:3:5: error: '2026-12-32T19:30'"),
    ("tz: America/New_York", "tz: America/NewYork",
     "s.test.yaml:2:5: error: unknown time zone 'America/NewYork'"),
    ("    at: 2026-12-23T10:00\n", "    at: 2026-12-23T10:00\n    tz: Nowhere\n",
     "s.test.yaml:7:9: error: unknown time zone 'Nowhere'"),
    ("    at: 2026-12-25T10:00\n", "    tz: Europe/Berlin\n",
     "s.test.yaml:11:5: error: tz says which zone at: is written in"),
    ("at: 2026-12-25T10:00", "at: 2026-03-08T02:30",
     "s.test.yaml:11:9: error: 2026-03-08T02:30 does not exist in America/New_York"),
])
def test_a_bad_at_or_tz_in_a_scenario_file_is_reported_where_it_is(tmp_path, old, new, expected):
    from flowengine.scenario import ScenarioFileError

    (tmp_path / "after_hours.yaml").write_text((FLOWS / "after_hours.yaml").read_text())
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "s.test.yaml").write_text(variant(SCENARIOS, (old, new)))
    with pytest.raises(ScenarioFileError) as caught:
        load_scenarios(tests / "s.test.yaml")
    shown = [str(d) for d in caught.value.diagnostics]
    assert len(shown) == 1 and shown[0].split("s.test.yaml", 1)[1].startswith(
        expected.split("s.test.yaml", 1)[1]), shown


# -- compiled once -----------------------------------------------------------------------------

def test_a_flow_version_holds_its_schedules_compiled_and_frozen():
    flow = load_flow(FLOWS / "after_hours.yaml")
    office = flow.schedules["office"]
    assert office.timezone == "America/New_York" and office.weekly[0] == ((32400, 61200),)
    with pytest.raises(TypeError):
        flow.schedules["other"] = office  # type: ignore[index]
    with pytest.raises(AttributeError):
        office.timezone = "UTC"  # type: ignore[misc]


def test_an_invalid_schedule_keeps_the_flow_from_loading(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text(variant(FLOW, ('"09:00-17:30"', '"17:30-17:30"')))
    with pytest.raises(FlowError) as caught:
        load_flow(path)
    assert "starts and ends at the same time" in str(caught.value.diagnostics[0])



# -- serve --simulate --at ---------------------------------------------------------------------

@pytest.mark.parametrize("at,path", [
    ("2026-12-23T10:00", "greet > office_hours > front_desk > bye"),
    ("2026-12-25T10:00", "greet > office_hours > who_is_calling > closed > bye"),
])
def test_serve_simulate_at_sets_the_daemons_clock(tmp_path, at, path):
    (tmp_path / "after_hours.yaml").write_text((FLOWS / "after_hours.yaml").read_text())
    proc = subprocess.run([*FLOWENGINE, "serve", str(tmp_path), "--simulate", "--sim-calls", "1",
                           "--sim-caller", "peer:answer:2", "--time-scale", "0.01", "--at", at,
                           "--tz", "America/New_York", "--log-level", "info"],
                          capture_output=True, text=True, timeout=120, check=False,
                          env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    ended = [line for line in proc.stderr.splitlines() if "call ended" in line]
    assert len(ended) == 1 and f": {path} (" in ended[0], proc.stderr


def test_serve_at_needs_simulate(tmp_path):
    (tmp_path / "after_hours.yaml").write_text((FLOWS / "after_hours.yaml").read_text())
    proc = subprocess.run([*FLOWENGINE, "serve", str(tmp_path), "--at", "2026-12-23T10:00"],
                          capture_output=True, text=True, timeout=60, check=False,
                          env=_clean_env())
    assert proc.returncode == 2 and "--at sets a clock for trying flows out; it needs " \
        "--simulate" in proc.stderr


# -- outbound calls read the clock too ---------------------------------------------------------

OUTBOUND = """\
name: reminder
context: office
schedules:
  desk:
    timezone: Europe/Berlin
    hours: {mon-fri: "09:00-17:00"}
outbound:
  from: "{{ '+15559870001' if is_open('desk') else '+15559870002' }}"
  on:
    busy: missed
steps:
  hello:
    play: [{say: "{{ 'The desk is open.' if is_open('desk') else 'The desk is closed.' }}"}]
    next: null
  missed:
    log: "missed at {{ now('Europe/Berlin').strftime('%H:%M') }}"
"""


@pytest.mark.anyio
@pytest.mark.parametrize("at,caller_id,said", [
    ("2026-12-23T10:00", "+15559870001", "The desk is open."),
    ("2026-12-23T19:00", "+15559870002", "The desk is closed."),
])
async def test_an_outbound_call_reads_the_set_clock(tmp_path, at, caller_id, said):
    from flowengine.engine.outbound import run_outbound
    from flowengine.relay import RelayClient, RelayConfig
    from flowengine.sim import Simulator

    flow = write_flow(tmp_path, OUTBOUND)
    clock = SetClock(parse_at(at, "Europe/Berlin"), 0.01)
    async with Simulator(port=0, project="p", token="t", time_scale=0.01) as sim:
        sim.set_callee("+15550001111", "answer:1")
        async with RelayClient(RelayConfig(url=sim.url, project="p", token="t")) as client:
            with anyio.fail_after(20):
                report = await run_outbound(client, flow, to="+15550001111", time_scale=0.01,
                                            clock=clock)
        await sim.wait_all_ended(timeout=10)
        assert sim.core.dials[-1].legs[0].from_number == caller_id
    assert report.outcome == "answered" and report.report is not None
    assert report.report.trace[0].params["media"][0]["say"] == said


@pytest.mark.parametrize("at,logged", [("2026-12-23T10:00", "log: open at 10:00"),
                                       ("2026-12-23T19:00", "log: closed at 19:00")])
def test_dial_at_sets_the_outbound_calls_clock(tmp_path, at, logged):
    path = tmp_path / "reminder.yaml"
    path.write_text(variant(OUTBOUND, (
        "    play: [{say: \"{{ 'The desk is open.' if is_open('desk') else 'The desk is "
        "closed.' }}\"}]\n    next: null",
        "    log: \"{{ 'open' if is_open('desk') else 'closed' }} at "
        "{{ now('Europe/Berlin') | strftime('%H:%M') }}\"\n    next: null")))
    proc = subprocess.run([*FLOWENGINE, "dial", str(path), "--to", "+15550001111", "--at", at,
                           "--tz", "Europe/Berlin", "--time-scale", "0.01"],
                          capture_output=True, text=True, timeout=120, check=False,
                          env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    assert logged in proc.stdout, proc.stdout


@pytest.mark.anyio
async def test_schedules_compile_once_per_flow_version_not_per_call(monkeypatch):
    import flowengine.flow.compiler as compiler

    compiled: list[str] = []
    original = compiler.compile_schedule

    def counting(name, raw, report):
        compiled.append(name)
        return original(name, raw, report)

    monkeypatch.setattr(compiler, "compile_schedule", counting)
    flow = load_flow(FLOWS / "after_hours.yaml")
    assert compiled == ["office"]
    run = await run_flow(flow, "peer:answer:1", calls=3, at="2026-12-23T10:00",
                         tz="America/New_York")
    assert [r.trace[1].outcome for r in run.reports] == ["branch0"] * 3  # is_open, 3 times
    assert compiled == ["office"]
