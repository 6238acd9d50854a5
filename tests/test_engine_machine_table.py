"""FlowRuntime.fire reads the machine's transitions from a table: it must move a call
exactly as ``machine.events[outcome].trigger`` does, on every edge of every example flow,
with the once-per-call handlers taken or not."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from transitions import MachineError

from flowengine.engine.machine import END, FlowRuntime
from flowengine.flow import load_flow

FLOWS = sorted(p for p in (Path(__file__).parent.parent / "flows").glob("*.yaml"))


class Model:
    def __init__(self, state: str, hangup_handled: bool, error_handled: bool) -> None:
        self.state = state
        self.hangup_handled = hangup_handled
        self.error_handled = error_handled


@pytest.mark.parametrize("path", FLOWS, ids=lambda p: p.name)
def test_fire_moves_a_call_as_the_machine_does(path: Path) -> None:
    runtime = FlowRuntime(load_flow(path))
    machine = runtime.machine
    checked = 0
    for step_id, outcomes in runtime.outcomes.items():
        for outcome, hangup, error in itertools.product(sorted(outcomes), (False, True),
                                                        (False, True)):
            by_table = Model(step_id, hangup, error)
            runtime.fire(by_table, outcome)  # type: ignore[arg-type]
            by_machine = Model(step_id, hangup, error)
            machine.events[outcome].trigger(by_machine, by_machine)
            assert by_table.state == by_machine.state, (step_id, outcome, hangup, error)
            checked += 1
    assert checked
    with pytest.raises(MachineError):
        runtime.fire(Model(END, False, False), "finished")  # type: ignore[arg-type]


def test_the_machine_has_no_callbacks_the_table_would_skip() -> None:
    for path in FLOWS:
        machine = FlowRuntime(load_flow(path)).machine
        for hooks in (machine.before_state_change, machine.after_state_change,
                      machine.prepare_event, machine.finalize_event, machine.on_exception,
                      machine.on_final):
            assert not hooks
        for state in machine.states.values():
            assert not state.on_enter and not state.on_exit
        for event in machine.events.values():
            for transitions in event.transitions.values():
                for t in transitions:
                    assert not (t.prepare or t.before or t.after)
