"""Scenario tests of flows: a YAML file says who calls, what the caller does and what must
happen; ``flowengine test`` (or pytest) runs each scenario over the real simulator.

::

    from flowengine.scenario import load_scenarios, run_scenario

    loaded = load_scenarios("flows/tests/voicemail.test.yaml")   # ScenarioFileError if broken
    for scenario in loaded.scenarios:
        result = await run_scenario(loaded.flow, scenario)
        assert result.passed, result.failure_text()

See ``docs/testing.md`` for the file format and ``schemas/scenario.schema.json``.
"""

from __future__ import annotations

import importlib
from typing import Any

# name → submodule. Imported on first use, so that `flowengine --help` (which imports
# flowengine.scenario.cli) does not load the engine and the RELAY stack.
_EXPORTS = {
    "Coverage": "coverage", "Edge": "coverage", "FlowCoverage": "coverage",
    "flow_edges": "coverage",
    "DEFAULT_TIME_SCALE": "model", "SCENARIO_SUFFIX": "model", "Fault": "model",
    "Scenario": "model", "ScenarioFile": "model", "ScenarioFileError": "model",
    "load_scenarios": "model", "scenario_files": "model",
    "Mismatch": "runner", "ScenarioResult": "runner", "compare": "runner", "run_file": "runner",
    "run_scenario": "runner",
}

__all__ = [
    "DEFAULT_TIME_SCALE", "SCENARIO_SUFFIX", "Coverage", "Edge", "Fault", "FlowCoverage",
    "Mismatch", "Scenario", "ScenarioFile", "ScenarioFileError", "ScenarioResult", "compare",
    "flow_edges", "load_scenarios", "run_file", "run_scenario", "scenario_files",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
