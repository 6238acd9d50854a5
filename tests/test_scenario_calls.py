"""Scenario files with several calls (``calls:``): each call runs its own flow on one
simulator and is checked against its own ``expect``; mistakes in the file are positioned."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flowengine.scenario import Coverage, ScenarioFileError, load_scenarios, run_scenario

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"

pytestmark = pytest.mark.anyio


def scenario_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "line.test.yaml"
    path.write_text(textwrap.dedent(text).replace("SUPPORT", str(FLOWS / "support_line.yaml"))
                    .replace("AGENT", str(FLOWS / "agent.yaml"))
                    .replace("VOICEMAIL", str(FLOWS / "voicemail.yaml")))
    return path


TWO_CALLS = """\
    flow: SUPPORT
    scenarios:
      - name: caller and agent
        calls:
          - name: caller
            caller: "digits:1,hangup@connect:10"
            expect:
              outcomes: {wait_for_agent: connected}   # the agent hangs up first
              steps: {wait_for_agent: {agent: "+15550200009"}}
          - name: agent
            flow: AGENT
            at: 20
            call: {from: "+15550200009"}
            caller: "digits:1,hangup@connect:5"
            expect: {path: [greet, ready, next_caller], outcomes: {next_caller: hangup}}
    """


async def test_each_call_runs_its_flow_and_meets_its_expectations(tmp_path: Path) -> None:
    loaded = load_scenarios(scenario_file(tmp_path, TWO_CALLS))
    [scenario] = loaded.scenarios
    assert [(c.name, c.flow.name, c.at, c.context) for c in scenario.calls] == [
        ("caller", "support_line", 0.0, "helpdesk"), ("agent", "agent", 20.0, "agents")]
    result = await run_scenario(loaded.flow, scenario, file=loaded.file)
    assert result.passed, result.failure_text()
    caller, agent = result.calls
    assert caller.report is not None and agent.report is not None
    assert caller.report.steps["wait_for_agent"]["agent"] == "+15550200009"
    assert [s for s, _, _ in agent.taken] == ["greet", "ready", "next_caller"]
    # Coverage counts the edges of both flows.
    coverage = Coverage()
    coverage.add([result])
    names = sorted(Path(c.flow.file).name for c in coverage.flows.values())
    assert names == ["agent.yaml", "support_line.yaml"]
    agent_cover = next(c for c in coverage.flows.values() if c.flow.name == "agent")
    assert agent_cover.taken[("next_caller", "hangup")] == ["caller and agent"]


async def test_a_wrong_expectation_names_the_call_it_is_about(tmp_path: Path) -> None:
    text = TWO_CALLS.replace("outcomes: {next_caller: hangup}",
                             "outcomes: {next_caller: empty}")
    loaded = load_scenarios(scenario_file(tmp_path, text))
    result = await run_scenario(loaded.flow, loaded.scenarios[0], file=loaded.file)
    assert not result.passed
    assert [(m.what, m.expected, m.actual) for m in result.mismatches] == [
        ("agent: outcomes.next_caller", "empty", "hangup")]
    text = result.failure_text()
    assert "call 'caller': greet (answered) → menu (digit)" in text
    assert "call 'agent': greet (answered) → ready (digit) → next_caller (hangup)" in text


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ScenarioFileError) as info:
        load_scenarios(scenario_file(tmp_path, text))
    return [str(d).replace(str(tmp_path) + "/", "") for d in info.value.diagnostics]


def test_mistakes_in_calls_are_refused_with_their_place(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        flow: SUPPORT
        scenarios:
          - name: mixed
            caller: silent
            calls:
              - name: one
                expect: {outcomes: {wait_for_agent: conected}}
              - name: one
                flow: AGENT
                expect: {path: [greet, nobody]}
              - name: voicemail too
                flow: VOICEMAIL
                call: {context: support}
                expect: {}
          - name: nothing to check
        """)
    assert found == [
        "line.test.yaml:4:5: error: caller does not go with calls: (each call has its own "
        "call, caller and expect); move it into the calls it belongs to, or drop calls:",
        "line.test.yaml:7:45: error: step 'wait_for_agent' (enqueue) cannot end with "
        "'conected'; its outcomes are connected, left, timeout, error, hangup; "
        "did you mean 'connected'?",
        "line.test.yaml:8:15: error: two calls are named 'one' in scenario 'mixed'; "
        "call names must be unique in a scenario",
        "line.test.yaml:10:32: error: flow agent has no step 'nobody'; did you mean "
        "'nobody_waits'?",
        "line.test.yaml:13:25: error: flow voicemail does not take calls on context 'support'; "
        "its contexts: office",
        "line.test.yaml:15:5: error: scenario 'nothing to check' has no expect: (or calls:, "
        "for several calls); say what must happen under expect:",
    ]


async def test_the_scenarios_clock_runs_on_for_every_call(tmp_path: Path) -> None:
    # 16:59:50 in New York: the first call finds the office open, the one 20 s later
    # finds it closed (the one clock of the scenario ran on).
    path = tmp_path / "hours.test.yaml"
    path.write_text(textwrap.dedent(f"""\
        flow: {FLOWS / "after_hours.yaml"}
        scenarios:
          - name: just before closing, and just after
            at: 2026-12-23T16:59:50
            tz: America/New_York
            calls:
              - name: early
                caller: "peer:answer:2"
                expect: {{path_includes: [greet, office_hours, front_desk]}}
              - name: late
                at: 20
                call: {{from: "+15557654321"}}
                expect: {{path_includes: [greet, office_hours, who_is_calling, closed]}}
        """))
    loaded = load_scenarios(path)
    [scenario] = loaded.scenarios
    assert scenario.at is not None and [c.at for c in scenario.calls] == [0.0, 20.0]
    result = await run_scenario(loaded.flow, scenario, file=loaded.file)
    assert result.passed, result.failure_text()
