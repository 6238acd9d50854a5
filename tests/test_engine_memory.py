"""A call's Session stays within CPython's shared-key instance dicts.

CPython 3.11 shares one key table among a class's instances for up to 29 attributes; an
instance with a 30th carries a full dict of its own, ~1.6 KB more per call in flight in
``serve`` (bench/memory.py measured it twice: a 1,584 B line at the 30th assignment).
This counts what a plain inbound call's Session sets — what serve creates per call — so
that a new attribute goes to a class-level default or a lazily made object instead.
"""

from __future__ import annotations

from flowengine.engine import FlowRuntime, Session
from flowengine.flow import load_flow
from flowengine.relay import Call
from tests.flowtools import FLOWS

#: CPython's limit of keys in a shared-key table is 30 (SHARED_KEYS_MAX_SIZE); the 30th
#: attribute of an instance already makes its dict a full one (measured on 3.11).
SHARED_KEYS = 29


def test_a_served_calls_session_sets_at_most_29_attributes() -> None:
    runtime = FlowRuntime(load_flow(FLOWS / "voicemail.yaml"))
    call = Call(object(), {"call_id": "c1", "node_id": "n1", "call_state": "created",
                           "context": "office",
                           "device": {"type": "phone", "params": {
                               "from_number": "+15551230000", "to_number": "+15559870000"}}})

    async def resolver(name: str) -> FlowRuntime:
        return runtime

    # As serve makes it (daemon/server.py _dispatch), and as run makes it.
    for session in (Session(runtime, call, on_step=print, time_scale=1.0, keep_trace=False,
                            resolver=resolver),
                    Session(runtime, call)):
        names = vars(session)
        # run() sets the clocks and the limit's task (_t0, _wall0, _limited) on top.
        assert len(names | {"_t0": 0, "_wall0": 0, "_limited": None}) <= SHARED_KEYS, sorted(
            names)
