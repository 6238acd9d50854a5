"""The scenario files shipped with the example flows, run under pytest: one test per scenario.

Every ``*.test.yaml`` under ``flows/`` is collected (a user's own scenarios too, as
docs/guide.md says); a failing scenario fails its test with the same expected-against-actual
text ``flowengine test`` prints. The coverage rules — a scenario file for every flow, every
edge taken — hold for the flows this repository ships, named in :data:`SHIPPED_FLOWS`: a
flow a user adds while following the guide is theirs to cover, and must not fail our suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flowengine.scenario import Coverage, load_scenarios, run_file, run_scenario, scenario_files

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"
FILES = scenario_files([str(FLOWS)])[0]
#: The example flows of the repository, by file name (a new example flow is added here).
SHIPPED_FLOWS = ("after_hours.yaml", "agent.yaml", "ivr.yaml", "reminder.yaml",
                 "support_line.yaml", "voicemail.yaml", "voicemail_hangup.yaml",
                 "voicemail_webhook.yaml")
#: Their scenario files, by file name.
SHIPPED_SCENARIOS = tuple(name.replace(".yaml", ".test.yaml") for name in SHIPPED_FLOWS)


def _cases() -> list[pytest.param]:
    cases = []
    for file in FILES:
        loaded = load_scenarios(file)
        for scenario in loaded.scenarios:
            cases.append(pytest.param(loaded, scenario,
                                      id=f"{Path(file).name}::{scenario.name}"))
    return cases


def test_every_example_flow_has_a_scenario_file():
    assert all((FLOWS / name).is_file() for name in SHIPPED_FLOWS)
    shipped = [f for f in FILES if Path(f).name in SHIPPED_SCENARIOS]
    assert sorted(Path(load_scenarios(f).flow.file).name for f in shipped) == list(SHIPPED_FLOWS)


@pytest.mark.anyio
@pytest.mark.virtual_time
@pytest.mark.parametrize("loaded,scenario", _cases())
async def test_scenario(loaded, scenario):
    result = await run_scenario(loaded.flow, scenario, file=loaded.file)
    if not result.passed:
        pytest.fail(f"{loaded.file}:{scenario.line}: {scenario.name}\n{result.failure_text()}",
                    pytrace=False)


@pytest.mark.anyio
@pytest.mark.virtual_time
async def test_the_scenarios_take_every_edge_of_every_flow():
    coverage = Coverage()
    for file in FILES:
        if Path(file).name in SHIPPED_SCENARIOS:
            coverage.add(await run_file(load_scenarios(file)))
    missed = {Path(c.flow.file).name: [e.text(c.flow) for e in c.missed()]
              for c in coverage.flows.values()}
    # Every shipped flow ships scenarios for every edge.
    assert missed == {name: [] for name in SHIPPED_FLOWS}
