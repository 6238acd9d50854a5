"""Whatever a caller does, every example flow ends its call, and only with outcomes its steps
declare: random caller scripts (hypothesis) over the simulator, on virtual time (each example
runs on a fresh VirtualClockLoop, the simulator and the client in memory)."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from flowengine.engine import FlowRuntime
from flowengine.flow import load_flow
from flowengine.sim import CallerScript, CallerScriptError
from flowengine.testing import run as virtual_run
from tests.flowtools import FLOWS, run_flow

#: The example flows that need nothing but the simulator (voicemail_webhook calls out).
EXAMPLES = ["voicemail.yaml", "after_hours.yaml", "voicemail_hangup.yaml", "ivr.yaml"]

_seconds = st.integers(0, 12)
_nth = st.sampled_from(["", "2", "3"])
_keys = st.text(alphabet="0123456789*#", min_size=1, max_size=4) | st.just("-")
_clause = st.one_of(
    st.builds("speak:{}{}".format, st.integers(0, 6),
              st.sampled_from(["", ":quiet", ":#", ":1", ":*"])),
    st.just("silent"),
    st.builds("hangup:{}".format, _seconds),
    st.builds("hangup@{}{}:{}".format, st.sampled_from(["play", "record", "collect"]), _nth,
              _seconds),
    st.builds("hangup@ring:{}".format, st.integers(0, 2)),
    st.builds(lambda groups: "digits:" + "/".join(groups), st.lists(_keys, min_size=1,
                                                                   max_size=3)),
    st.builds(lambda words: "say:" + "/".join(words),
              st.lists(st.sampled_from(["sales", "support", "?", "-", "yes"]), min_size=1,
                       max_size=3)),
)
_scripts = st.lists(_clause, min_size=0, max_size=3).map(",".join)


def parses(script: str) -> bool:
    try:
        CallerScript.parse(script)
    except CallerScriptError:
        return False
    return True


@pytest.mark.parametrize("name", EXAMPLES)
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# The clock: in and out of after_hours.yaml's office hours (a Wednesday in New York).
@given(script=_scripts, vip=st.booleans(),
       at=st.sampled_from(["2026-12-23T10:00", "2026-12-23T19:30"]))
# Found by this test: a caller who talks on into a recording nobody stops (waiting for a
# second recording to hang up in) kept the example voicemail's call up for good, until
# the flows got limits.max_duration.
@example(script="hangup@record2:0", vip=False, at="2026-12-23T19:30")
def test_every_call_ends_whatever_the_caller_does(name: str, script: str, vip: bool,
                                                  at: str) -> None:
    assume(parses(script))
    flow = load_flow(FLOWS / name)
    outcomes = FlowRuntime(flow).outcomes
    offer = {"from_number": "+15551230001"} if vip else {}

    async def main() -> None:
        # Every example flow caps a call (limits.max_duration ≤ 1800 simulated s).
        started = anyio.current_time()
        with anyio.fail_after(7200):
            run = await run_flow(flow, script, at=at, tz="America/New_York", **offer)
        assert anyio.current_time() - started <= flow.max_duration + 60  # the cap, then the hangup
        summary, report = run.summary, run.report
        # The call ended, on its own or hung up by the flow; nothing leaked.
        assert summary["ended"] == summary["offered"] == 1 and summary["leaked"] == 0
        assert run.sim_calls[0].ended
        assert report.status in ("completed", "failed")
        assert (report.status == "failed") == (report.error is not None) or report.note
        for entry in report.trace:
            if entry.within is None:
                assert entry.outcome in outcomes[entry.step] | {"error"}, (script, entry)

    virtual_run(main)
