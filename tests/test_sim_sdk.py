"""Conformance: the official ``signalwire-sdk`` RelayClient against the simulator.

The SDK is used unchanged apart from the §8 A shim of docs/relay-protocol.md (its hard-coded
``wss://`` rewritten to ``ws://`` at the one place it opens the socket), scoped to each
test with monkeypatch. The handler is the SDK's own record example (the seed example).
"""

from __future__ import annotations

import types
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
import signalwire.relay.client as relay_client_module
import websockets
from signalwire.relay import RelayClient

from flowengine.sim import Simulator
from flowengine.sim.audio import MP3_FRAME_BYTES, MP3_RATE, MP3_SAMPLES_PER_FRAME

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

#: The tests run on virtual time (the SDK over a real websocket to the simulator): simulated
#: seconds cost nothing, so they run unscaled.
TIME_SCALE = 1.0
#: Simulated seconds after which a wait counts as a hang.
HANG = 300.0


@pytest.fixture
def sdk_client(monkeypatch: pytest.MonkeyPatch) -> Callable[..., RelayClient]:
    """Build RelayClients that reach the simulator over plain ws:// (§8 A)."""
    real_connect = websockets.connect

    def connect_plain(uri: str, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("ssl", None)  # the SDK passes ssl=None, which wss:// refuses
        return real_connect(uri.replace("wss://", "ws://", 1), *args, **kwargs)

    monkeypatch.setattr(relay_client_module, "websockets", types.SimpleNamespace(
        connect=connect_plain, exceptions=websockets.exceptions))

    def make(sim: Simulator | str, contexts: list[str], **kwargs: Any) -> RelayClient:
        """A client for a Simulator, or for a ws:// URL (a simulator in another process)."""
        url = sim if isinstance(sim, str) else sim.url
        return RelayClient(project="sim-project", token="sim-token",
                           host=url.removeprefix("ws://"), contexts=contexts, **kwargs)

    return make


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


class Outcome:
    """What a handler saw, filled in from the SDK's own tasks."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: BaseException | None = None
        self.values: dict[str, Any] = {}

    async def run(self, body: Callable[[], Awaitable[None]]) -> None:
        try:
            await body()
        except Exception as exc:  # re-raised by wait(); the SDK would only log it
            self.error = exc
        finally:
            self.done.set()

    def handle(self, client: RelayClient,
               body: Callable[[Any, dict[str, Any]], Awaitable[None]]) -> None:
        """Have ``client`` run ``body(call, values)`` for the calls it gets (what it saw goes
        into ``values``, errors to :meth:`wait`)."""

        @client.on_call
        async def handle_call(call: Any) -> None:
            await self.run(lambda: body(call, self.values))

    async def wait(self, timeout: float = HANG) -> dict[str, Any]:
        with anyio.fail_after(timeout):
            await self.done.wait()
        if self.error is not None:
            raise self.error
        return self.values


async def run_seed_example(
        sdk_client: Callable[..., RelayClient], caller: str, audio: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """The SDK's record example (answer, TTS, record with beep, wait, read url, hang up).

    Returns what the handler saw (plus ``body``, the downloaded recording), the
    simulator's view of the call and its summary.
    """
    async with Simulator(time_scale=TIME_SCALE) as sim:
        sim_call = sim.offer_call(context="office", caller=caller)
        outcome = Outcome()
        client = sdk_client(sim, ["office"])

        async def body(call: Any, seen: dict[str, Any]) -> None:
            await call.answer()
            await call.play([{"type": "tts", "text": "Leave a message after the beep."}])
            action = await call.record(
                audio=audio or {"beep": True, "end_silence_timeout": 3, "terminators": "#"},
                on_completed=lambda ev: seen.setdefault("state_then", call.state))
            event = await action.wait()
            seen["event"] = event
            seen["nested_url"] = event.params.get("record", {}).get("url", "")
            await call.hangup()

        outcome.handle(client, body)

        async with client:
            values = await outcome.wait()
            await sim_call.wait_ended(timeout=HANG)
        if values["event"].url:  # while the simulator still serves it
            values["body"] = await anyio.to_thread.run_sync(download, values["event"].url)
        return values, sim_call, sim.summary()


async def test_seed_example_records_a_message_and_the_url_downloads_real_audio(
        sdk_client: Callable[..., RelayClient]) -> None:
    values, sim_call, summary = await run_seed_example(sdk_client, "speak:3")
    event = values["event"]
    assert event.event_type == "calling.call.record" and event.state == "finished"
    # The example asks for no format: RELAY's default, mp3.
    assert event.url.startswith("http://127.0.0.1:") and event.url.endswith(".mp3")
    assert values["nested_url"] == event.url  # the example reads params.record.url
    assert event.duration == 3.0
    body = values["body"]
    assert len(body) == event.size
    # Constant-bit-rate MPEG-1 Layer III: every frame starts with the sync word, and the
    # frames cover the recorded length.
    frames = [body[i:i + MP3_FRAME_BYTES] for i in range(0, len(body), MP3_FRAME_BYTES)]
    assert all(f[0] == 0xFF and f[1] & 0xE0 == 0xE0 for f in frames)
    assert len(frames) * MP3_SAMPLES_PER_FRAME / MP3_RATE == pytest.approx(
        event.duration, abs=MP3_SAMPLES_PER_FRAME / MP3_RATE)
    assert sim_call.commands == ["calling.answer", "calling.play", "calling.record",
                                 "calling.end"]
    assert sim_call.end_reason == "hangup"
    assert summary["ended"] == 1 and summary["leaked"] == 0


async def test_seed_example_with_a_silent_caller_gets_no_input(
        sdk_client: Callable[..., RelayClient]) -> None:
    values, sim_call, _ = await run_seed_example(
        sdk_client, "silent",
        {"beep": True, "initial_timeout": 2, "end_silence_timeout": 3, "terminators": "#"})
    event = values["event"]
    assert event.state == "no_input" and event.url == ""
    assert sim_call.recordings == [] and sim_call.end_reason == "hangup"


async def test_caller_hanging_up_mid_recording_still_delivers_the_recording(
        sdk_client: Callable[..., RelayClient]) -> None:
    async with Simulator(time_scale=TIME_SCALE) as sim:
        sim_call = sim.offer_call(context="office", caller="hangup@record:2")
        outcome = Outcome()
        client = sdk_client(sim, ["office"])

        async def body(call: Any, seen: dict[str, Any]) -> None:
            await call.answer()
            action = await call.record(
                audio={"beep": True, "end_silence_timeout": 3, "terminators": "#",
                       "format": "wav"},
                on_completed=lambda ev: seen.setdefault("state_then", call.state))
            seen["event"] = await action.wait()
            seen["ended"] = await call.wait_for_ended(timeout=HANG)
            # Too late: the simulator answers 410 and the SDK reads it as "gone" (§7).
            seen["late_hangup"] = await call.hangup()

        outcome.handle(client, body)

        async with client:
            values = await outcome.wait()
        event = values["event"]
        assert event.state == "finished" and event.url and event.duration == 2.0
        # The record event came while the call was ending, before "ended" (§3).
        assert values["state_then"] == "ending"
        assert values["ended"].params["end_reason"] == "hangup"
        body = await anyio.to_thread.run_sync(download, event.url)
        assert len(body) == event.size and body[:4] == b"RIFF" and body[8:12] == b"WAVE"
        assert (len(body) - 44) / (8000 * 2) == pytest.approx(event.duration)
        assert values["late_hangup"] == {}
        assert sim_call.end_reason == "hangup"
        assert sim_call.commands == ["calling.answer", "calling.record", "calling.end"]


async def test_play_controls_and_a_caller_who_hangs_up_during_the_play(
        sdk_client: Callable[..., RelayClient]) -> None:
    async with Simulator(time_scale=TIME_SCALE) as sim:
        sim_call = sim.offer_call(context="office", caller="hangup@play:8")
        outcome = Outcome()
        client = sdk_client(sim, ["office"])

        async def body(call: Any, seen: dict[str, Any]) -> None:
            await call.answer()
            play = await call.play_silence(20)
            assert (await play.pause())["code"] == "200"
            assert (await play.resume())["code"] == "200"
            assert (await play.volume(-3.0))["code"] == "200"
            seen["play"] = await play.wait(timeout=HANG)
            seen["ended"] = await call.wait_for_ended(timeout=HANG)

        outcome.handle(client, body)

        async with client:
            values = await outcome.wait()
        assert values["play"].params["state"] == "finished"
        assert values["ended"].params["end_reason"] == "hangup"
        assert sim_call.commands == ["calling.answer", "calling.play", "calling.play.pause",
                                     "calling.play.resume", "calling.play.volume"]


async def test_collect_digits_through_the_sdk(sdk_client: Callable[..., RelayClient]) -> None:
    async with Simulator(time_scale=TIME_SCALE) as sim:
        sim.offer_call(context="office", caller="digits:42#")
        outcome = Outcome()
        client = sdk_client(sim, ["office"])

        async def body(call: Any, seen: dict[str, Any]) -> None:
            await call.answer()
            action = await call.play_and_collect(
                [{"type": "tts", "params": {"text": "Enter your code"}}],
                {"digits": {"max": 4, "terminators": "#", "digit_timeout": 5}})
            seen["collect"] = await action.wait(timeout=HANG)
            await call.hangup()

        outcome.handle(client, body)

        async with client:
            values = await outcome.wait()
        assert values["collect"].params["result"] == {
            "type": "digit", "params": {"digits": "42", "terminator": "#"}}


async def test_two_sdk_clients_share_one_context_and_answer_server_pings(
        sdk_client: Callable[..., RelayClient]) -> None:
    async with Simulator(time_scale=TIME_SCALE) as sim:
        handled: dict[str, list[str]] = {"a": [], "b": []}
        clients = {}
        for name, calls_handled in handled.items():
            client = sdk_client(sim, ["office"])

            async def handle_call(call: Any, calls_handled: list[str] = calls_handled) -> None:
                calls_handled.append(call.call_id)
                await call.answer()
                await call.hangup()

            client.on_call(handle_call)
            clients[name] = client
        async with clients["a"], clients["b"]:
            assert await sim.ping_clients(timeout=HANG) == 2
            calls = [sim.offer_call(context="office") for _ in range(6)]
            await sim.wait_all_ended(timeout=HANG)
        assert len(handled["a"]) == 3 and len(handled["b"]) == 3
        assert sorted(handled["a"] + handled["b"]) == sorted(c.call_id for c in calls)
        assert sim.summary()["by_end_reason"] == {"hangup": 6}


async def test_wrong_token_is_rejected_as_the_sdk_expects(
        sdk_client: Callable[..., RelayClient]) -> None:
    from signalwire.relay.client import RelayError

    async with Simulator() as sim:
        client = RelayClient(project="sim-project", token="wrong",
                             host=sim.url.removeprefix("ws://"), contexts=["office"])
        with pytest.raises(RelayError) as err:
            await client.connect()
        await client.disconnect()
        assert err.value.code == -32002


async def test_the_sdk_resumes_its_session_after_a_dropped_socket(
        sdk_client: Callable[..., RelayClient]) -> None:
    async with Simulator(time_scale=TIME_SCALE) as sim:
        sim_call = sim.offer_call(context="office", caller="speak:20")
        outcome = Outcome()
        client = sdk_client(sim, ["office"])

        async def body(call: Any, seen: dict[str, Any]) -> None:
            await call.answer()
            action = await call.record(audio={"terminators": "#"})
            seen["recording"] = True
            seen["event"] = await action.wait()
            await call.hangup()

        outcome.handle(client, body)

        async with client:
            protocol = client.relay_protocol
            with anyio.fail_after(HANG):
                # Once the SDK has the record's reply: a drop between the command and its
                # reply fails the command in the SDK ("Connection closed"), which is not
                # what this test is about (it flaked so under load).
                while "recording" not in outcome.values:
                    await anyio.sleep(0.005)
            await sim.drop_connections()
            with anyio.fail_after(HANG):  # the recording ends while the client is away
                while not sim_call.recordings:
                    await anyio.sleep(0.005)
            await client.connect()  # what the SDK's run() loop does after a drop
            values = await outcome.wait()
            assert client.relay_protocol == protocol
            await sim_call.wait_ended(timeout=HANG)
        # The record event queued during the outage reached the action on resume.
        assert values["event"].state == "finished" and values["event"].duration == 20.0
        assert sim_call.end_reason == "hangup"
        assert sim_call.commands == ["calling.answer", "calling.record", "calling.end"]
