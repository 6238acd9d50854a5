"""send_sms over the simulator: delivered, undelivered, failed, refused, and after a hangup."""

from __future__ import annotations

import pytest

from tests.flowtools import run_flow, variant, write_flow

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

FLOW = """
name: texting
context: office
on_hangup: text
steps:
  greet:
    answer: {}
  hold:
    play: [{silence: 5}]
  text:
    send_sms:
      body: "Thanks for calling {{ call.to }}."
      media: ["https://example.com/card.png"]
    on: {undelivered: note, failed: note, error: note}
  done:
    log: "{{ steps.text.state }}"
    next: null
  note:
    log: "{{ steps.text.state }}: {{ steps.text.reason }}"
"""


async def test_a_delivered_message_goes_to_the_caller_from_the_number_they_called(tmp_path):
    captured = {}
    run = await run_flow(write_flow(tmp_path, FLOW), "speak:1",
                         setup=lambda sim: captured.update(sim=sim))
    assert run.path() == [("greet", "answered"), ("hold", "finished"), ("text", "delivered"),
                          ("done", "next")]
    result = run.report.steps["text"]
    assert result["state"] == "delivered" and result["reason"] is None
    [sent] = captured["sim"].core.messages_sent
    assert sent["message_id"] == result["message_id"]
    assert (sent["to_number"], sent["from_number"], sent["body"], sent["media"]) == (
        "+15551230000", "+15559870000", "Thanks for calling +15559870000.",
        ["https://example.com/card.png"])
    assert sent["context"] == "office"


@pytest.mark.parametrize("ending", ["undelivered", "failed"])
async def test_a_message_the_carrier_does_not_deliver(tmp_path, ending):
    run = await run_flow(write_flow(tmp_path, FLOW), f"speak:1,sms:{ending}")
    assert run.path()[-2:] == [("text", ending), ("note", "next")]
    assert run.report.steps["text"]["reason"]


async def test_a_refused_message_is_error_and_it_runs_after_a_hangup(tmp_path):
    run = await run_flow(write_flow(tmp_path, FLOW), "speak:1",
                         setup=lambda sim: sim.fail_next("messaging.send", "400", "bad number"))
    assert run.path()[-2:] == [("text", "error"), ("note", "next")]
    assert "bad number" in run.report.trace[2].error
    run = await run_flow(write_flow(tmp_path, FLOW), "hangup@play:1")
    assert run.path() == [("greet", "answered"), ("hold", "hangup"), ("text", "delivered"),
                          ("done", "next")]


async def test_a_delivery_never_confirmed_ends_with_the_step_timeout(tmp_path):
    flow = write_flow(tmp_path, variant(FLOW, ("    on: {undelivered: note",
                                              "    timeout: 10\n    on: {timeout: note, "
                                              "undelivered: note")))
    run = await run_flow(flow, "speak:1,sms:sent")
    assert run.path()[-2:] == [("text", "timeout"), ("note", "next")]
