"""RelayClient over a real websocket to the simulator (flowengine.sim).

Each test plays one scenario a flow would meet: the seed voicemail, a silent caller, a
hang-up mid-recording, a dropped socket, a wrong token, a slow server, a disconnect.
Section numbers (§n) refer to docs/relay-protocol.md.
"""

from __future__ import annotations

import io
import logging
import shutil
import ssl
import subprocess
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from websockets.asyncio.server import serve

from flowengine.relay import (
    Call,
    CallEnded,
    ConnectionLost,
    RelayClient,
    RelayConfig,
    RelayError,
    RequestTimeout,
)
from flowengine.sim import Simulator

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

PROJECT, TOKEN = "sim-project", "sim-token-8d1f"
TTS = [{"type": "tts", "params": {"text": "Leave a message after the beep."}}]
SEED_AUDIO = {"beep": True, "format": "wav", "end_silence_timeout": 1.0, "terminators": "#"}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(port=0, project=PROJECT, token=TOKEN, time_scale=0.01) as simulator:
        yield simulator


def config_for(sim: Simulator, **overrides: Any) -> RelayConfig:
    settings: dict[str, Any] = {"request_timeout": 2.0, "reconnect_delay": 0.05,
                                "reconnect_max_delay": 0.2, **overrides}
    return RelayConfig(url=sim.url, project=PROJECT, token=TOKEN, **settings)


async def next_call(client: RelayClient) -> Call:
    with anyio.fail_after(5):
        return await client.incoming_calls().receive()


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Wait for ``condition()`` to hold (polling; the test fails if it never does)."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)


async def http_get(url: str) -> tuple[int, bytes]:
    """A minimal HTTP/1.1 GET without threads: (status, body)."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    async with await anyio.connect_tcp(parts.hostname, parts.port) as stream:
        await stream.send(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                          f"Connection: close\r\n\r\n".encode())
        data = b""
        with anyio.fail_after(5):
            try:
                while True:
                    data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_seed_voicemail(sim: Simulator) -> None:
    """Answer, play TTS, record with a beep until '#', fetch the WAV, hang up."""
    async with RelayClient(config_for(sim), ["office"]) as client:
        offered = sim.offer_call(context="office", caller="speak:3")
        call = await next_call(client)
        assert call.call_id == offered.call_id and call.context == "office"
        assert (call.from_number, call.to_number) == ("+15551230000", "+15559870000")

        await call.answer()
        play = await call.play(TTS)
        assert (await play.wait(timeout=5)).state == "finished"

        record = await call.record(SEED_AUDIO)
        result = await record.wait(timeout=5)
        assert result.state == "finished"
        assert result.url is not None and result.url.endswith(".wav")
        assert result.duration is not None and result.duration > 2.5
        assert result.size is not None and result.size > 0

        status, body = await http_get(result.url)
        assert status == 200
        assert len(body) == result.size
        with wave.open(io.BytesIO(body)) as wav:
            seconds = wav.getnframes() / wav.getframerate()
        assert seconds == pytest.approx(result.duration, abs=0.05)

        await call.hangup()
        with anyio.fail_after(5):
            await call.wait_for_ended()
        assert call.state == "ended" and call.end_reason == "hangup"
        assert call.call_id not in client.calls  # ended calls leave the registry
        await offered.wait_ended(timeout=5)
        assert offered.end_reason == "hangup"
    assert sim.summary()["leaked"] == 0


async def test_silent_caller_gives_no_input(sim: Simulator) -> None:
    async with RelayClient(config_for(sim), ["office"]) as client:
        sim.offer_call(context="office", caller="silent")
        call = await next_call(client)
        await call.answer()
        record = await call.record({"beep": True, "initial_timeout": 2.0})
        result = await record.wait(timeout=5)
        assert result.state == "no_input"
        assert result.duration is None and result.size is None
        await call.hangup()


async def test_hangup_mid_recording_keeps_the_recording_and_resolves_the_rest(
        sim: Simulator) -> None:
    async with RelayClient(config_for(sim), ["office"]) as client:
        sim.offer_call(context="office", caller="hangup@record:2")
        call = await next_call(client)
        await call.answer()
        # A play whose request the server handles only after the caller is gone: its
        # action is pending when the call ends.
        sim.delay_replies(0.5, method="calling.play")
        results: dict[str, Any] = {}

        async def late_play() -> None:
            action = await call.play(TTS)
            results["play"] = await action.wait(timeout=5)

        async with anyio.create_task_group() as tg:
            tg.start_soon(late_play)
            record = await call.record({"beep": False})
            results["record"] = await record.wait(timeout=5)
            with anyio.fail_after(5):
                await call.wait_for_ended()
        assert results["record"].state == "finished"
        assert results["record"].url is not None and results["record"].duration > 0
        assert results["play"].state == "hangup"
        assert call.end_reason == "hangup"


async def test_action_started_after_the_end_is_a_hangup_result(sim: Simulator) -> None:
    async with RelayClient(config_for(sim), ["office"]) as client:
        offered = sim.offer_call(context="office", caller="hangup:1")
        call = await next_call(client)
        await call.answer()
        with anyio.fail_after(5):
            await call.wait_for_ended()
        record = await call.record(SEED_AUDIO)
        result = await record.wait(timeout=1)
        assert result.state == "hangup" and result.url is None
        with pytest.raises(CallEnded):
            await call.answer()
        await call.hangup()  # a no-op, not an error
        assert "calling.record" not in offered.commands


async def test_dropped_socket_mid_recording_resumes_the_same_call(sim: Simulator) -> None:
    async with RelayClient(config_for(sim), ["office"]) as client:
        sim.offer_call(context="office", caller="speak:60")  # 0.6 s at the fixture's time scale
        call = await next_call(client)
        protocol = client.protocol
        await call.answer()
        record = await call.record({"beep": False, "end_silence_timeout": 1.0})
        await sim.drop_connections()
        result = await record.wait(timeout=5)  # arrives on the resumed session
        assert result.state == "finished" and result.url is not None
        assert result.duration is not None and result.duration >= 60
        assert client.reconnects >= 1 and client.protocol == protocol
        assert client.calls.get(call.call_id) is call
        await call.hangup()
        with anyio.fail_after(5):
            await call.wait_for_ended()


async def test_requests_wait_for_the_reconnect(sim: Simulator) -> None:
    async with RelayClient(config_for(sim, reconnect_delay=0.3), ["office"]) as client:
        sim.offer_call(context="office", caller="speak:3")
        call = await next_call(client)
        await sim.drop_connections()
        await until(lambda: not client.connected)
        assert (await call.answer())["code"] == "200"  # sent once the link is back
        assert client.connected and client.reconnects == 1


async def test_request_in_flight_when_the_socket_drops_fails(sim: Simulator) -> None:
    # A request that is not safe to repeat (a connect dials; it has no control_id) fails
    # when the link drops before its reply: the server may or may not have acted on it.
    async with RelayClient(config_for(sim), ["office"]) as client:
        sim.offer_call(context="office", caller="speak:3")
        call = await next_call(client)
        await call.answer()
        sim.delay_replies(2.0, method="calling.connect")
        peer = {"type": "phone", "params": {"to_number": "+15550001111",
                                            "from_number": "+15551230000"}}

        async def drop_when_sent() -> None:
            await anyio.wait_all_tasks_blocked()  # the connect is out, waiting for its reply
            await sim.drop_connections()

        async with anyio.create_task_group() as tg:
            tg.start_soon(drop_when_sent)
            with pytest.raises(ConnectionLost):
                await call.connect([[peer]])
        sim.delay_replies(0, method="calling.connect")
        await until(lambda: client.connected)
        assert (await call.answer())["code"] == "200"  # the call survived the drop


async def test_wrong_token_fails_fast_without_showing_it(
        sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="flowengine.relay")
    wrong = "wrong-token-5e3a91"
    config = RelayConfig(url=sim.url, project=PROJECT, token=wrong)
    with pytest.raises(RelayError) as info:
        async with RelayClient(config, ["office"]):
            pass
    error = info.value
    assert type(error) is RelayError and error.method == "signalwire.connect"
    assert PROJECT in str(error)
    for text in (str(error), repr(error), caplog.text):
        assert wrong not in text
    assert "signalwire.connect" in caplog.text  # the frame was logged, masked


async def test_unreachable_server_fails_fast() -> None:
    with anyio.fail_after(5):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()  # nothing listens there any more
        with pytest.raises(ConnectionLost, match="cannot reach"):
            async with RelayClient(RelayConfig(url=f"ws://127.0.0.1:{port}", project="p",
                                               token="t")):
                pass


async def test_slow_reply_times_out_and_the_link_survives(sim: Simulator) -> None:
    async with RelayClient(config_for(sim, request_timeout=0.3), ["office"]) as client:
        sim.offer_call(context="office", caller="speak:3")
        call = await next_call(client)
        sim.delay_replies(1.0, method="calling.answer")
        with pytest.raises(RequestTimeout) as info:
            await call.answer()
        assert info.value.code == -1
        assert str(info.value) == "calling.answer: Request timeout for calling.answer"
        sim.delay_replies(0, method="calling.answer")
        # Pings are still answered, so the link stays up and the call is usable.
        assert (await call.answer())["code"] == "200"
        assert client.reconnects == 0


async def test_request_while_the_link_stays_down_times_out(sim: Simulator) -> None:
    config = config_for(sim, request_timeout=0.3, reconnect_delay=0.05)
    async with RelayClient(config, ["office"]) as client:
        sim.offer_call(context="office", caller="speak:3")
        call = await next_call(client)
        sim.delay_replies(2.0, method="signalwire.connect")  # reconnects cannot finish
        await sim.drop_connections()
        await until(lambda: not client.connected)
        with pytest.raises(RequestTimeout):
            await call.answer()
        sim.delay_replies(0, method="signalwire.connect")
        await until(lambda: client.connected)
        assert (await call.answer())["code"] == "200"


async def test_unanswered_ping_drops_and_reconnects(sim: Simulator) -> None:
    config = config_for(sim, request_timeout=0.2, ping_interval=0.2)
    async with RelayClient(config, ["office"]) as client:
        protocol = client.protocol
        sim.delay_replies(5.0, method="signalwire.ping")
        await until(lambda: client.reconnects >= 1)
        sim.delay_replies(0, method="signalwire.ping")
        assert client.protocol == protocol
        sim.offer_call(context="office", caller="speak:3")
        assert (await (await next_call(client)).answer())["code"] == "200"


async def test_server_ping_is_answered(sim: Simulator) -> None:
    async with RelayClient(config_for(sim), ["office"]):
        assert await sim.ping_clients(timeout=2) == 1


async def test_server_disconnect_reconnects_to_the_same_session(sim: Simulator) -> None:
    async with RelayClient(config_for(sim), ["office"]) as client:
        sim.offer_call(context="office", caller="speak:3")
        call = await next_call(client)
        await call.answer()
        protocol = client.protocol
        await sim.send_disconnect(restart=False)
        await until(lambda: client.reconnects == 1 and client.connected)
        assert client.protocol == protocol
        play = await call.play(TTS)
        assert (await play.wait(timeout=5)).state == "finished"
        sim.offer_call(context="office", caller="speak:3")  # still subscribed
        await next_call(client)


async def test_server_disconnect_with_restart_starts_a_new_session(sim: Simulator) -> None:
    async with RelayClient(config_for(sim), ["office"]) as client:
        sim.offer_call(context="office", caller="speak:3")
        call = await next_call(client)
        await call.answer()
        protocol = client.protocol
        await sim.send_disconnect(restart=True)
        await until(lambda: client.reconnects == 1 and client.connected)
        assert client.protocol != protocol
        # The old session's call can get no more events: it is over for us.
        assert call.state == "ended" and call.end_reason == "session_lost"
        assert (await (await call.record({})).wait(timeout=1)).state == "hangup"


async def test_receive_adds_a_context(sim: Simulator) -> None:
    async with RelayClient(config_for(sim), ["office"]) as client:
        await client.receive(["billing"])
        assert client.contexts == ("office", "billing")
        sim.offer_call(context="billing", caller="speak:3")
        assert (await next_call(client)).context == "billing"


async def test_execute_raises_relay_error_on_a_failure(sim: Simulator) -> None:
    async with RelayClient(config_for(sim), ["office"]) as client:
        sim.offer_call(context="office", caller="speak:3")
        call = await next_call(client)
        sim.fail_next("calling.record", "500", "Recorder on fire")
        with pytest.raises(RelayError) as info:
            await call.record(SEED_AUDIO)
        assert (info.value.code, info.value.method) == (500, "calling.record")
        assert "Recorder on fire" in str(info.value)


async def test_closing_the_client_resolves_everything(sim: Simulator) -> None:
    async with RelayClient(config_for(sim), ["office"]) as client:
        sim.offer_call(context="office", caller="speak:600")
        call = await next_call(client)
        await call.answer()
        record = await call.record({"beep": False})
    assert (await record.wait(timeout=1)).state == "hangup"
    assert call.end_reason == "client_closed"
    with pytest.raises(CallEnded):
        await call.answer()
    with pytest.raises(ConnectionLost, match="closed"):
        await client.execute("signalwire.ping", {})
    assert [c async for c in client.incoming_calls()] == []


async def test_body_exception_is_not_wrapped(sim: Simulator) -> None:
    with pytest.raises(KeyError):
        async with RelayClient(config_for(sim)):
            raise KeyError("mine")


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


async def test_wss_verifies_the_server_certificate(tls_files: tuple[Path, Path]) -> None:
    """The CA file is trusted on top of the system store; an unknown CA is refused."""
    import json

    cert, key = tls_files
    server_ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ssl.load_cert_chain(cert, key)

    async def connect_only(ws: Any) -> None:
        # Just enough RELAY for a login: answer signalwire.connect (§2.2).
        async for text in ws:
            message = json.loads(text)
            if message.get("method") == "signalwire.connect":
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": message["id"],
                                          "result": {"protocol": "tls-proto"}}))

    async with serve(connect_only, "127.0.0.1", 0, ssl=server_ssl) as server:
        url = f"wss://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        trusted = RelayConfig(url=url, project="p", token="t", ca_file=str(cert))
        async with RelayClient(trusted) as client:
            assert client.protocol == "tls-proto"
        with pytest.raises(ConnectionLost, match=r"(?i)certificate"):
            async with RelayClient(RelayConfig(url=url, project="p", token="t")):
                pass


async def test_unreadable_ca_file_is_a_relay_error(tmp_path: Path) -> None:
    config = RelayConfig(url="wss://127.0.0.1:1", project="p", token="t",
                         ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(RelayError, match=r"missing\.pem"):
        async with RelayClient(config):
            pass


async def test_a_bug_handling_one_event_does_not_take_the_link_down(
        sim: Simulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # A stand-in for a bug: handling the events of one call raises. The other call, on the
    # same link, goes on; the link is never dropped.
    doomed: set[str] = set()
    real = Call._handle_event

    def buggy(self: Call, event: Any) -> None:
        if self.call_id in doomed:
            raise RuntimeError("a bug in event handling")
        real(self, event)

    monkeypatch.setattr(Call, "_handle_event", buggy)
    first = sim.offer_call("office", caller="speak:1")
    second = sim.offer_call("office", caller="speak:1")
    async with RelayClient(config_for(sim), ["office"]) as client:
        a, b = await next_call(client), await next_call(client)
        doomed.add(a.call_id)
        await b.answer()  # a's answered event raises in the handler; b's still works
        await a.answer()
        action = await b.record({"terminators": "#", "end_silence_timeout": 1.0})
        result = await action.wait(timeout=5)
        assert result.state == "finished" and result.url
        await b.hangup()
        await a.hangup()
        assert client.reconnects == 0 and client.connected
    await first.wait_ended()
    await second.wait_ended()
    assert "could not handle CallEvent; the link goes on" in caplog.text


async def test_events_sent_just_before_the_server_closes_the_link_are_not_lost() -> None:
    # A server that offers a call, ends it and closes the link in one breath (as a server
    # shutting down may): the client reads the offer after the close has arrived, so its
    # ACK cannot be sent. The events are still the client's: the call is offered, and it
    # has ended, with its reason.
    import json

    def event(event_type: str, **params: Any) -> str:
        return json.dumps({"jsonrpc": "2.0", "id": f"e-{event_type}-{params.get('call_state')}",
                           "method": "signalwire.event",
                           "params": {"event_type": event_type, "params": {
                               "call_id": "c1", "node_id": "n1", **params}}})

    async def offer_end_close(ws: Any) -> None:
        message = json.loads(await ws.recv())
        assert message["params"]["contexts"] == ["office"]
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": message["id"],
                                  "result": {"protocol": "closing-proto"}}))
        ws.protocol.send_text(event("calling.call.receive", call_state="ringing",
                                    context="office", direction="inbound").encode())
        ws.protocol.send_text(event("calling.call.state", call_state="ending").encode())
        ws.protocol.send_text(event("calling.call.state", call_state="ended",
                                    end_reason="busy").encode())
        ws.protocol.send_close(1001)
        for data in ws.protocol.data_to_send():  # the four frames in one write
            ws.transport.write(data)
        await anyio.sleep(0.5)

    async with serve(offer_end_close, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        config = RelayConfig(url=url, project="p", token="t", reconnect_delay=5.0)
        async with RelayClient(config, ["office"]) as client:
            call = await next_call(client)
            with anyio.fail_after(1):
                await call.wait_for_ended()
            assert (call.call_id, call.end_reason) == ("c1", "busy")


async def test_a_hang_up_lost_with_the_link_is_sent_again(sim: Simulator) -> None:
    # calling.end is idempotent: when the link drops while it waits for its reply, it is
    # sent again once the session is resumed, and the call ends. (So are the other requests
    # that are safe to repeat; those that are not fail with ConnectionLost, as the official
    # SDK's all do.)
    sim_call = sim.offer_call("office", caller="speak:5")
    async with RelayClient(config_for(sim), ["office"]) as client:
        call = await next_call(client)
        await call.answer()
        sim.delay_replies(0.3, "calling.end")
        async with anyio.create_task_group() as tg:
            tg.start_soon(call.hangup)
            await until(lambda: client.connected)
            await anyio.sleep(0.05)  # calling.end is on its way, its reply held back
            await sim.drop_connections()
            sim.delay_replies(0)
        with anyio.fail_after(5):
            await call.wait_for_ended()
        assert client.reconnects >= 1
    await sim_call.wait_ended(timeout=5)
    assert sim_call.end_reason == "hangup" and "calling.end" in sim_call.commands
