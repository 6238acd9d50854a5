"""The RELAY client's Conference and Refer handles over the simulator (§4.10, §4.11)."""

from __future__ import annotations

import anyio
import pytest

from flowengine.relay import RelayClient
from flowengine.sim import Simulator
from tests.test_relay_client import PROJECT, TOKEN, config_for, next_call

pytestmark = pytest.mark.anyio


async def test_a_conference_handle_sees_its_own_and_the_conferences_events() -> None:
    async with Simulator(port=0, project=PROJECT, token=TOKEN, time_scale=0.01) as sim:
        sim.offer_call("office", caller="speak:3")
        async with RelayClient(config_for(sim), ["office"]) as client:
            call = await next_call(client)
            await call.answer()
            conference = await call.join_conference("room", wait_url="https://x.test/w.mp3")
            assert call.conference is conference and conference.conference_id
            with anyio.fail_after(10):
                assert await conference.wait_joined() is True
                # conference-start names no call: it reached the handle through the client.
                while conference.status != "conference-start":
                    await anyio.sleep(0.005)
            assert (await call.leave_conference())["code"] == "200"
            with anyio.fail_after(10):
                result = await conference.wait()
            assert (result.reason, result.recording_url) == ("left", None)
            assert [e["status"] for e in conference.events] == [
                "participant-join", "conference-start", "participant-leave"]
            assert await call.leave_conference() == {}  # in none any more: nothing sent
            refer = await call.refer("sip:desk@pbx.test", headers={"X-A": "1"})
            with anyio.fail_after(10):
                answer = await refer.wait()
            assert (answer.accepted, answer.response_code, answer.notify_code) == (
                True, "202", "200")
            with anyio.fail_after(10):
                await call.wait_for_ended()
        assert client._conferences == {}


async def test_handles_of_a_call_that_ends_are_over_with_hangup() -> None:
    async with Simulator(port=0, project=PROJECT, token=TOKEN, time_scale=0.01) as sim:
        sim.offer_call("office", caller="speak:3,hangup:2")
        async with RelayClient(config_for(sim), ["office"]) as client:
            call = await next_call(client)
            await call.answer()
            conference = await call.join_conference("room")
            with anyio.fail_after(10):
                result = await conference.wait()
            assert result.reason == "hangup"
            assert await conference.wait_joined() is True
        assert client._conferences == {}
