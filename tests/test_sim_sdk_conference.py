"""Conformance: the official SDK's join_conference, leave_conference, refer and hold
against the simulator — the replies and events RELAY sends (§4.10, §4.11, §5.11, §5.12).

The SDK is used unchanged (but for the §8 A shim of ``tests/test_sim_sdk.py``); each
handler records the typed events the SDK parsed for its call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from signalwire.relay import ConferenceEvent, ReferEvent, RelayClient

from flowengine.sim import Simulator
from tests.test_sim_sdk import TIME_SCALE, sdk_client  # noqa: F401

pytestmark = pytest.mark.anyio

HOST, GUEST, SIP_CALLER = "+15550000001", "+15550000002", "+15550000003"


async def test_the_sdk_joins_a_conference_leaves_it_refers_and_holds(
        sdk_client: Callable[..., RelayClient]) -> None:  # noqa: F811
    seen: dict[str, dict[str, Any]] = {HOST: {}, GUEST: {}, SIP_CALLER: {}}
    guest_in, done = anyio.Event(), {n: anyio.Event() for n in seen}
    errors: list[BaseException] = []
    async with Simulator(time_scale=TIME_SCALE) as sim:
        client = sdk_client(sim, ["office"])

        @client.on_call
        async def handle(call: Any) -> None:
            number = call.device["params"]["from_number"]
            mine = seen[number]
            events: list[Any] = mine.setdefault("events", [])
            for kind in ("calling.conference", "calling.call.refer", "calling.call.hold"):
                call.on(kind, events.append)
            try:
                await call.answer()
                if number == GUEST:
                    mine["join"] = await call.join_conference("room", muted=True)
                    guest_in.set()
                    mine["end"] = await call.wait_for(
                        "calling.conference",
                        lambda e: e.params.get("status") == "participant-leave", timeout=5)
                elif number == HOST:
                    await guest_in.wait()
                    mine["join"] = await call.join_conference(
                        "room", start_on_enter=True, end_on_exit=True, beep="onEnter",
                        record="record-from-start")
                    mine["hold"] = await call.hold()
                    mine["unhold"] = await call.unhold()
                    mine["leave"] = await call.leave_conference(mine["join"]["conference_id"])
                else:
                    mine["refer"] = await call.refer(
                        {"type": "sip", "params": {"to": "sip:desk@pbx.example.com",
                                                   "headers": [{"name": "X-Ticket",
                                                                "value": "77"}]}})
                    mine["ended"] = await call.wait_for_ended(timeout=5)
                await call.hangup()
            except Exception as exc:
                errors.append(exc)
            finally:
                done[number].set()

        calls = {n: sim.offer_call("office", from_number=n, caller="speak:1")
                 for n in (GUEST, HOST, SIP_CALLER)}
        async with client:
            with anyio.fail_after(15):
                for event in done.values():
                    await event.wait()
            for call in calls.values():
                await call.wait_ended(timeout=5)
        assert errors == []
        conf = sim.core.conferences["room"]

    host, guest, sip = seen[HOST], seen[GUEST], seen[SIP_CALLER]
    # join_conference: a 200 with the conference's id, the same for both.
    assert guest["join"]["code"] == host["join"]["code"] == "200"
    assert guest["join"]["conference_id"] == host["join"]["conference_id"] == conf.conference_id
    # The typed events the SDK parsed for the guest's call: its join, and its leaving when
    # the host (end_on_exit) left. The conference's own events (start, end) name no call:
    # the SDK routes them to no Call (§4.10), but they were sent.
    guest_conf = [e for e in guest["events"] if e.event_type == "calling.conference"]
    assert all(isinstance(e, ConferenceEvent) for e in guest_conf)
    assert [(e.status, e.params.get("reason")) for e in guest_conf] == [
        ("participant-join", None), ("participant-leave", "ended")]
    assert [e["status"] for e in conf.events] == ["conference-start", "conference-end"]
    assert {e.conference_id for e in guest_conf} == {conf.conference_id}
    assert {e.name for e in guest_conf} == {"room"}
    assert guest["end"].params["reason"] == "ended"
    host_conf = [e.status for e in host["events"] if e.event_type == "calling.conference"]
    assert host_conf == ["participant-join", "participant-leave"]
    assert host["leave"]["code"] == "200"
    # hold / unhold: 200s, and calling.call.hold hold then unhold.
    assert host["hold"]["code"] == host["unhold"]["code"] == "200"
    assert [e.params["state"] for e in host["events"]
            if e.event_type == "calling.call.hold"] == ["hold", "unhold"]
    # The recording asked for by the host is the conference's, finished at its end.
    assert conf.recording is not None and conf.recording.finished
    # refer: 200, then inProgress and success with the SIP codes; then the call ends.
    assert sip["refer"]["code"] == "200"
    refers = [e for e in sip["events"] if e.event_type == "calling.call.refer"]
    assert all(isinstance(e, ReferEvent) for e in refers)
    assert [(e.state, e.sip_refer_to, e.sip_refer_response_code, e.sip_notify_response_code)
            for e in refers] == [
        ("inProgress", "sip:desk@pbx.example.com", "", ""),
        ("success", "sip:desk@pbx.example.com", "202", "200")]
    assert sip["ended"].params["end_reason"] == "hangup"
    assert calls[SIP_CALLER].refers[0]["headers"] == {"X-Ticket": "77"}
