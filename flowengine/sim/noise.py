"""Noise on the wire: frames a real RELAY server should never send, for testing that a client
drops them and keeps its calls going (``SimCore.inject_noise``, ``flowengine simulator
--noise``).

Each junk frame is about the call whose event it precedes (its ``call_id`` and, for an
action's event, its ``control_id``) but can never be read as a valid event that changes
the call: a client that drops what it cannot use sees every call through as if there were
no noise. Kinds:

- text that is not JSON, or JSON that is not an object (``null``, ``[]``, ``42``);
- a ``signalwire.event`` with no params, params that are not an object, an event type that
  is not a string, or inner params that are a list;
- a ``calling.call.state`` for the call whose ``call_state`` is a list, a mapping, a number
  or an unknown name;
- the call's action event whose ``state`` is a list, with odd ``url``/``duration``/``size``;
- an action event that would end an action, for a call id and a control id nobody knows;
- a reply to a request nobody sent; a reply with neither result nor error;
- a server request with a method no client knows (the client answers it with an error).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["junk_frame"]

_NOT_JSON = ['{"jsonrpc": "2.0", "method": "signalwire.event", "params": {', "}{", "",
             "\u00ff\u00fe garbage", "null", "[]", "42", '"a string"', "[1, 2, 3]"]


def junk_frame(rng: random.Random, call_id: str, control_id: str | None,
               event_type: str, new_id: Callable[[], str]) -> str:
    """One junk frame about the call ``call_id`` (see the module's list of kinds)."""
    kind = rng.randrange(10)
    if kind == 0:
        return rng.choice(_NOT_JSON)
    if kind == 1:
        bad_params: Any = rng.choice([None, [], "params", 7, {"event_type": 7, "params": {}},
                                      {"event_type": event_type, "params": [call_id]},
                                      {"params": {"call_id": call_id}}])
        return _dumps({"jsonrpc": "2.0", "id": new_id(), "method": "signalwire.event",
                       "params": bad_params})
    if kind in (2, 3):
        state = rng.choice([["ended"], {"state": "ended"}, 3, None, "exploded", ""])
        return _event(new_id(), "calling.call.state",
                      {"call_id": call_id, "call_state": state, "end_reason": ["odd"]})
    if kind in (4, 5) and control_id is not None and event_type != "calling.call.receive":
        return _event(new_id(), event_type, {
            "call_id": call_id, "control_id": control_id,
            "state": rng.choice([["finished"], {"finished": True}, 0, None]),
            "url": rng.choice([5, [], {"href": "x"}]),
            "duration": rng.choice(["long", [], -1, None]),
            "size": rng.choice(["big", {}, None])})
    if kind in (4, 5, 6):
        # An action's end for a call nobody has (never an offer: that would be a real call).
        return _event(new_id(), "calling.call.record", {
            "call_id": f"nobody-{new_id()}", "control_id": f"nothing-{new_id()}",
            "state": "finished", "url": "http://nowhere.invalid/x.wav"})
    if kind == 7:
        return _dumps({"jsonrpc": "2.0", "id": f"nobody-asked-{new_id()}",
                       "result": {"code": "200", "message": "OK"}})
    if kind == 8:
        return _dumps({"jsonrpc": "2.0", "id": f"nobody-asked-{new_id()}"})
    return _dumps({"jsonrpc": "2.0", "id": new_id(), "method": "signalwire.nonsense",
                   "params": {"call_id": call_id}})


def _event(frame_id: str, event_type: str, params: dict[str, Any]) -> str:
    return _dumps({"jsonrpc": "2.0", "id": frame_id, "method": "signalwire.event",
                   "params": {"event_type": event_type, "params": params}})


def _dumps(frame: Any) -> str:
    return orjson.dumps(frame).decode()
