"""What a RELAY session keeps across a dropped link, on both sides, and what `run` takes.

- a request whose reply was lost with the link is sent again after the resume when that is
  safe (its control_id makes the repeat the same action), and the simulator answers a
  repeated control_id as the same action instead of starting a second one;
- an offer sent again on resume for a call that already ended is not a new call;
- `run` takes only offers for its own contexts;
- calls lost with the session end as `session_lost` (metrics, `run`'s summary), not as
  the caller's hang-up;
- a server that keeps sending frames over the size limit gets a warning and a backoff.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from flowengine.engine.runner import run_command
from flowengine.relay import RelayClient
from flowengine.sim import Simulator
from tests.simpeer import Peer
from tests.test_daemon import attached, flow_text, write
from tests.test_daemon_ops import all_recording
from tests.test_harden_relay_drops import ended_counts, serving
from tests.test_relay_client import PROJECT, TOKEN, config_for, next_call, until

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

TTS = [{"type": "tts", "params": {"text": "Leave a message after the beep."}}]


class Records(logging.Handler):
    """Every record of the flowengine loggers, from the default level (WARNING) on unless
    told otherwise."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.WARNING) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def records() -> Any:
    handler = Records()
    with attached(handler):
        yield handler


# ------------------------------------------------ the simulator: a repeated control_id

def _answered(core: Any, peer: Peer) -> dict[str, str]:
    peer.connect(["office"])
    call = core.offer_call("office", caller="speak:30")
    ids = {"call_id": call.call_id, "node_id": call.node_id}
    peer.request("calling.answer", ids)
    return ids


def test_a_play_repeated_with_its_control_id_is_the_same_play(core: Any, peer: Peer,
                                                               clock: Any) -> None:
    ids = _answered(core, peer)
    play = {**ids, "control_id": "k1", "play": TTS}
    first = peer.request("calling.play", play)["result"]
    again = peer.request("calling.play", play)["result"]
    assert first == again and first["code"] == "200"
    clock.t += 60
    core.run_due()
    again_after_the_end = peer.request("calling.play", play)["result"]
    assert again_after_the_end == first  # the same reply, not a second prompt
    plays = [p["state"] for e, p in core._active[ids["call_id"]].events
             if e == "calling.call.play" and p.get("control_id") == "k1"]
    assert plays == ["playing", "finished"]


def test_a_record_repeated_with_its_control_id_makes_one_recording(core: Any, peer: Peer,
                                                                    clock: Any) -> None:
    ids = _answered(core, peer)
    record = {**ids, "control_id": "r1", "record": {"audio": {"end_silence_timeout": 1}}}
    first = peer.request("calling.record", record)["result"]
    again = peer.request("calling.record", record)["result"]
    assert again == first and first["url"]
    call = core._active[ids["call_id"]]
    clock.t += 60  # the caller's 30 s of speech, then the silence that ends the recording
    core.run_due()
    states = [p["state"] for e, p in call.events if e == "calling.call.record"]
    assert states == ["recording", "finished"]
    assert [r.url for r in call.recordings] == [first["url"]]


def test_a_control_id_of_another_verb_is_a_conflict(core: Any, peer: Peer) -> None:
    ids = _answered(core, peer)
    peer.request("calling.play", {**ids, "control_id": "k1", "play": TTS})
    taken = peer.request("calling.record", {**ids, "control_id": "k1",
                                            "record": {"audio": {}}})["result"]
    assert taken["code"] == "409"


# ---------------------------------------------------- the client: lost replies resent

@pytest.mark.parametrize("verb", ["play", "record"])
async def test_an_action_whose_reply_was_lost_is_sent_again_and_runs_once(verb: str) -> None:
    async with Simulator(port=0, project=PROJECT, token=TOKEN, time_scale=0.01) as sim:
        sim_call = sim.offer_call("office", caller="speak:3")
        async with RelayClient(config_for(sim), ["office"]) as client:
            call = await next_call(client)
            await call.answer()
            # RELAY starts it, then the link drops before the reply reaches us.
            sim.lose_next_reply(f"calling.{verb}")
            with anyio.fail_after(10):
                if verb == "play":
                    action = await call.play(TTS)
                else:
                    action = await call.record({"end_silence_timeout": 1.0})
                result = await action.wait()
            assert client.reconnects == 1
            assert result.state == "finished"
            await call.hangup()
        await sim_call.wait_ended(timeout=5)
    # Sent twice with the same control_id, done once.
    assert sim_call.commands.count(f"calling.{verb}") == 2
    ends = [p for e, p in sim_call.events
            if e == f"calling.call.{verb}" and p.get("state") == "finished"]
    assert len(ends) == 1 and ends[0]["control_id"] == action.control_id
    if verb == "record":
        assert len(sim_call.recordings) == 1 and result.url == sim_call.recordings[0].url


async def test_an_answer_whose_reply_was_lost_is_sent_again() -> None:
    async with Simulator(port=0, project=PROJECT, token=TOKEN, time_scale=0.01) as sim:
        sim_call = sim.offer_call("office", caller="speak:3")
        async with RelayClient(config_for(sim), ["office"]) as client:
            call = await next_call(client)
            sim.lose_next_reply("calling.answer")
            with anyio.fail_after(10):
                assert (await call.answer())["code"] == "200"
            await call.hangup()
    assert sim_call.commands[:2] == ["calling.answer", "calling.answer"]


async def test_an_offer_sent_again_for_a_call_that_ended_is_not_a_new_call() -> None:
    # The offer's ACK is lost with the socket, so RELAY sends the offer again on the
    # resume; by then the call came and went. The client must not take it anew.
    async with Simulator(port=0, project=PROJECT, token=TOKEN, time_scale=0.01) as sim, \
            RelayClient(config_for(sim), ["office"]) as client:
        first = sim.offer_call("office", caller="speak:3")
        call = await next_call(client)
        await call.answer()
        await call.hangup()
        await first.wait_ended(timeout=5)
        await until(lambda: call.state == "ended")
        # The same frames again, as a resume would send them when their ACKs were lost.
        session = next(iter(sim.core._sessions.values()))
        for event_type, params in list(first.events):
            sim.core._send_event(session, event_type, params)
        second = sim.offer_call("office", caller="speak:3")
        taken = await next_call(client)
        assert taken.call_id == second.call_id
        await taken.hangup()


# ----------------------------------------------------------- run: its own calls only

def _run_args(flow: Path, sim: Simulator) -> argparse.Namespace:
    return argparse.Namespace(flow=str(flow), count=1, quiet=True, relay_url=sim.url,
                              trace=None, save_recordings=None, time_scale=1.0,
                              caller="speak:3", from_number=None, to_number=None)


async def _connected(sim: Simulator) -> None:
    await until(lambda: any(c.session is not None for c in sim.core.connections), 10)


async def test_run_takes_only_offers_for_its_own_contexts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        records: Records) -> None:
    monkeypatch.setenv("SIGNALWIRE_PROJECT_ID", PROJECT)
    monkeypatch.setenv("SIGNALWIRE_API_TOKEN", TOKEN)
    flow = write(tmp_path / "desk.yaml", flow_text("desk", "desk"))
    async with Simulator(port=0, project=PROJECT, token=TOKEN, time_scale=0.02) as sim:
        codes: list[int] = []

        async def run() -> None:
            codes.append(await run_command(_run_args(flow, sim)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await _connected(sim)
            # First an offer that is not ours (one that ends at once, one that stays up),
            # then ours.
            gone = sim.offer_call("billing", caller="hangup@ring:0", misrouted=True)
            foreign = sim.offer_call("billing", caller="speak:3", misrouted=True)
            ours = sim.offer_call("desk", caller="speak:1")
            with anyio.fail_after(20):
                await ours.wait_ended()
        assert codes == [0]
        assert "calling.answer" in ours.commands and "calling.record" in ours.commands
        assert ours.end_reason == "hangup"
        assert foreign.commands == [] and gone.commands == []
    warnings = records.messages()
    assert sum("which this run did not ask for" in m for m in warnings) == 2, warnings
    assert "recording (message): http://" in capsys.readouterr().out


# ------------------------------------------------------- calls lost with the session

@pytest.mark.wall_clock  # the daemon compiles its flows in threads of its own
async def test_calls_lost_with_the_session_are_counted_as_session_lost(
        tmp_path: Path) -> None:
    directory = tmp_path / "flows"
    directory.mkdir()
    write(directory / "desk.yaml", flow_text("desk", "desk", on_hangup="gone"))
    async with (Simulator(port=0, project=PROJECT, token=TOKEN, time_scale=0.01,
                          resume_window=0.5) as sim,
                serving(sim, [directory], config_for(sim, request_timeout=5.0)) as daemon):
        calls = [sim.offer_call("desk", caller="speak:100") for _ in range(5)]
        await all_recording(calls)
        # RELAY forgets the session: the client starts a new one, and the calls of the
        # old one are gone with it.
        await sim.send_disconnect(restart=True)
        await until(lambda: sum(ended_counts(daemon).values()) == 5, 10)
        counts = ended_counts(daemon)
        await sim.wait_all_ended(timeout=10)
    assert counts == {"session_lost": 5.0}, counts


async def test_run_says_a_call_was_lost_with_the_session_and_exits_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SIGNALWIRE_PROJECT_ID", PROJECT)
    monkeypatch.setenv("SIGNALWIRE_API_TOKEN", TOKEN)
    flow = write(tmp_path / "desk.yaml", flow_text("desk", "desk"))
    async with Simulator(port=0, project=PROJECT, token=TOKEN, time_scale=0.01,
                         resume_window=0.5) as sim:
        codes: list[int] = []

        async def run() -> None:
            codes.append(await run_command(_run_args(flow, sim)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await _connected(sim)
            call = sim.offer_call("desk", caller="speak:100")
            await all_recording([call])
            await sim.send_disconnect(restart=True)
    out = capsys.readouterr().out
    assert codes == [1], out
    assert "lost with the RELAY session" in out and "(end reason session_lost)" in out
    assert "the caller hung up" not in out


# ------------------------------------------------------------- oversized frames loop

async def test_a_server_that_keeps_sending_oversized_frames_gets_a_warning_and_a_backoff(
        records: Records) -> None:
    async with Simulator(port=0, project=PROJECT, token=TOKEN, time_scale=0.01) as sim:
        config = config_for(sim, max_frame_size=4096, reconnect_delay=0.01,
                            reconnect_max_delay=0.08)
        async with RelayClient(config, ["office"]) as client:
            # Never ACKed (the client cannot read it), so sent again on every resume.
            assert sim.send_large_event(20_000) == 1
            await until(lambda: client.reconnects >= 6, 10)
    warnings = [m for m in records.messages() if "over the 4096-byte limit" in m]
    assert len(warnings) == 1, records.messages()  # said once, not once per reconnect
    delays = [float(m.group(1)) for r in records.records
              if (m := re.search(r"reconnecting to \S+ in (\S+) s", r.getMessage()))]
    assert len(delays) >= 6
    # Each reconnect waits longer than the one before, up to reconnect_max_delay: the
    # loop slows down instead of spinning at the first delay.
    assert delays[:4] == [0.01, 0.02, 0.04, 0.08] and set(delays[4:]) == {0.08}, delays


async def test_a_link_that_drops_for_other_reasons_starts_its_backoff_afresh(
        records: Records) -> None:
    async with (Simulator(port=0, project=PROJECT, token=TOKEN, time_scale=0.01) as sim,
                RelayClient(config_for(sim, reconnect_delay=0.01), ["office"]) as client):
        for n in range(3):
            await until(lambda: client.connected)
            await sim.drop_connections()
            await until(lambda n=n: client.reconnects == n + 1)
    delays = [float(m.group(1)) for r in records.records
              if (m := re.search(r"reconnecting to \S+ in (\S+) s", r.getMessage()))]
    assert delays == [0.01, 0.01, 0.01]
    assert not [m for m in records.messages() if "limit" in m]

