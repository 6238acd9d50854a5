"""request over the simulator, against a local HTTP receiver: every outcome, the retries, the
call never cut short by a webhook, runs after a hangup, secrets kept out of traces."""

from __future__ import annotations

import json

import pytest

from flowengine.engine import FlowRuntime
from flowengine.engine.runner import run_calls
from flowengine.engine.trace import TraceWriter
from flowengine.scenario.receiver import Receiver, Reply
from flowengine.testing import simulated
from tests.flowtools import run_flow, write_flow

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

# A webhook during the call, then a goodbye that must still play.
FLOW = """
name: hook
context: office
vars:
  hook: "{url}/voicemail?token=abc123&kind=vm"
steps:
  greet:
    answer: {{}}
  notify:
    request:
      url: "{{{{ vars.hook }}}}"
      headers:
        Authorization: "Bearer s3cret"
        X-Caller: "{{{{ call.from }}}}"
      json:
        caller: "{{{{ call.from }}}}"
        seconds: "{{{{ 1 + 2 }}}}"
        tags: [vm, "{{{{ flow.name }}}}"]
      retries: {retries}
      backoff: 1
    on:
      ok: thanks
      http_error: sorry
      timeout: sorry
      error: sorry
  thanks:
    play: [{{say: "Thanks."}}]
    next: null
  sorry:
    play: [{{say: "Sorry, we could not pass it on."}}]
"""


async def run_with(tmp_path, replies, *, retries=2, down=False, caller="speak:1", **kw):
    async with Receiver(replies, down=down) as hook:
        flow = write_flow(tmp_path, FLOW.format(url=hook.url, retries=retries))
        run = await run_flow(flow, caller, **kw)
    return run, hook.received


def assert_call_not_cut_short(run, last_step):
    # The flow went on to its goodbye, which played to the end; the flow hung up.
    assert run.path()[-1] == (last_step, "finished")
    assert not run.report.caller_hung_up
    assert run.sim_calls[0].end_reason == "hangup"
    assert run.summary["leaked"] == 0


async def test_a_2xx_answer_is_ok_with_status_json_and_text(tmp_path):
    run, received = await run_with(tmp_path, [Reply(201, json={"id": 7, "ok": True})])
    assert run.path()[1] == ("notify", "ok")
    result = run.report.steps["notify"]
    assert result == {"status": 201, "json": {"id": 7, "ok": True},
                      "text": '{"id": 7, "ok": true}', "attempts": 1}
    [request] = received
    assert (request.method, request.path) == ("POST", "/voicemail?token=abc123&kind=vm")
    assert request.json == {"caller": "+15551230000", "seconds": 3, "tags": ["vm", "hook"]}
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["x-caller"] == "+15551230000"
    assert request.headers["content-type"] == "application/json"
    assert_call_not_cut_short(run, "thanks")


async def test_a_500_is_retried_and_a_later_2xx_is_ok(tmp_path):
    run, received = await run_with(tmp_path, [Reply(500), Reply(503), Reply(200)])
    assert run.path()[1] == ("notify", "ok")
    assert run.report.steps["notify"]["attempts"] == 3
    assert len(received) == 3


async def test_a_webhook_that_answers_500_takes_http_error_after_the_retries(tmp_path):
    run, received = await run_with(tmp_path, [Reply(500, body="boom")], retries=2)
    assert run.path()[1] == ("notify", "http_error")
    assert run.report.steps["notify"] == {"status": 500, "json": None, "text": "boom",
                                          "attempts": 3}
    assert len(received) == 3
    assert "HTTP 500" in run.report.trace[1].error
    assert_call_not_cut_short(run, "sorry")


async def test_a_4xx_is_final_at_once(tmp_path):
    run, received = await run_with(tmp_path, [Reply(404)], retries=3)
    assert run.path()[1] == ("notify", "http_error")
    assert run.report.steps["notify"]["status"] == 404
    assert len(received) == 1


async def test_a_slow_webhook_takes_timeout_after_the_retries(tmp_path):
    # On virtual time the read_timeout (10 s) and the backoff (1 s) are exact: two tries
    # that each wait 10 s for an answer due after 11 s, 1 s apart.
    run, received = await run_with(tmp_path, [Reply(200, delay=11.0)], retries=1)
    assert run.path()[1] == ("notify", "timeout")
    assert run.report.steps["notify"] == {"status": None, "json": None, "text": None,
                                          "attempts": 2}
    assert len(received) == 2
    assert "no answer within read_timeout" in run.report.trace[1].error
    assert run.report.trace[1].duration == pytest.approx(21.0, abs=0.01)
    assert_call_not_cut_short(run, "sorry")


async def test_a_webhook_that_answers_just_within_read_timeout_is_ok(tmp_path):
    run, received = await run_with(tmp_path, [Reply(200, json={"ok": 1}, delay=9.9)],
                                   retries=1)
    assert run.path()[1] == ("notify", "ok")
    assert len(received) == 1
    assert run.report.trace[1].duration == pytest.approx(9.9, abs=0.01)


async def test_a_webhook_that_is_down_takes_error_after_the_retries(tmp_path):
    run, received = await run_with(tmp_path, [], down=True, retries=2)
    assert run.path()[1] == ("notify", "error")
    assert run.report.steps["notify"]["attempts"] == 3
    assert "ConnectError" in run.report.trace[1].error
    assert received == []
    assert_call_not_cut_short(run, "sorry")


async def test_it_runs_after_the_caller_hung_up(tmp_path):
    async with Receiver() as hook:
        flow = write_flow(tmp_path, f"""
name: after_hangup
context: office
on_hangup: tell
steps:
  greet:
    answer: {{}}
  wait:
    play: [{{silence: 30}}]
  tell:
    request:
      url: "{hook.url}/gone"
      json: {{caller: "{{{{ call.from }}}}", state: "{{{{ call.state }}}}"}}
""")
        run = await run_flow(flow, "hangup@play:1")
    assert run.path() == [("greet", "answered"), ("wait", "hangup"), ("tell", "ok")]
    assert [r.json for r in hook.received] == [{"caller": "+15551230000", "state": "ended"}]


async def test_get_is_the_default_without_a_body_and_the_step_timeout_applies(tmp_path):
    async with Receiver([Reply(200, delay=45.0)]) as hook:
        flow = write_flow(tmp_path, f"""
name: get
context: office
steps:
  lookup:
    request: {{url: "{hook.url}/who?n=1", read_timeout: 600}}
    timeout: 30
    on: {{timeout: said_so}}
  ok:
    log: "ok"
    next: null
  said_so:
    log: "{{{{ steps.lookup.status }}}}"
""")
        run = await run_flow(flow, "speak:1")
    assert run.path() == [("lookup", "timeout"), ("said_so", "next")]
    assert run.report.trace[0].duration == pytest.approx(30.0, abs=0.01)  # the step's timeout
    assert [(r.method, r.path) for r in hook.received] == [("GET", "/who?n=1")]


async def test_a_url_that_is_not_http_is_error_without_a_try(tmp_path):
    flow = write_flow(tmp_path, """
name: bad_url
context: office
vars: {hook: "ftp://example.com/x"}
steps:
  notify:
    request: {url: "{{ vars.hook }}", retries: 3}
    on: {error: said}
  said:
    log: "{{ steps.notify.attempts }}"
""")
    run = await run_flow(flow, "speak:1")
    assert run.path() == [("notify", "error"), ("said", "next")]
    assert run.report.steps["said"]["text"] == "0"
    assert "http:// or https://" in run.report.trace[0].error


async def test_the_trace_file_keeps_secrets_out(tmp_path):
    trace = tmp_path / "trace.jsonl"
    writer = TraceWriter(trace)
    async with Receiver() as hook:
        flow = write_flow(tmp_path, FLOW.format(url=hook.url, retries=0))
        async with simulated(["office"], project="p", token="t") as (sim, client):
            sim.offer_call(context="office", caller="speak:1")
            await run_calls(FlowRuntime(flow), client, 1, trace=writer)
    writer.close()
    text = trace.read_text()
    assert "s3cret" not in text and "abc123" not in text
    notify = next(r for r in map(json.loads, text.splitlines()) if r["step"] == "notify")
    assert notify["params"]["headers"] == {"Authorization": "[redacted]",
                                           "X-Caller": "+15551230000"}
    assert notify["params"]["url"].endswith("/voicemail?token=[redacted]&kind=vm")
