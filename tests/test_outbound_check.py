"""The flow language's inputs: and outbound: — what check refuses (file:line:col), what the
compiled FlowVersion holds, the graph's dial outcomes, and validate_inputs by type."""

from __future__ import annotations

from typing import Any

import pytest

from flowengine.flow import compile_flow
from flowengine.flow.graph import render_graph
from flowengine.flow.inputs import InputError, coerce_input, validate_inputs
from tests.flowtools import variant

FLOW = """\
name: remind
inputs:
  patient: {type: string, default: "there"}
  visits: {type: integer, default: 2}
  callback: {type: phone, required: true}
outbound:
  from: "+15559870000"
  detect_machine: {wait_for_beep: true}
  on:
    machine: message
    busy: note
steps:
  hello:
    play: [{say: "Hello {{ vars.patient }}"}]
    next: null
  message:
    play: [{say: "Call us back on {{ vars.callback }}"}]
    next: null
  note:
    log: "busy: {{ call.to }}"
    next: count
  count:
    set: {tries: "{{ vars.visits + 1 }}"}
"""


def errors(text: str) -> list[str]:
    result = compile_flow(text, "r.yaml")
    return [str(d) for d in result.diagnostics if d.is_error]


def test_the_flow_compiles_with_its_inputs_and_dial_edges() -> None:
    result = compile_flow(FLOW, "r.yaml")
    assert result.ok, result.diagnostics
    flow = result.version
    assert flow is not None and flow.outbound is not None
    assert list(flow.inputs) == ["patient", "visits", "callback"]
    assert flow.inputs["callback"].required and flow.inputs["visits"].default == 2
    assert (flow.inputs["patient"].line, flow.inputs["patient"].col) == (3, 3)
    assert dict(flow.outbound.edges) == {"answered": "hello", "machine": "message",
                                         "busy": "note", "no_answer": None, "failed": None}
    assert dict(flow.outbound.detect_machine or {}) == {"detect_message_end": True}
    assert not [d for d in result.diagnostics if "never reached" in d.message]


@pytest.mark.parametrize(("edit", "expected"), [
    (("  visits: {type: integer, default: 2}", "  visits: {type: integer, default: 2.5}"),
     "r.yaml:4:36: error: the default of input 'visits' (integer) must be an integer, "
     "not a number"),
    (("  visits: {type: integer, default: 2}", '  visits: {type: integer, default: "2"}'),
     "r.yaml:4:36: error: the default of input 'visits' is the string '2', not an integer; "
     "write it without quotes"),
    (("  callback: {type: phone, required: true}",
      '  callback: {type: phone, default: "555-1234"}'),
     "r.yaml:5:36: error: the default of input 'callback' (phone) '555-1234' is not a phone "
     "number in E.164 (+, the country code and the number, e.g. +15550001111)"),
    (("  callback: {type: phone, required: true}",
      '  callback: {type: phone, required: true, default: "+15550001111"}'),
     "r.yaml:5:27: error: input 'callback' is required and has a default; a required input "
     "is given by every call; remove required: true, or the default"),
    (("  visits: {type: integer", "  visits: {type: int"),
     "r.yaml:4:18: error: type in visits in inputs must be one of string, number, "
     "integer, boolean, phone, not the text 'int'; did you mean 'integer'?"),
    (("  detect_machine: {wait_for_beep: true}\n", ""),
     "r.yaml:9:5: error: outbound.on.machine needs detect_machine"),
    (("    busy: note", "    busy: nowhere"),
     "r.yaml:11:11: error: unknown step 'nowhere' in outbound.on.busy"),
    (("    busy: note", "    bussy: note"),
     "r.yaml:11:5: error: unknown key 'bussy' in on in outbound; did you mean 'busy'?"),
    (('  from: "+15559870000"', '  from: "5559870000"'),
     "r.yaml:7:9: error: the caller id '5559870000' is not a phone number in E.164"),
    (('  from: "+15559870000"', '  from: "{{ steps.hello.state }}"'),
     "r.yaml:7:9: error: outbound can use call, vars and flow"),
    (('  from: "+15559870000"', '  from: "{{ call.dial }}"'),
     "r.yaml:7:9: error: call.dial is not known when the call is dialled"),
    (('  from: "+15559870000"', '  from: "{{ vars.tries }}"'),
     "r.yaml:7:9: error: vars.tries is not known when the call is dialled"),
    (("steps:\n", "vars:\n  patient: x\nsteps:\n"),
     "r.yaml:3:3: error: 'patient' is both an input and a variable under vars:"),
])
def test_check_refuses_bad_declarations_with_their_position(
        edit: tuple[str, str], expected: str) -> None:
    found = errors(variant(FLOW, edit))
    assert any(e.startswith(expected) for e in found), found


def test_check_refuses_a_call_step_on_a_failure_path_naming_the_path() -> None:
    text = variant(FLOW, ("    next: count\n  count:\n", "    next: count\n  count:\n"),
                   ('    set: {tries: "{{ vars.visits + 1 }}"}',
                    '    set: {tries: "{{ vars.visits + 1 }}"}\n  again:\n'
                    '    play: [{say: "Sorry"}]'))
    assert errors(text) == [
        "r.yaml:24:3: error: step 'again' (play) needs a call, but it runs on the outbound "
        "busy path, which has none (outbound.on.busy → note → count → again); a busy, "
        "no_answer or failed path runs only log, set, request, send_sms, branch, goto and "
        "the end"]
    # The same step, reached only on the answered path, is fine.
    fine = variant(text, ('    set: {tries: "{{ vars.visits + 1 }}"}',
                          '    set: {tries: "{{ vars.visits + 1 }}"}\n    next: null'),
                   ("    next: null\n  message:", "    next: again\n  message:"))
    assert errors(fine) == []


def test_a_hangup_ends_a_failure_path_and_on_error_is_not_followed_there() -> None:
    text = variant(FLOW, ('    set: {tries: "{{ vars.visits + 1 }}"}',
                          '    set: {tries: "{{ vars.visits + 1 }}"}\n  bye:\n    hangup: {}\n'
                          '  oops:\n    play: [{say: "An error."}]'),
                   ("steps:\n", "on_error: oops\nsteps:\n"))
    assert errors(text) == []


def test_a_subflow_with_call_steps_is_refused_on_a_failure_path(tmp_path: Any) -> None:
    (tmp_path / "greet.yaml").write_text("name: greet\nsteps:\n  hi:\n    play: [{say: hi}]\n")
    text = variant(FLOW, ('    set: {tries: "{{ vars.visits + 1 }}"}',
                          '    set: {tries: "{{ vars.visits + 1 }}"}\n  sub:\n'
                          '    call: greet.yaml'))
    path = tmp_path / "r.yaml"
    result = compile_flow(text, str(path))
    found = [d.message for d in result.diagnostics if d.is_error]
    assert found == ["step 'sub' (call: its subflow's step 'hi' is play) needs a call, but it "
                     "runs on the outbound busy path, which has none (outbound.on.busy → note "
                     "→ count → sub)"]


def test_the_graph_starts_at_the_dial_with_an_arrow_per_outcome() -> None:
    result = compile_flow(FLOW, "r.yaml")
    assert result.version is not None
    text = render_graph(result.version)
    assert "flow_start((dial))" in text
    assert 'flow_start -->|"answered"| s_hello' in text
    assert 'flow_start -->|"machine"| s_message' in text
    assert 'flow_start -.->|"busy"| s_note' in text
    assert 'flow_start -.->|"no_answer, failed"| flow_end' in text
    dot = render_graph(result.version, "dot")
    assert '"(start)" -> "note" [label="busy", style=dashed];' in dot
    inbound = compile_flow(variant(FLOW, ("outbound:", "x_outbound:")).split("x_outbound")[0]
                           + "steps:\n  a:\n    log: hi\n", "i.yaml")
    assert inbound.version is not None
    assert "flow_start((start))" in render_graph(inbound.version)


@pytest.mark.parametrize(("kind", "given", "value"), [
    ("string", "Ann", "Ann"), ("integer", "42", 42), ("integer", 7.0, 7), ("number", "2.5", 2.5),
    ("number", "3", 3), ("number", 1e3, 1e3), ("boolean", "yes", True), ("boolean", "False", False),
    ("boolean", True, True), ("phone", "+1 (555) 000-1111", "+15550001111"),
])
def test_values_are_converted_as_their_type_says(kind: str, given: Any, value: Any) -> None:
    assert coerce_input(kind, given) == value and type(coerce_input(kind, given)) is type(value)


@pytest.mark.parametrize(("kind", "given"), [
    ("string", 3), ("integer", "4.5"), ("integer", True), ("number", "nan"), ("number", "1e999"),
    ("number", float("inf")), ("boolean", "maybe"), ("boolean", 1), ("phone", "5550001111"),
    ("phone", "+0123456789"), ("phone", 15550001111), ("string", "x" * 5000),
])
def test_wrong_values_are_refused(kind: str, given: Any) -> None:
    with pytest.raises(ValueError):
        coerce_input(kind, given)


def test_validate_inputs_applies_defaults_and_names_every_bad_field() -> None:
    flow = compile_flow(FLOW, "r.yaml").version
    assert flow is not None
    assert validate_inputs(flow, {"callback": "+15550002222"}) == {
        "patient": "there", "visits": 2, "callback": "+15550002222"}
    with pytest.raises(InputError) as bad:
        validate_inputs(flow, {"visits": "lots", "colour": "red"})
    assert bad.value.problems == [
        ("colour", "flow remind has no input 'colour'; its inputs are patient, visits, callback"),
        ("visits", "input 'visits' (integer) must be an integer, not 'lots'"),
        ("callback", "input 'callback' (phone) is required"),
    ]
    assert "visits: input 'visits' (integer)" in str(bad.value)
