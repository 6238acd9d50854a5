"""Call and Action handles, driven by hand-made events and a scripted stand-in client.

What goes over the wire is checked in test_relay_client.py against the simulator; here
the routing rules and the hang-up guarantee are checked case by case, including orders of
events a simulator will rarely produce.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowengine.relay import ActionResult, Call, CallEnded, RelayError
from flowengine.relay.events import CallEvent

pytestmark = pytest.mark.anyio

Reply = dict[str, Any] | Exception | Callable[[dict[str, Any]], dict[str, Any]]


class ScriptedClient:
    """Stands in for RelayClient.execute: records requests, answers from a script."""

    def __init__(self) -> None:
        self.closed = False
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.replies: dict[str, Reply] = {}

    async def execute(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.sent.append((method, params))
        await anyio.lowlevel.checkpoint()
        reply = self.replies.get(method, {"code": "200", "message": "OK"})
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply(params)
        return reply

    def methods(self) -> list[str]:
        return [method for method, _ in self.sent]


def new_call(client: ScriptedClient, state: str = "created") -> Call:
    return Call(client, {  # type: ignore[arg-type]
        "call_id": "c1", "node_id": "n1", "call_state": state, "context": "office",
        "direction": "inbound",
        "device": {"type": "phone", "params": {"from_number": "+15551230000",
                                               "to_number": "+15559870000"}}})


def ev(call: Call, event_type: str, **params: Any) -> None:
    params.setdefault("call_id", call.call_id)
    control_id = params.get("control_id")
    call._handle_event(CallEvent(event_type=event_type, call_id=call.call_id,
                                 control_id=control_id, params=params))


def state(call: Call, call_state: str, **extra: Any) -> None:
    ev(call, "calling.call.state", call_state=call_state, **extra)


async def test_offer_fields_come_from_the_receive_event() -> None:
    call = new_call(ScriptedClient())
    assert (call.call_id, call.node_id, call.context, call.direction) == (
        "c1", "n1", "office", "inbound")
    assert (call.from_number, call.to_number) == ("+15551230000", "+15559870000")
    assert call.state == "created" and not call.ended and call.end_reason is None
    assert call.device == {"type": "phone", "params": {"from_number": "+15551230000",
                                                       "to_number": "+15559870000"}}


async def test_the_device_is_the_offers_whatever_its_shape() -> None:
    sip = {"type": "sip", "params": {"from": "sip:alice@example.com", "to": "sip:desk@example.com",
                                     "headers": [{"name": "X-Account", "value": "42"}]}}
    call = Call(ScriptedClient(), {"call_id": "c2", "device": sip})  # type: ignore[arg-type]
    assert call.device == sip
    assert (call.from_number, call.to_number) == ("sip:alice@example.com", "sip:desk@example.com")
    # A phone device with more than the two numbers keeps the rest.
    phone = {"type": "phone", "params": {"from_number": "+1555", "to_number": "+1666",
                                         "region": "us"}}
    assert Call(ScriptedClient(), {"call_id": "c3", "device": phone}).device == phone  # type: ignore[arg-type]
    assert Call(ScriptedClient(), {"call_id": "c4"}).device == {}  # type: ignore[arg-type]


async def test_play_sends_media_and_resolves_on_finished() -> None:
    client = ScriptedClient()
    call = new_call(client, "answered")
    media = [{"type": "tts", "params": {"text": "Hello"}}]
    action = await call.play(media, volume=-3.0)
    method, params = client.sent[-1]
    assert method == "calling.play"
    assert params == {"node_id": "n1", "call_id": "c1", "control_id": action.control_id,
                      "play": media, "volume": -3.0}
    ev(call, "calling.call.play", control_id=action.control_id, state="playing")
    assert not action.done
    ev(call, "calling.call.play", control_id=action.control_id, state="finished")
    result = await action.wait()
    assert result.state == "finished" and result.event_type == "calling.call.play"


async def test_play_leaves_volume_out_when_not_given() -> None:
    client = ScriptedClient()
    await new_call(client, "answered").play([])
    assert "volume" not in client.sent[-1][1]


async def test_play_error_state_is_terminal_but_record_error_is_not() -> None:
    client = ScriptedClient()
    call = new_call(client, "answered")
    play = await call.play([])
    record = await call.record({"beep": True})
    ev(call, "calling.call.play", control_id=play.control_id, state="error")
    ev(call, "calling.call.record", control_id=record.control_id, state="error")
    assert play.result is not None and play.result.state == "error"
    assert not record.done  # §4.4: error is not terminal for record
    ev(call, "calling.call.record", control_id=record.control_id, state="no_input")
    assert (await record.wait()).state == "no_input"


async def test_record_sends_audio_under_record() -> None:
    client = ScriptedClient()
    audio = {"beep": True, "format": "wav", "end_silence_timeout": 1.0, "terminators": "#"}
    action = await new_call(client, "answered").record(audio)
    method, params = client.sent[-1]
    assert method == "calling.record"
    assert params == {"node_id": "n1", "call_id": "c1", "control_id": action.control_id,
                      "record": {"audio": audio}}


async def test_record_result_reads_url_duration_size_at_top_level_first() -> None:
    client = ScriptedClient()
    call = new_call(client, "answered")
    action = await call.record({})
    ev(call, "calling.call.record", control_id=action.control_id, state="finished",
       url="https://files/top.wav", duration=3.5, size=56000,
       record={"url": "https://files/nested.wav", "audio": {"format": "wav"}})
    result = await action.wait()
    assert (result.url, result.duration, result.size) == ("https://files/top.wav", 3.5, 56000)


async def test_record_result_falls_back_to_the_nested_record() -> None:
    result = ActionResult(state="finished", event_type="calling.call.record", params={
        "record": {"url": "https://files/nested.wav", "duration": "2.5", "size": "100"}})
    assert (result.url, result.duration, result.size) == ("https://files/nested.wav", 2.5, 100)


async def test_events_before_the_reply_still_reach_the_action() -> None:
    # §6.1: the terminal event may come before the reply to calling.play.
    client = ScriptedClient()
    call = new_call(client, "answered")

    def finish_first(params: dict[str, Any]) -> dict[str, Any]:
        ev(call, "calling.call.play", control_id=params["control_id"], state="finished")
        return {"code": "200"}

    client.replies["calling.play"] = finish_first
    action = await call.play([])
    assert action.result is not None and action.result.state == "finished"


async def test_events_for_other_control_ids_do_not_resolve() -> None:
    client = ScriptedClient()
    call = new_call(client, "answered")
    action = await call.play([])
    ev(call, "calling.call.play", control_id="someone-else", state="finished")
    assert not action.done


async def test_call_end_resolves_every_pending_action_with_hangup() -> None:
    client = ScriptedClient()
    call = new_call(client, "answered")
    play = await call.play([])
    record = await call.record({})
    results: list[ActionResult] = []

    async def wait_both() -> None:
        results.append(await play.wait())
        results.append(await record.wait())
        await call.wait_for_ended()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_both)
        await anyio.wait_all_tasks_blocked()
        state(call, "ending")
        assert not play.done
        state(call, "ended", end_reason="hangup")
    assert [r.state for r in results] == ["hangup", "hangup"]
    assert call.state == "ended" and call.ended and call.end_reason == "hangup"


async def test_terminal_event_before_the_end_is_kept() -> None:
    client = ScriptedClient()
    call = new_call(client, "answered")
    record = await call.record({})
    ev(call, "calling.call.record", control_id=record.control_id, state="finished",
       url="https://files/r.wav")
    state(call, "ended", end_reason="hangup")
    assert (await record.wait()).url == "https://files/r.wav"


async def test_action_on_an_ended_call_is_a_hangup_result_and_sends_nothing() -> None:
    client = ScriptedClient()
    call = new_call(client, "answered")
    state(call, "ended", end_reason="hangup")
    action = await call.record({})
    assert (await action.wait()).state == "hangup"
    assert action.result is not None and action.result.url is None
    assert client.sent == []


@pytest.mark.parametrize("code", ["404", "410"])
async def test_gone_reply_to_an_action_is_a_hangup_result(code: str) -> None:
    client = ScriptedClient()
    client.replies["calling.play"] = RelayError(int(code), "calling.play", "No such call")
    action = await new_call(client, "answered").play([])
    result = await action.wait()
    assert result.state == "hangup" and result.params == {}


async def test_other_error_reply_to_an_action_raises() -> None:
    client = ScriptedClient()
    client.replies["calling.record"] = RelayError(500, "calling.record", "boom")
    call = new_call(client, "answered")
    with pytest.raises(RelayError) as info:
        await call.record({})
    assert info.value.code == 500 and type(info.value) is RelayError
    state(call, "ended")  # nothing left registered to resolve


async def test_answer_on_an_ended_call_raises_call_ended_without_sending() -> None:
    client = ScriptedClient()
    call = new_call(client)
    state(call, "ended", end_reason="hangup")
    with pytest.raises(CallEnded):
        await call.answer()
    assert client.sent == []


async def test_answer_on_a_gone_call_raises_call_ended() -> None:
    client = ScriptedClient()
    client.replies["calling.answer"] = RelayError(404, "calling.answer", "No such call")
    with pytest.raises(CallEnded) as info:
        await new_call(client).answer()
    assert info.value.code == 404 and info.value.method == "calling.answer"


async def test_hangup_sends_end_with_reason_and_is_a_no_op_once_ended() -> None:
    client = ScriptedClient()
    call = new_call(client, "answered")
    await call.hangup("busy")
    assert client.sent[-1] == ("calling.end", {"node_id": "n1", "call_id": "c1",
                                               "reason": "busy"})
    state(call, "ended", end_reason="hangup")
    await call.hangup()
    assert len(client.sent) == 1


async def test_hangup_on_a_gone_call_is_a_no_op() -> None:
    client = ScriptedClient()
    client.replies["calling.end"] = RelayError(410, "calling.end", "Call ended")
    await new_call(client, "answered").hangup()


async def test_controls_send_kind_and_control_id() -> None:
    client = ScriptedClient()
    call = new_call(client, "answered")
    action = await call.record({})
    await action.pause("silence")
    await action.resume()
    await action.stop()
    assert client.sent[1:] == [
        ("calling.record.pause", {"node_id": "n1", "call_id": "c1",
                                  "control_id": action.control_id, "behavior": "silence"}),
        ("calling.record.resume", {"node_id": "n1", "call_id": "c1",
                                   "control_id": action.control_id}),
        ("calling.record.stop", {"node_id": "n1", "call_id": "c1",
                                 "control_id": action.control_id}),
    ]


async def test_stop_after_the_action_ended_sends_nothing() -> None:
    client = ScriptedClient()
    call = new_call(client, "answered")
    action = await call.play([])
    ev(call, "calling.call.play", control_id=action.control_id, state="finished")
    assert await action.stop() == {}
    assert client.methods() == ["calling.play"]


async def test_wait_timeout_leaves_the_action_running() -> None:
    client = ScriptedClient()
    call = new_call(client, "answered")
    action = await call.play([])
    with pytest.raises(TimeoutError):
        await action.wait(timeout=0.01)
    ev(call, "calling.call.play", control_id=action.control_id, state="finished")
    assert (await action.wait(timeout=1)).state == "finished"


async def test_state_never_moves_back_and_listeners_see_events() -> None:
    call = new_call(ScriptedClient())
    seen: list[str] = []
    call.on("calling.call.state", lambda e: seen.append(e.params["call_state"]))
    call.on("calling.call.state", lambda e: 1 / 0)  # a broken listener is only logged
    state(call, "answered")
    state(call, "ringing")  # late and out of order
    assert call.state == "answered"
    assert seen == ["answered", "ringing"]


async def test_a_call_state_that_is_not_a_state_name_changes_nothing() -> None:
    call = new_call(ScriptedClient())
    for bad in (["ended"], {"state": "ended"}, 3, None, "exploded"):
        state(call, bad)  # type: ignore[arg-type]
    assert call.state == "created" and not call.ended
    odd = Call(ScriptedClient(), {"call_id": "c5", "call_state": ["answered"]})  # type: ignore[arg-type]
    assert odd.state == "created"
    state(call, "answered")
    assert call.state == "answered"


# ------------------------------------------------------------------ odd events (fuzz)

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.floats(allow_nan=True, allow_infinity=True),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)
#: What a number field may hold instead of a number.
_ODD = st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, -1, 2**70, "12",
                        "x", "", True, None, [], {}, {"url": 3}])
_VALUE = _JSON | _ODD
#: The keys calls and actions read, plus any other.
_KEYS = st.sampled_from(["state", "call_state", "end_reason", "url", "duration", "size",
                         "record", "play", "result", "type", "params", "digits", "event",
                         "detect", "connect_state", "peer", "failed_reason", "anything"])
_EVENT_TYPES = st.sampled_from([
    "calling.call.state", "calling.call.play", "calling.call.record", "calling.call.collect",
    "calling.call.detect", "calling.call.connect", "calling.call.send_digits",
    "calling.call.unknown"])
#: The event type of each action the test starts, in order.
_OWN_EVENT = ["calling.call.play", "calling.call.record", "calling.call.collect",
              "calling.call.detect"]


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(st.tuples(_EVENT_TYPES, st.dictionaries(_KEYS, _VALUE, max_size=6),
                          st.integers(0, 4), st.booleans()), max_size=10))
def test_no_event_however_odd_breaks_a_call_or_its_actions(events: list[Any]) -> None:
    async def main() -> None:
        call = new_call(ScriptedClient(), "answered")
        actions = [
            await call.play([{"type": "silence", "params": {"duration": 1}}]),
            await call.record({"beep": True}),
            await call.play_and_collect([{"type": "silence", "params": {"duration": 1}}],
                                        {"digits": {"max": 1}}),
            await call.detect({"type": "machine", "params": {}}, wait_for_beep=True),
        ]
        for event_type, params, which, ends in events:
            control_id = actions[which].control_id if which < len(actions) else None
            if ends and which < len(actions):  # odd fields on the event that ends an action
                event_type = _OWN_EVENT[which]
                params = {**params, "state": "finished"}
            call._handle_event(CallEvent(event_type=event_type, call_id=call.call_id,
                                         control_id=control_id, params=params))
            assert call.state in ("answered", "ending", "ended")
        # Whatever came, every result reads without raising, and the call still ends
        # every action when it ends.
        state(call, "ended", end_reason="hangup")
        for action in actions:
            result = await action.wait(timeout=1)
            assert isinstance(result.state, str)
            assert result.url is None or isinstance(result.url, str)
            assert result.duration is None or isinstance(result.duration, float)
            assert result.size is None or isinstance(result.size, int)

    anyio.run(main, backend="asyncio")


def test_the_simulators_noise_frames_are_never_a_valid_event() -> None:
    # inject_noise's promise: a client that drops what it cannot use sees every call
    # through. So no junk frame may offer a call or change a call or an action.
    import random

    from flowengine.relay.events import CallReceived
    from flowengine.sim.noise import junk_frame
    from tests.test_relay_protocol import open_protocol

    async def main() -> None:
        call = new_call(ScriptedClient(), "answered")
        actions = [await call.play([{"type": "silence", "params": {"duration": 1}}]),
                   await call.record({"beep": True})]
        proto = open_protocol()
        rng, ids = random.Random(5), iter(range(10**6))
        for n in range(3000):
            action = actions[n % 2]
            event_type = ["calling.call.receive", "calling.call.state", "calling.call.play",
                          "calling.call.record"][n % 4]
            text = junk_frame(rng, call.call_id, action.control_id, event_type,
                              lambda: f"j{next(ids)}")
            for event in proto.receive_frame(text):
                assert type(event) is not CallReceived, text
                if type(event) is CallEvent and event.call_id == call.call_id:
                    call._handle_event(event)
            proto.frames_to_send()
        assert call.state == "answered" and not any(a.done for a in actions)

    anyio.run(main, backend="asyncio")
