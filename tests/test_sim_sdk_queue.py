"""Conformance: the official SDK's ``queue_enter`` / ``queue_leave`` and a connect to a
``queue`` device against the simulator (§5.10).

The SDK is used unchanged but for the §8 A shim (the ``sdk_client`` fixture of
test_sim_sdk.py). It sends ``calling.queue.enter`` / ``.leave`` and returns the reply's
result; the ``calling.call.queue`` events reach its ``QueueEvent`` parser and listeners.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from signalwire.relay import QueueEvent, RelayClient

from flowengine.sim import Simulator
from tests.test_sim_sdk import TIME_SCALE, Outcome, sdk_client  # noqa: F401  (§8 A shim)

pytestmark = pytest.mark.anyio


async def test_the_sdk_enters_a_queue_sees_its_place_and_leaves(
        sdk_client: Callable[..., RelayClient]) -> None:  # noqa: F811
    async with Simulator(time_scale=TIME_SCALE) as sim:
        first = sim.offer_call(context="office", caller="silent")
        outcome = Outcome()
        client = sdk_client(sim, ["office"])
        calls: list[Any] = []

        async def body(call: Any, seen: dict[str, Any]) -> None:
            calls.append(call)
            events: list[QueueEvent] = []
            call.on("calling.call.queue", events.append)
            await call.answer()
            seen.setdefault("replies", []).append(await call.queue_enter("support"))
            seen.setdefault("events", {})[call.call_id] = events
            if len(calls) == 1:
                sim.offer_call(context="office", caller="silent")
                return
            with anyio.fail_after(5):
                while len(events) < 1 or len(seen["events"][calls[0].call_id]) < 2:
                    await anyio.sleep(0.01)
            # The first caller leaves: the second moves up to the head.
            seen["leave"] = await calls[0].queue_leave("support")
            with anyio.fail_after(5):
                while len(events) < 2:
                    await anyio.sleep(0.01)
            for each in calls:
                await each.hangup()

        client.on_call(lambda call: outcome.run(lambda: body(call, outcome.values)))
        async with client:
            values = await outcome.wait()
            await sim.wait_all_ended(timeout=5)
        one, two = calls
        assert [r["code"] for r in values["replies"]] == ["200", "200"]
        assert values["replies"][0]["message"] == "Enqueued"
        assert values["leave"]["code"] == "200"
        seen_one = [(e.status, e.position, e.size, e.queue_name) for e in
                    values["events"][one.call_id]]
        seen_two = [(e.status, e.position, e.size) for e in values["events"][two.call_id]]
        assert seen_one == [("enqueued", 1, 1, "support"), ("updated", 1, 2, "support"),
                            ("left", 1, 1, "support")]
        assert seen_two == [("enqueued", 2, 2), ("updated", 1, 1)]
        queue_ids = {e.queue_id for e in values["events"][one.call_id]}
        assert len(queue_ids) == 1 and queue_ids != {""}
        assert first.call_id == one.call_id


async def test_an_sdk_agent_connects_to_the_queue_and_takes_the_caller(
        sdk_client: Callable[..., RelayClient]) -> None:  # noqa: F811
    async with Simulator(time_scale=TIME_SCALE) as sim:
        caller = sim.offer_call(context="callers", caller="silent")
        agent = sim.offer_call(context="agents", caller="silent")
        outcome = Outcome()
        callers, agents = sdk_client(sim, ["callers"]), sdk_client(sim, ["agents"])
        queued = anyio.Event()

        async def as_caller(call: Any, seen: dict[str, Any]) -> None:
            connects: list[Any] = []
            call.on("calling.call.connect", connects.append)
            await call.answer()
            await call.queue_enter("support")
            queued.set()
            with anyio.fail_after(5):
                while not any(e.params.get("connect_state") == "connected" for e in connects):
                    await anyio.sleep(0.01)
            seen["caller_connect"] = [e.params.get("connect_state") for e in connects]
            await call.hangup()

        async def as_agent(call: Any, seen: dict[str, Any]) -> None:
            connects: list[Any] = []
            call.on("calling.call.connect", connects.append)
            await call.answer()
            await queued.wait()
            seen["agent_reply"] = await call.connect(
                [[{"type": "queue", "params": {"queue_name": "support"}}]])
            with anyio.fail_after(5):
                while not any(e.params.get("connect_state") == "disconnected"
                              for e in connects):
                    await anyio.sleep(0.01)
            seen["agent_connect"] = [(e.params.get("connect_state"),
                                      (e.params.get("peer") or {}).get("call_id"))
                                     for e in connects]
            await call.hangup()

        callers.on_call(lambda call: outcome.run(lambda: as_caller(call, outcome.values)))
        done = Outcome()
        agents.on_call(lambda call: done.run(lambda: as_agent(call, done.values)))
        async with callers, agents:
            await outcome.wait()
            values = await done.wait()
            await sim.wait_all_ended(timeout=5)
        assert values["agent_reply"]["code"] == "200"
        assert values["agent_connect"] == [("connecting", None), ("connected", caller.call_id),
                                           ("disconnected", None)]
        assert outcome.values["caller_connect"] == ["connected"]
        [taken] = sim.core.queues.taken
        assert (taken.caller, taken.agent) == (caller.call_id, agent.call_id)
