"""FlowRuntime's table moves a call exactly as the flow's routing rules (``route()``) say,
on every edge of every example flow, with the once-per-call handlers taken or not."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from flowengine.engine.machine import END, FlowRuntime, NoEdge
from flowengine.flow import load_flow, route

FLOWS = sorted(p for p in (Path(__file__).parent.parent / "flows").glob("*.yaml"))


class Model:
    def __init__(self, state: str, hangup_handled: bool, error_handled: bool) -> None:
        self.state = state
        self.hangup_handled = hangup_handled
        self.error_handled = error_handled


@pytest.mark.parametrize("path", FLOWS, ids=lambda p: p.name)
def test_fire_moves_a_call_where_route_says(path: Path) -> None:
    flow = load_flow(path)
    runtime = FlowRuntime(flow)
    checked = handlers = 0
    for step_id, outcomes in runtime.outcomes.items():
        step = flow.steps[step_id]
        for outcome, hangup, error in itertools.product(sorted(outcomes), (False, True),
                                                        (False, True)):
            session = Model(step_id, hangup, error)
            runtime.fire(session, outcome)  # type: ignore[arg-type]
            expected = route(flow, step, outcome, hangup_handled=hangup, error_handled=error)
            assert session.state == (expected.target or END), (step_id, outcome, hangup, error)
            handlers += expected.via in ("on_hangup", "on_error")
            checked += 1
    assert checked
    if flow.on_hangup or flow.on_error:
        assert handlers, "the once-per-call handlers were never taken"


def test_a_handler_is_taken_once_per_call_then_the_outcome_ends_the_flow() -> None:
    flow = load_flow(Path(__file__).parent.parent / "flows" / "voicemail_hangup.yaml")
    assert flow.on_hangup is not None
    runtime = FlowRuntime(flow)
    step = next(s for s in flow.steps if "hangup" in runtime.outcomes[s]
                and "hangup" not in flow.steps[s].on)
    first, again = Model(step, False, False), Model(step, True, False)
    runtime.fire(first, "hangup")  # type: ignore[arg-type]
    runtime.fire(again, "hangup")  # type: ignore[arg-type]
    assert first.state == flow.on_hangup
    assert again.state == END


def test_an_outcome_with_no_edge_is_a_clear_engine_error() -> None:
    runtime = FlowRuntime(load_flow(FLOWS[0]))
    with pytest.raises(NoEdge, match="no edge for outcome 'finished' from step '__end__'"):
        runtime.fire(Model(END, False, False), "finished")  # type: ignore[arg-type]
