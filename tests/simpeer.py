"""The simulator's protocol core without a socket, for its tests: a fake clock, a peer that
sends and reads frames, and the fixtures ``clock``, ``core`` and ``peer`` (registered for
every test by ``tests/conftest.py``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowengine.sim import SimCore
from flowengine.sim.core import Connection


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Peer:
    """A client talking to a SimCore through a Connection, with ids of its own."""

    def __init__(self, core: SimCore, clock: FakeClock) -> None:
        self.core = core
        self.clock = clock
        self.conn: Connection = core.connection_made("test")
        self.n = 0
        self.inbox: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None) -> str:
        self.n += 1
        rid = f"req-{self.n}"
        self.core.receive_frame(self.conn, json.dumps(
            {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}))
        return rid

    def frames(self) -> list[dict[str, Any]]:
        """Every frame received since the last call (replies already taken excepted). The
        events among them are ACKed, as a client that connected with ``event_acks`` does."""
        new = [json.loads(f) for f in self.conn.take_frames()]
        for frame in new:
            if frame.get("method") == "signalwire.event" and "id" in frame:
                self.core.receive_frame(self.conn, json.dumps(
                    {"jsonrpc": "2.0", "id": frame["id"], "result": {}}))
        out = self.inbox + new
        self.inbox = []
        return out

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and return its reply; other frames stay for frames()."""
        rid = self.send(method, params)
        frames = self.frames()
        replies = [f for f in frames if f.get("id") == rid and "method" not in f]
        assert len(replies) == 1, frames
        self.inbox = [f for f in frames if f is not replies[0]]
        return replies[0]

    def connect(self, contexts: list[str] | None = None, *, keep: bool = False,
                **extra: Any) -> dict[str, Any]:
        """signalwire.connect; the frames after the reply are dropped unless ``keep``."""
        params: dict[str, Any] = {"version": {"major": 2, "minor": 0, "revision": 0},
                                  "event_acks": True,
                                  "authentication": {"project": "p", "token": "secret-token"}}
        if contexts:
            params["contexts"] = contexts
        params.update(extra)
        reply = self.request("signalwire.connect", params)
        if not keep:
            self.inbox = []
        return reply

    @property
    def protocol(self) -> str:
        session = self.conn.session
        assert session is not None
        return session.protocol

    def advance(self, seconds: float) -> None:
        self.clock.t += seconds
        self.core.run_due()


def events(frames: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(f["params"]["event_type"], f["params"]["params"]) for f in frames
            if f.get("method") == "signalwire.event"]


def states(frames: list[dict[str, Any]]) -> list[str]:
    """Event types with their state, e.g. 'calling.call.record finished'."""
    out = []
    for etype, p in events(frames):
        state = p.get("call_state") or p.get("state") or ""
        out.append(f"{etype} {state}".strip())
    return out


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def core(clock: FakeClock) -> SimCore:
    return SimCore(project="p", token="secret-token", time_scale=1.0, clock=clock,
                   http_url="http://sim.test")


@pytest.fixture
def peer(core: SimCore, clock: FakeClock) -> Peer:
    return Peer(core, clock)


def answered_call(core: SimCore, peer: Peer, caller: str = "speak:3") -> tuple[Any, dict[str, Any]]:
    peer.connect(["office"])
    call = core.offer_call("office", caller=caller)
    peer.frames()
    ids = {"node_id": call.node_id, "call_id": call.call_id}
    assert peer.request("calling.answer", ids)["result"]["code"] == "200"
    peer.frames()  # the answered event
    return call, ids
