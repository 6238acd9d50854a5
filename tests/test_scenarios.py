"""The scenario files shipped with the example flows, run under pytest: one test per scenario.

Every ``*.test.yaml`` under ``flows/`` is collected; a failing scenario fails its test with
the same expected-against-actual text ``flowengine test`` prints.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flowengine.scenario import Coverage, load_scenarios, run_file, run_scenario, scenario_files

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"
FILES = scenario_files([str(FLOWS)])[0]


def _cases() -> list[pytest.param]:
    cases = []
    for file in FILES:
        loaded = load_scenarios(file)
        for scenario in loaded.scenarios:
            cases.append(pytest.param(loaded, scenario,
                                      id=f"{Path(file).name}::{scenario.name}"))
    return cases


def test_every_example_flow_has_a_scenario_file():
    flows = sorted(p.name for p in FLOWS.glob("*.yaml"))
    tested = sorted(Path(load_scenarios(f).flow.file).name for f in FILES)
    assert tested == flows


@pytest.mark.anyio
@pytest.mark.parametrize("loaded,scenario", _cases())
async def test_scenario(loaded, scenario):
    result = await run_scenario(loaded.flow, scenario, file=loaded.file)
    if not result.passed:
        pytest.fail(f"{loaded.file}:{scenario.line}: {scenario.name}\n{result.failure_text()}",
                    pytrace=False)


@pytest.mark.anyio
async def test_the_scenarios_take_every_edge_of_every_flow():
    coverage = Coverage()
    for file in FILES:
        coverage.add(await run_file(load_scenarios(file)))
    missed = {Path(c.flow.file).name: [e.text(c.flow) for e in c.missed()]
              for c in coverage.flows.values()}
    assert missed == {name: [] for name in missed}  # every flow ships scenarios for every edge
    assert set(missed) >= {"voicemail.yaml", "after_hours.yaml", "voicemail_hangup.yaml"}
