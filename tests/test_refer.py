"""refer (SIP REFER), SIP headers on connect, and an inbound call's call.sip_headers.

Over the real simulator: it answers calling.refer as the target is scripted (the caller's
``refer:`` clause, or ``set_refer_target``) and sends calling.call.refer as RELAY does;
callers with ``header:`` clauses come in over SIP with those headers.
"""

from __future__ import annotations

import textwrap

import pytest

from flowengine.flow import compile_flow
from flowengine.sim import SimCore
from flowengine.sim.caller import CallerScript, CallerScriptError
from tests.flowtools import run_flow, variant, write_flow
from tests.simpeer import Peer, answered_call, events

pytestmark = pytest.mark.anyio

FLOW = """
name: desk
context: office
on_hangup: gone
steps:
  greet:
    answer: {}
  account:
    prompt:
      play: [{say: "Your account number?"}]
      digits: {max: 4}
  hand_over:
    refer:
      to: sip:billing@pbx.example.com
      headers:
        X-Account: "{{ steps.account.digits }}"
        X-Caller: "{{ call.sip_headers['X-Caller-Id'] | default('unknown') }}"
    on:
      refused: sorry
  sorry:
    play:
      - say: >-
          Sorry, billing answered {{ steps.hand_over.code }}
          {{ steps.hand_over.notify_code }}.
    next: null
  gone:
    log: "gone"
"""


async def test_an_accepted_refer_hands_the_call_over_with_its_headers(tmp_path):
    run = await run_flow(write_flow(tmp_path, FLOW), "digits:4711,header:X-Caller-Id=c-9")
    assert run.path() == [("greet", "answered"), ("account", "digit"),
                          ("hand_over", "accepted")]
    [call] = run.sim_calls
    assert call.refers == [{"to": "sip:billing@pbx.example.com", "answer": "202",
                            "headers": {"X-Account": "4711", "X-Caller": "c-9"}}]
    assert call.referred_to == "sip:billing@pbx.example.com"
    assert run.report.steps["hand_over"] == {"to": "sip:billing@pbx.example.com",
                                             "state": "success", "code": "202",
                                             "notify_code": "200"}
    # The call left us: no on_hangup, no hang-up from the flow.
    assert not run.report.caller_hung_up and "calling.end" not in call.commands
    states = [p["state"] for t, p in call.events if t == "calling.call.refer"]
    assert states == ["inProgress", "success"]


@pytest.mark.parametrize(("answer", "code", "notify", "state"), [
    ("403", "403", None, "error"),
    ("503", "503", None, "error"),
    ("202:486", "202", "486", "busy"),
])
async def test_a_refused_refer_keeps_the_caller(tmp_path, answer, code, notify, state):
    run = await run_flow(write_flow(tmp_path, FLOW), f"digits:4711,refer:{answer}")
    # The caller is still ours: the flow goes on (sorry), then ends and hangs up.
    assert run.path() == [("greet", "answered"), ("account", "digit"),
                          ("hand_over", "refused"), ("sorry", "finished")]
    assert run.report.steps["hand_over"]["code"] == code
    assert run.report.steps["hand_over"]["notify_code"] == notify
    assert run.report.steps["hand_over"]["state"] == state
    [call] = run.sim_calls
    assert call.referred_to is None
    said = run.report.trace[3].params["media"][0]["say"]
    assert said == f"Sorry, billing answered {code} {notify or ''}."


async def test_the_refer_target_scripted_on_the_simulator_wins(tmp_path):
    def setup(sim):
        sim.set_refer_target("sip:billing@pbx.example.com", "503")

    run = await run_flow(write_flow(tmp_path, FLOW), "digits:1", setup=setup)
    assert ("hand_over", "refused") in run.path()
    assert run.report.steps["hand_over"]["code"] == "503"


async def test_a_caller_who_hangs_up_while_the_refer_is_pending_is_a_hangup(tmp_path):
    run = await run_flow(write_flow(tmp_path, FLOW), "digits:1,hangup@refer")
    assert run.path()[2:] == [("hand_over", "hangup"), ("gone", "next")]
    assert run.report.steps["hand_over"]["state"] == "hangup"
    assert run.sim_calls[0].referred_to is None


# -- SIP headers on connect, and call.sip_headers ---------------------------------------------

CONNECT = """
name: to_agent
context: office
steps:
  greet:
    answer: {}
  note:
    log: >-
      account {{ call.sip_headers['X-Account'] }} from {{ call.from }}
      ({{ call.sip_headers | length }} headers)
  agent:
    connect:
      devices: ["sip:agent@pbx.example.com", "+15550001111"]
      headers:
        X-Account: "{{ call.sip_headers['X-Account'] }}"
        X-Flow: "{{ flow.name }}"
    next: null
"""


async def test_connect_sends_sip_headers_to_sip_devices_and_templates_read_the_callers(tmp_path):
    run = await run_flow(write_flow(tmp_path, CONNECT),
                         "header:X-Account=42,header:X-Lang=fr,peer:busy/answer:2")
    assert run.report.trace[1].result["text"] == "account 42 from +15551230000 (2 headers)"
    [call] = run.sim_calls
    [devices] = call.connect_requests
    assert devices == [
        [{"type": "sip", "params": {"to": "sip:agent@pbx.example.com",
                                    "headers": [{"name": "X-Account", "value": "42"},
                                                {"name": "X-Flow", "value": "to_agent"}]}}],
        [{"type": "phone", "params": {"to_number": "+15550001111",
                                      "from_number": "+15559870000"}}]]


async def test_call_sip_headers_is_empty_for_a_phone_call_and_cannot_be_changed(tmp_path):
    flow = variant(CONNECT, ("call.sip_headers['X-Account'] }} from",
                             "call.sip_headers.get('X-Account', 'none') }} from"))
    run = await run_flow(write_flow(tmp_path, flow), "peer:answer:1")
    assert run.report.trace[1].result["text"] == "account none from +15551230000 (0 headers)"
    poke = variant(CONNECT, ("  note:\n    log:",
                             "  poke:\n    set: {x: \"{{ call.sip_headers.update({'a': 1}) }}\"}\n"
                             "  note:\n    log:"))
    run = await run_flow(write_flow(tmp_path, poke, "poke.yaml"), "peer:answer:1")
    assert run.path()[1][1] == "error"


# -- the simulator, frame by frame ------------------------------------------------------------

def test_the_simulator_answers_refer_as_scripted_and_refuses_bad_devices(
        core: SimCore, peer: Peer) -> None:
    call, ids = answered_call(core, peer, "speak:3,refer:202:480")
    sip = {"type": "sip", "params": {"to": "sip:a@b.example",
                                     "headers": [{"name": "X-A", "value": "1"}]}}
    code = lambda params: peer.request("calling.refer", params)["result"]["code"]  # noqa: E731
    assert code({**ids, "device": {"type": "phone", "params": {"to_number": "+1555"}}}) == "400"
    assert code({**ids, "device": {"type": "sip", "params": {"to": "sip:a@b",
                                                             "headers": "X-A: 1"}}}) == "400"
    assert code({**ids, "device": sip}) == "200"
    assert code({**ids, "device": sip}) == "409"  # one REFER at a time
    assert [p["state"] for t, p in events(peer.frames())] == ["inProgress"]
    peer.advance(2)
    [(kind, final)] = events(peer.frames())
    assert kind == "calling.call.refer"
    assert (final["state"], final["sip_refer_response_code"],
            final["sip_notify_response_code"], final["sip_refer_to"]) == (
        "noAnswer", "202", "480", "sip:a@b.example")
    assert call.state == "answered"  # the referred call failed: the call is still ours
    core.set_refer_target("sip:a@b.example", "202")
    assert code({**ids, "device": sip}) == "200"
    peer.advance(2)
    assert [p.get("state") or p.get("call_state") for t, p in events(peer.frames())] == [
        "inProgress", "success", "ending", "ended"]
    assert call.referred_to == "sip:a@b.example"


def test_caller_scripts_carry_refer_answers_and_sip_headers() -> None:
    script = CallerScript.parse("refer:403,header:X-A=1,header:X-B=two words")
    assert (script.refer, script.headers) == ("403", (("X-A", "1"), ("X-B", "two words")))
    assert str(CallerScript.parse(str(script))) == str(script)
    for bad in ("refer:403:200", "refer:99", "header:Bad Name=1", "header:X-A"):
        with pytest.raises(CallerScriptError):
            CallerScript.parse(bad)


# -- check ------------------------------------------------------------------------------------

def findings(text: str) -> list[str]:
    return [str(d) for d in compile_flow(textwrap.dedent(text), "t.yaml").diagnostics]


def test_check_wants_a_sip_uri_and_header_names_and_knows_accepted_ends_the_flow():
    assert findings("""\
        name: t
        steps:
          a:
            refer: {to: "+15551234567"}
        """) == ["t.yaml:4:17: error: refer in step 'a' needs a SIP URI, not '+15551234567'; "
                 "write it as sip:user@host (a REFER goes to a SIP endpoint)"]
    assert findings("""\
        name: t
        steps:
          a:
            connect: {to: "sip:a@b", headers: {"Bad Name": x}}
        """) == ["t.yaml:4:40: error: invalid header name 'Bad Name'"]
    result = compile_flow(textwrap.dedent("""\
        name: t
        steps:
          a:
            refer: sip:desk@pbx
          b:
            log: after
        """), "t.yaml")
    assert result.version is not None
    assert result.version.edges["a"]["accepted"] is None
    assert result.version.edges["a"]["refused"] == "b"


def test_the_simulator_command_takes_refer_answers_and_refuses_bad_ones() -> None:
    import subprocess
    import sys

    from flowengine.sim.cli import parse_refers

    assert parse_refers(["403", "sip:desk@pbx.example.com=202:486"]) == {
        None: "403", "sip:desk@pbx.example.com": "202:486"}
    done = subprocess.run([sys.executable, "-m", "flowengine.cli", "simulator", "--refer",
                           "sip:desk@pbx.example.com=maybe"], capture_output=True, text=True,
                          timeout=20, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert "--refer 'sip:desk@pbx.example.com=maybe': bad REFER answer 'maybe'" in done.stderr
