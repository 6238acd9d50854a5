"""Scenario files that test webhooks: vars pointed at the local HTTP receiver, its replies,
and `received` — what a failing expectation reports, and mistakes in the file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flowengine.scenario import ScenarioFileError, load_scenarios, run_scenario

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK = ROOT / "flows" / "voicemail_webhook.yaml"

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


def scenario_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hook.test.yaml"
    path.write_text(textwrap.dedent(text).replace("FLOW", str(WEBHOOK)))
    return path


async def test_a_wrong_expectation_about_the_request_says_what_was_sent(tmp_path):
    loaded = load_scenarios(scenario_file(tmp_path, """\
        flow: FLOW
        vars: {webhook_url: "${RECEIVER}/vm"}
        scenarios:
          - name: expects another body
            caller: speak:2
            expect:
              received:
                - method: PUT
                  path: /voicemail
                  json: {caller: "+15550000000", duration: {approx: 5}, mailbox: sales}
                  headers: {x-missing: yes}
                - {}
        """))
    result = await run_scenario(loaded.flow, loaded.scenarios[0], file=loaded.file)
    assert not result.passed
    assert [(m.what, m.expected, m.actual) for m in result.mismatches] == [
        ("received", "2 requests", "1: POST /vm"),
        ("received[0].method", "PUT", "POST"),
        ("received[0].path", '"/voicemail"', '"/vm"'),
        ("received[0].json.caller", '"+15550000000"', '"+15551230000"'),
        ("received[0].json.duration", "5 ± 0.5", "2.0"),
        ("received[0].json.mailbox", '"sales"', "not in the body"),
        ("received[0].headers.x-missing", '"yes"', "not sent"),
    ]


async def test_the_receiver_and_vars_of_a_scenario_win_over_the_files(tmp_path):
    loaded = load_scenarios(scenario_file(tmp_path, """\
        flow: FLOW
        vars: {webhook_url: "${RECEIVER}/file", webhook_token: file-token}
        receiver: {replies: [{status: 500}]}
        scenarios:
          - name: own receiver and token
            vars: {webhook_token: own-token}
            receiver: {replies: [{status: 204}]}
            expect:
              outcomes: {notify: ok}
              received: [{path: /file, headers: {authorization: "Bearer own-token"}}]
        """))
    result = await run_scenario(loaded.flow, loaded.scenarios[0], file=loaded.file)
    assert result.passed, result.failure_text()


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ScenarioFileError) as info:
        load_scenarios(scenario_file(tmp_path, text))
    return [str(d).replace(str(tmp_path) + "/", "") for d in info.value.diagnostics]


def test_a_variable_the_flow_does_not_have_is_refused(tmp_path):
    assert problems(tmp_path, """\
        flow: FLOW
        vars: {webhook: "${RECEIVER}"}
        scenarios:
          - name: one
            vars: {webhook_tokn: x}
            expect: {}
        """) == [
        ("hook.test.yaml:2:8: error: flow voicemail_webhook has no variable 'webhook' under "
         "vars:; did you mean 'webhook_url'?"),
        ("hook.test.yaml:5:12: error: flow voicemail_webhook has no variable 'webhook_tokn' under "
         "vars:; did you mean 'webhook_token'?"),
    ]


def test_a_reply_status_out_of_range_is_refused(tmp_path):
    assert problems(tmp_path, """\
        flow: FLOW
        scenarios:
          - name: one
            receiver: {replies: [{status: 99}]}
            expect: {}
        """) == [("hook.test.yaml:4:35: error: receiver.replies.1.status in scenario 1 must be "
                  "at least 100, not 99")]
