"""Each file under tests/flows_bad/ holds one mistake; `check` reports exactly that one,
at the right line and column, with the message a user reads — and never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowengine.flow import FlowError, check_paths, load_flow
from flowengine.flow.actions import ACTIONS

BAD = Path(__file__).parent / "flows_bad"

# file → (line, col, what follows "error: ")
EXPECTED = {
    # The [ that is never closed, where it was written (libyaml notices it at 5:3).
    "yaml_syntax.yaml": (4, 11, ("this [ … ] list is not closed, or two of its items have no "
                                "',' between them; end it with ']' and separate its items "
                                "with ','")),
    "tab_indent.yaml": (3, 1, ("invalid YAML: found character that cannot start any token (while "
                              "scanning for the next token); YAML does not allow tabs for "
                              "indentation; use spaces")),
    "duplicate_key.yaml": (8, 3, "duplicate key 'greet' (first at line 3)"),
    "unknown_action.yaml": (6, 5, "unknown action 'plya'; did you mean 'play'?"),
    "misspelled_record_param.yaml": (6, 7, ("unknown key 'end_silence_timout' in record; did you "
                                           "mean 'end_silence_timeout'?")),
    "wrong_type.yaml": (5, 28, ("end_silence_timeout in record must be a number, not the text "
                               "'three'")),
    "on_yes_strings.yaml": (5, 9, "on in step 'greet' must be a mapping, not the text 'yes'"),
    "unquoted_number.yaml": (3, 7, ("to in match must be text, not the number 15559870000; "
                                   "quote it: \"15559870000\"")),
    "two_actions.yaml": (6, 5, ("step 'prompt' has more than one action: 'play', 'record'; a step "
                               "takes exactly one action; split it into two steps")),
    "media_two_kinds.yaml": (6, 9, ("play item 1 has more than one media type: 'say', 'audio'; "
                                   "write each as its own item")),
    "edge_to_missing_step.yaml": (5, 11, "unknown step 'thank' in next; did you mean 'thanks'?"),
    "missing_start.yaml": (2, 8, "unknown step 'greeting' in start; did you mean 'greet'?"),
    "impossible_outcome.yaml": (7, 7, ("play cannot end with 'no_input'; its outcomes are "
                                      "finished, error, hangup")),
    "timeout_without_timeout.yaml": (7, 7, ("step 'prompt' has no timeout, so it cannot end with "
                                           "'timeout'; add timeout: SECONDS to the step")),
    "default_choice_not_last.yaml": (5, 9, ("only the last choice of a branch can leave out when "
                                           "(it is the default); choices after it are never "
                                           "tried")),
    "undefined_name.yaml": (5, 14, ("unknown name 'caller' in a template; templates can use call, "
                                   "steps, vars and flow; did you mean 'call'?")),
    "missing_step_reference.yaml": (6, 10, ("unknown step 'take_mesage' in steps.take_mesage; did "
                                           "you mean 'take_message'?")),
    "unknown_result_field.yaml": (6, 10, ("steps.take_message has no result 'urll'; did you mean "
                                         "'url'?")),
    "unknown_variable.yaml": (7, 14, ("unknown variable 'mailbx' in vars.mailbx; did you mean "
                                     "'mailbox'?")),
    "vars_use_steps.yaml": (3, 8, ("vars values can use only call and flow (steps is not set yet "
                                  "when the call starts)")),
    "template_syntax.yaml": (7, 14, "invalid template in say in play item 1: unexpected '}'"),
    "when_with_braces.yaml": (5, 15, ("invalid template in when in branch choice 1: when is an "
                                     "expression without {{ }}; write: when: call.from == "
                                     "'+15551230001'")),
    "python_internals.yaml": (4, 10, ("'__class__', '__mro__' are not allowed in templates (names "
                                     "starting with '_' reach Python internals)")),
    "loop_no_exit.yaml": (7, 3, ("steps 'count_up', 'report' loop forever: no path leads out of "
                                "the loop or to the end of the flow; give one of them a way out "
                                "(a branch choice, next or on: to a step outside the loop)")),
    # -- added with the authoring tools (issue 5) --
    "on_to_missing_step.yaml": (6, 17, ("unknown step 'nothing_hard' in on.no_input; did you "
                                       "mean 'nothing_heard'?")),
    "goto_missing_step.yaml": (6, 15, ("unknown step 'vip_promt' in goto; did you mean "
                                      "'vip_prompt'?")),
    "on_hangup_missing_step.yaml": (2, 12, ("unknown step 'log_hangup' in on_hangup; did you mean "
                                           "'log_hang_up'?")),
    "self_loop.yaml": (5, 3, ("step 'again' always goes back to itself: no path leads out of the "
                             "loop or to the end of the flow; give one of them a way out (a branch "
                             "choice, next or on: to a step outside the loop)")),
    "unknown_call_field.yaml": (6, 18, ("unknown call field 'frm' in call.frm; did you mean "
                                       "'from'?")),
    "reserved_step_id.yaml": (5, 3, ("'items' cannot be a step id: in templates steps.items is a "
                                    "method of the mapping; choose another name")),
    "invalid_step_id.yaml": (5, 3, ("invalid step id 'leave-message'; use letters, digits and '_', "
                                   "starting with a letter or '_' (templates write steps.<id> and "
                                   "vars.<name>)")),
    "empty_steps.yaml": (2, 8, "steps must not be empty"),
    "volume_out_of_range.yaml": (6, 15, "volume in play must be at most 40, not 100"),
    "log_with_outcome.yaml": (6, 7, ("log cannot end with 'finished'; its only outcome for on: is "
                                    "error; use next: to say where to go after it")),
    "power_operator.yaml": (7, 12, "the ** operator is not allowed in templates"),
    "key_of_another_media.yaml": (6, 9, ("'duration' does not go with say in play item 1; "
                                        "'duration' belongs to ringtone")),
    "unknown_filter.yaml": (5, 14, ("invalid template in say in play item 1: unknown filter "
                                   "'uper'; did you mean 'upper'?")),
    "python_tag.yaml": (3, 10, "unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'"),
    "step_without_action.yaml": (5, 3, ("step 'prompt' has no action; it needs one of "
                                       + ", ".join(ACTIONS))),
    # -- actions beyond voicemail (issue 7) --
    "prompt_listens_for_nothing.yaml": (4, 5, ("prompt in step 'menu' listens for nothing; add "
                                              "digits: {} (keys), speech: {} (words) or both")),
    "prompt_zero_attempts.yaml": (7, 21, "max_attempts in prompt must be at least 1, not 0"),
    "prompt_misspelled_reprompt.yaml": (8, 7, ("unknown key 'no_input_prompt' in prompt; did you "
                                              "mean 'no_input_play'?")),
    "prompt_outcome_of_play.yaml": (8, 7, ("prompt cannot end with 'finished'; its outcomes are "
                                          "digit, speech, no_input, no_match, error, hangup")),
    "prompt_digits_terminator.yaml": (6, 37, ("invalid value 'pound' for terminators in digits in "
                                             "prompt; terminators are DTMF keys: 0-9, *, # and "
                                             "A-D")),
    "request_without_url.yaml": (4, 5, "request needs 'url'"),
    "request_lowercase_method.yaml": (6, 15, ("method in request must be one of GET, POST, PUT, "
                                             "PATCH, DELETE, not the text 'post'; did you mean "
                                             "'POST'?")),
    "request_too_many_retries.yaml": (6, 16, "retries in request must be at most 10, not 50"),
    "request_header_number.yaml": (7, 20, ("X-Account in headers in request must be text, not "
                                          "the number 12345; quote it: \"12345\"")),
    "request_hangup_outcome.yaml": (7, 7, ("request cannot end with 'hangup'; its outcomes are "
                                          "ok, http_error, timeout, error")),
    "request_bad_header_name.yaml": (7, 9, ("invalid header name 'X Token'; a header name is "
                                           "letters, digits and !#$%&'*+.^_`|~- (no spaces or "
                                           "colons)")),
    "connect_dials_nobody.yaml": (4, 5, ("connect in step 'transfer' dials nobody; add to: "
                                        "NUMBER, or devices: [NUMBER, …] for several, or "
                                        "queue: NAME to take the next caller of a queue")),
    "connect_to_and_devices.yaml": (6, 7, ("connect takes to: or devices:, not both; put the "
                                          "number of to: into devices:")),
    "connect_connected_while_waiting.yaml": (7, 7, (
        "connect cannot end with 'connected'; its outcomes are disconnected, failed, error, "
        "hangup; a connect ends with connected only with wait: false")),
    "connect_unquoted_number.yaml": (5, 33, ("item 2 of devices in connect must be text or a "
                                            "list, not the number 15550002222; quote it: "
                                            "\"15550002222\"")),
    "goto_unknown_step.yaml": (6, 18, "unknown step 'mneu' in goto; did you mean 'menu'?"),
    "goto_with_next.yaml": (7, 5, ("a goto step goes to its step ('menu'); it has no next:; say "
                                  "where to go when max_visits is reached with on: {exhausted: "
                                  "STEP}")),
    "goto_exhausted_without_limit.yaml": (8, 7, ("goto cannot end with 'exhausted'; its outcomes "
                                                "are error; a goto ends with exhausted only with "
                                                "max_visits")),
    "goto_zero_visits.yaml": (6, 36, "max_visits in goto must be at least 1, not 0"),
    "subflow_calls_itself.yaml": (4, 11, (
        "subflow cycle: tests/flows_bad/subflow_calls_itself.yaml → "
        "tests/flows_bad/subflow_calls_itself.yaml; a flow cannot call itself, directly or "
        "through other flows")),
    "subflow_unknown_param.yaml": (6, 16, ("subflow lib/ask.yaml has no parameter 'qestion'; "
                                          "did you mean 'question'?")),
    "subflow_missing_file.yaml": (4, 11, ("cannot read the subflow lib/account.yaml: No such file "
                                         "or directory; the path is relative to this flow's "
                                         "file")),
    "subflow_unknown_return.yaml": (6, 10, ("steps.account has no result 'number'; its subflow "
                                           "returns account")),
    "return_with_next.yaml": (5, 5, ("a return step ends the flow; it has no next:; put the "
                                    "steps to run before it ahead of it")),
    "params_undeclared.yaml": (4, 10, ("params is not declared: this flow has no params:; a "
                                      "subflow declares its parameters, with defaults, under "
                                      "params: at the top of its file")),
    "send_digits_not_dtmf.yaml": (4, 18, ("'ext 42' is not DTMF to send; use 0-9, *, #, A-D, w "
                                         "(wait 0.5 s) and W (wait 1 s)")),
    "sleep_negative.yaml": (4, 12, "sleep must be greater than 0, not -1"),
    "detect_tone_for_machine.yaml": (6, 7, ("'tone' does not go with detect type machine; 'tone' "
                                           "belongs to type: fax")),
    "detect_human_on_fax.yaml": (6, 7, ("detect cannot end with 'human'; its outcomes are "
                                       "unknown, fax, error, hangup; a detect ends with human "
                                       "only with type: machine")),
    "detect_without_type.yaml": (4, 5, "detect needs 'type'"),
    "stop_record_call_not_record_call.yaml": (6, 23, (
        "step 'take_message' is a record step, not record_call; stop_record_call stops what a "
        "record_call step started")),
    "record_call_timeout_key.yaml": (6, 7, "unknown key 'end_silence_timeout' in record_call"),
    "send_sms_nothing_to_send.yaml": (4, 5, ("send_sms in step 'text' has nothing to send; add "
                                            "body: TEXT, media: [URL…] or both")),
    "send_sms_hangup_outcome.yaml": (6, 7, ("send_sms cannot end with 'hangup'; its outcomes are "
                                           "delivered, undelivered, failed, error")),
}


def test_every_bad_flow_has_an_expectation():
    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_flow_gives_one_precise_message(name):
    path = BAD / name
    line, col, message = EXPECTED[name]
    diagnostics = check_paths([path])
    assert [str(d) for d in diagnostics] == [f"{path}:{line}:{col}: error: {message}"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_flow_raises_flow_error_with_the_same_finding(name):
    path = BAD / name
    with pytest.raises(FlowError) as info:
        load_flow(path)
    assert len(info.value.errors) == 1
    line, col, _ = EXPECTED[name]
    error = info.value.errors[0]
    assert (error.file, error.line, error.col) == (str(path), line, col)
    assert str(info.value) == str(error)
