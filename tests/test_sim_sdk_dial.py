"""Conformance: the official SDK's ``RelayClient.dial`` against the simulator (§5.9).

The SDK is used unchanged but for the §8 A shim (the ``sdk_client`` fixture of
test_sim_sdk.py): it sends ``calling.dial`` with its own tag, registers the legs from the
``calling.call.state`` events that carry it, and resolves on ``calling.call.dial``.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from signalwire.relay import RelayClient
from signalwire.relay.client import RelayError as SdkRelayError

from flowengine.sim import Simulator
from tests.test_sim_sdk import TIME_SCALE, sdk_client  # noqa: F401  (the §8 A shim fixture)

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


OURS, CALLEE = "+15559870000", "+15550001111"
DEVICES = [[{"type": "phone", "params": {"to_number": CALLEE, "from_number": OURS,
                                          "timeout": 20}}]]


async def test_the_sdk_dials_an_answering_callee_plays_and_hangs_up(
        sdk_client: Callable[..., RelayClient]) -> None:  # noqa: F811
    async with Simulator(time_scale=TIME_SCALE) as sim:
        sim.set_callee(CALLEE, "answer:2")
        client = sdk_client(sim, [])
        async with client:
            with anyio.fail_after(10):
                call = await client.dial(DEVICES, dial_timeout=10)
                assert call.state == "answered" and call.direction == "outbound"
                action = await call.play([{"type": "tts", "text": "Your order has shipped."}])
                event = await action.wait(timeout=5)
                assert event.params["state"] == "finished"
                await call.hangup()
                await sim.wait_all_ended(timeout=5)
        leg = sim.core.dials[0].legs[0]
        assert leg.call_id == call.call_id and leg.tag == sim.core.dials[0].tag
        assert leg.commands == ["calling.play", "calling.end"]
        assert leg.end_reason == "hangup"
        summary = sim.summary()
        assert summary["dialed"] == 1 and summary["leaked"] == 0 and summary["active"] == 0


async def test_the_sdk_dialling_a_busy_callee_gets_dial_failed(
        sdk_client: Callable[..., RelayClient]) -> None:  # noqa: F811
    async with Simulator(time_scale=TIME_SCALE) as sim:
        sim.set_callee(CALLEE, "busy")
        client = sdk_client(sim, [])
        async with client:
            with anyio.fail_after(10), pytest.raises(SdkRelayError, match="Dial failed"):
                await client.dial(DEVICES, dial_timeout=10)
            await sim.wait_all_ended(timeout=5)
        assert sim.core.dials[0].legs[0].end_reason == "busy"
        assert sim.summary()["by_end_reason"] == {"busy": 1}


async def test_the_sdk_dialling_parallel_devices_gets_the_first_to_answer(
        sdk_client: Callable[..., RelayClient]) -> None:  # noqa: F811
    other = "+15550002222"
    async with Simulator(time_scale=TIME_SCALE) as sim:
        sim.set_callee(CALLEE, "answer:6")
        sim.set_callee(other, "answer:2")
        devices = [[DEVICES[0][0], {"type": "phone", "params": {"to_number": other,
                                                                 "from_number": OURS}}]]
        client = sdk_client(sim, [])
        async with client:
            with anyio.fail_after(10):
                call = await client.dial(devices, dial_timeout=10)
                assert call.state == "answered"
                await call.hangup()
                await sim.wait_all_ended(timeout=5)
        dial = sim.core.dials[0]
        assert dial.winner is not None and dial.winner.call_id == call.call_id
        assert dial.winner.to_number == other
        assert sorted(leg.end_reason or "" for leg in dial.legs) == ["cancel", "hangup"]
        assert sim.summary()["leaked"] == 0
