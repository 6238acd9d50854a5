"""The simulator over a real socket, spoken to by a raw websocket client.

Bad input, round-robin, resume, fault injection and the recordings' HTTP side.
Section numbers refer to docs/relay-protocol.md.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from flowengine.sim import Simulator
from flowengine.sim.audio import MP3_FRAME_BYTES

pytestmark = pytest.mark.anyio

AUTH = {"project": "sim-project", "token": "sim-token"}


class RawClient:
    """A bare JSON-RPC client: what it sends is exactly what the test says."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.n = 0
        self.inbox: list[dict[str, Any]] = []

    async def send(self, method: str, params: dict[str, Any] | None = None) -> str:
        self.n += 1
        rid = f"raw-{self.n}"
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method,
                                       "params": params or {}}))
        return rid

    async def next(self, timeout: float = 5) -> dict[str, Any]:
        """The next frame (from what was set aside first)."""
        if self.inbox:
            return self.inbox.pop(0)
        with anyio.fail_after(timeout):
            return json.loads(await self.ws.recv())

    async def reply_to(self, rid: Any) -> dict[str, Any]:
        """Frames until the reply to ``rid``; the others are set aside for later."""
        aside: list[dict[str, Any]] = []
        while True:
            frame = await self.next()
            if frame.get("id") == rid and "method" not in frame:
                self.inbox = aside + self.inbox
                return frame
            aside.append(frame)

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.reply_to(await self.send(method, params))

    async def event(self, event_type: str, **match: Any) -> dict[str, Any]:
        """Inner params of the next event of that type (and those values); ACKs it (§3)."""
        aside: list[dict[str, Any]] = []
        while True:
            frame = await self.next()
            params = frame.get("params", {})
            if (frame.get("method") == "signalwire.event" and params["event_type"] == event_type
                    and all(params["params"].get(k) == v for k, v in match.items())):
                await self.ws.send(json.dumps({"jsonrpc": "2.0", "id": frame["id"], "result": {}}))
                self.inbox = aside + self.inbox
                return params["params"]
            aside.append(frame)

    async def connect(self, contexts: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"version": {"major": 2, "minor": 0, "revision": 0},
                                  "event_acks": True, "authentication": AUTH, **extra}
        if contexts:
            params["contexts"] = contexts
        return await self.request("signalwire.connect", params)


async def raw(sim: Simulator, path: str = "/") -> RawClient:
    return RawClient(await connect(sim.url + path, compression=None))


def download(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


# -- bad input -------------------------------------------------------------------------------------


async def test_bad_input_gets_protocol_answers_and_a_good_client_is_served_after() -> None:
    async with Simulator(time_scale=0.01) as sim:
        bad = await raw(sim, "/any/path/works")
        await bad.ws.send("{this is not json")
        assert await bad.next() == {"jsonrpc": "2.0", "id": None,
                                    "error": {"code": -32700, "message": "Parse error"}}
        # A request before connect.
        assert (await bad.request("calling.answer", {"call_id": "x", "node_id": "y"}))[
            "error"]["code"] == -32000
        # Wrong credentials: the error, and nothing of the token echoed back.
        rid = await bad.send("signalwire.connect",
                             {"authentication": {"project": "sim-project", "token": "hunter2"}})
        reply = await bad.reply_to(rid)
        assert reply["error"] == {"code": -32002, "message": "Authentication failed"}
        assert "hunter2" not in json.dumps(reply)
        # The same socket can still connect properly …
        assert (await bad.connect())["result"]["protocol"]
        await bad.event("signalwire.authorization.state")
        # … then an unknown method, a command for an unknown call, a bare ACK, a binary frame.
        assert (await bad.request("calling.teleport", {}))["error"] == {
            "code": -32601, "message": "Method not found"}
        unknown = await bad.request("calling.answer", {"call_id": "nope", "node_id": "n"})
        assert unknown["result"]["code"] == "404"
        await bad.ws.send(json.dumps({"jsonrpc": "2.0", "id": "whatever", "result": {}}))
        await bad.ws.send(b"\x00\xff")
        assert (await bad.next())["error"]["code"] == -32700
        assert (await bad.request("signalwire.ping"))["result"] == {}

        # A good client on a fresh socket gets its call as usual.
        good = await raw(sim)
        await good.connect(["office"])
        call = sim.offer_call(context="office")
        received = await good.event("calling.call.receive")
        assert received["call_id"] == call.call_id
        answered = await good.request("calling.answer", {"call_id": call.call_id,
                                                         "node_id": received["node_id"]})
        assert answered["result"]["code"] == "200"
        await good.event("calling.call.state", call_state="answered")
        await good.ws.close()
        await bad.ws.close()


async def test_a_plain_http_get_is_not_a_websocket_and_unknown_recordings_are_404() -> None:
    async with Simulator() as sim:
        status, _, _ = await anyio.to_thread.run_sync(download, sim.http_url + "/")
        assert status == 426
        status, _, _ = await anyio.to_thread.run_sync(
            download, sim.http_url + "/recordings/" + "0" * 32 + ".wav")
        assert status == 404


# -- routing ---------------------------------------------------------------------------------------


async def test_two_clients_on_one_context_share_the_calls_round_robin() -> None:
    async with Simulator(time_scale=0.01) as sim:
        a, b = await raw(sim), await raw(sim)
        proto_a = (await a.connect(["office"]))["result"]["protocol"]
        proto_b = (await b.connect(["office"]))["result"]["protocol"]
        calls = [sim.offer_call(context="office") for _ in range(6)]
        got_a = {(await a.event("calling.call.receive"))["call_id"] for _ in range(3)}
        got_b = {(await b.event("calling.call.receive"))["call_id"] for _ in range(3)}
        assert got_a | got_b == {c.call_id for c in calls} and not got_a & got_b
        # Strictly taking turns.
        assert [c.protocol for c in calls] in ([proto_a, proto_b] * 3, [proto_b, proto_a] * 3)
        await a.ws.close()
        await b.ws.close()


async def test_calls_wait_until_a_client_subscribes_to_their_context() -> None:
    async with Simulator(time_scale=0.01) as sim:
        call = sim.offer_call(context="billing")
        client = await raw(sim)
        await client.connect(["office"])
        assert (await client.request("signalwire.receive", {"contexts": ["billing"]}))[
            "result"]["code"] == "200"
        assert (await client.event("calling.call.receive"))["call_id"] == call.call_id
        await client.ws.close()


# -- resume ----------------------------------------------------------------------------------------


async def test_a_dropped_session_resumes_with_its_protocol_and_gets_the_missed_events() -> None:
    async with Simulator(time_scale=0.01) as sim:
        first = await raw(sim)
        reply = await first.connect(["office"])
        protocol = reply["result"]["protocol"]
        blob = (await first.event("signalwire.authorization.state"))["authorization_state"]
        call = sim.offer_call(context="office", caller="hangup:2")
        received = await first.event("calling.call.receive")
        await first.request("calling.answer", {"call_id": call.call_id,
                                               "node_id": received["node_id"]})
        await sim.drop_connections()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await first.ws.recv()
        assert closed.value.rcvd is None  # no close frame: the socket was cut

        await call.wait_ended(timeout=5)  # the caller hung up while nobody listened
        second = await raw(sim)
        reply = await second.connect(["office"], protocol=protocol, authorization_state=blob)
        assert reply["result"]["protocol"] == protocol
        assert reply["result"]["session_restored"] is True
        await second.event("signalwire.authorization.state")
        assert (await second.event("calling.call.state", call_id=call.call_id))[
            "call_state"] in ("answered", "ending")
        ended = await second.event("calling.call.state", call_state="ended")
        assert ended["call_id"] == call.call_id and ended["end_reason"] == "hangup"
        await second.ws.close()


async def test_calls_of_a_session_that_never_comes_back_end_with_error() -> None:
    async with Simulator(time_scale=0.01, resume_window=0.2) as sim:
        client = await raw(sim)
        await client.connect(["office"])
        call = sim.offer_call(context="office")
        await client.event("calling.call.receive")
        await sim.drop_connections()
        await call.wait_ended(timeout=5)
        assert call.end_reason == "error"
        assert sim.summary()["by_end_reason"] == {"error": 1}


# -- server-side requests and fault injection ------------------------------------------------------


async def test_disconnect_asks_the_client_then_closes_the_socket() -> None:
    async with Simulator() as sim:
        client = await raw(sim)
        await client.connect()

        async def answer_disconnect() -> None:
            frame = await client.next()
            while frame.get("method") != "signalwire.disconnect":
                frame = await client.next()
            assert frame["params"] == {"restart": True}
            await client.ws.send(json.dumps({"jsonrpc": "2.0", "id": frame["id"], "result": {}}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(answer_disconnect)
            await sim.send_disconnect(restart=True)
        with pytest.raises(ConnectionClosed) as closed:
            await client.ws.recv()
        assert closed.value.rcvd is not None  # a proper close frame this time


async def test_ping_clients_returns_when_the_client_answers() -> None:
    async with Simulator() as sim:
        client = await raw(sim)
        await client.connect()
        answered: list[int] = []

        async def ping() -> None:
            answered.append(await sim.ping_clients())

        async with anyio.create_task_group() as tg:
            tg.start_soon(ping)
            frame = await client.next()
            while frame.get("method") != "signalwire.ping":
                frame = await client.next()
            await client.ws.send(json.dumps({"jsonrpc": "2.0", "id": frame["id"], "result": {}}))
        assert answered == [1]
        await client.ws.close()


async def test_periodic_server_pings() -> None:
    async with Simulator(ping_interval=0.05) as sim:
        client = await raw(sim)
        await client.connect()
        frame = await client.next()
        while frame.get("method") != "signalwire.ping":
            frame = await client.next()
        assert frame["id"]
        await client.ws.close()


async def test_a_delayed_reply_comes_after_a_later_undelayed_one() -> None:
    async with Simulator() as sim:
        client = await raw(sim)
        await client.connect()
        await client.event("signalwire.authorization.state")
        sim.delay_replies(0.3, method="signalwire.ping")
        slow = await client.send("signalwire.ping")
        fast = await client.send("signalwire.receive", {"contexts": ["x"]})
        first, second = await client.next(), await client.next()
        assert (first["id"], second["id"]) == (fast, slow)
        await client.ws.close()


async def test_fail_next_fails_exactly_one_request() -> None:
    async with Simulator(time_scale=0.01) as sim:
        client = await raw(sim)
        await client.connect(["office"])
        call = sim.offer_call(context="office")
        ids = {"call_id": call.call_id, "node_id": (await client.event("calling.call.receive"))[
            "node_id"]}
        sim.fail_next("calling.answer", code="503", message="Try later")
        assert (await client.request("calling.answer", ids))["result"] == {
            "code": "503", "message": "Try later"}
        assert (await client.request("calling.answer", ids))["result"]["code"] == "200"
        assert call.commands == ["calling.answer", "calling.answer"]
        await client.ws.close()


# -- recordings over HTTP --------------------------------------------------------------------------


async def _record(sim: Simulator, audio: dict[str, Any], caller: str) -> dict[str, Any]:
    client = await raw(sim)
    await client.connect(["office"])
    call = sim.offer_call(context="office", caller=caller)
    ids = {"call_id": call.call_id,
           "node_id": (await client.event("calling.call.receive"))["node_id"]}
    await client.request("calling.answer", ids)
    reply = await client.request("calling.record", {**ids, "control_id": "rec-1",
                                                    "record": {"audio": audio}})
    assert reply["result"]["code"] == "200"
    finished = await client.event("calling.call.record", state="finished")
    assert finished["url"] == reply["result"]["url"]
    await client.request("calling.end", ids)
    await client.ws.close()
    return finished


async def test_wav_recording_is_served_with_its_reported_size_and_length() -> None:
    async with Simulator(time_scale=0.01) as sim:
        finished = await _record(sim, {"format": "wav"}, "speak:2.5")
        status, ctype, body = await anyio.to_thread.run_sync(download, finished["url"])
        assert status == 200 and ctype == "audio/wav"
        assert body[:4] == b"RIFF" and body[8:12] == b"WAVE"
        assert len(body) == finished["size"]
        assert int.from_bytes(body[24:28], "little") == 8000          # sample rate
        assert int.from_bytes(body[34:36], "little") == 16            # bits per sample
        assert (len(body) - 44) / 16000 == pytest.approx(finished["duration"])
        assert finished["duration"] == 2.5
        assert any(body[44:1044])  # the caller's speech is not digital silence


async def test_mp3_recording_is_a_stream_of_mpeg_frames_at_an_mp3_url() -> None:
    async with Simulator(time_scale=0.01) as sim:
        finished = await _record(sim, {"format": "mp3"}, "speak:3")
        assert finished["url"].endswith(".mp3")
        assert finished["record"]["audio"]["format"] == "mp3"
        status, ctype, body = await anyio.to_thread.run_sync(download, finished["url"])
        assert status == 200 and ctype == "audio/mpeg"
        assert len(body) == finished["size"] and len(body) % MP3_FRAME_BYTES == 0
        frames = [body[i:i + 4] for i in range(0, len(body), MP3_FRAME_BYTES)]
        assert all(f[0] == 0xFF and f[1] & 0xE0 == 0xE0 for f in frames)  # frame sync
        seconds = len(frames) * 1152 / 32000
        assert finished["duration"] <= seconds < finished["duration"] + 0.04
