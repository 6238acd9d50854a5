"""transfer: a call goes on in another flow, by name, on that flow's version of the moment.

In ``run`` and tests the flow is found in the folder of the flow that transfers
(``DirectoryResolver``); in ``serve`` among the flows served. The call is pinned to the
version it was handed: a reload of that flow mid-call changes only the calls that come
after it. The first flow's on_hangup never runs once the call was handed on.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import anyio
import pytest

from flowengine.engine import TraceEntry
from flowengine.flow import compile_flow, load_flow
from tests.flowtools import run_flow, variant
from tests.test_daemon import LogTap, log_tap, serving, simulator, write  # noqa: F401

pytestmark = pytest.mark.anyio

FRONT = """
name: front
context: office
on_hangup: front_gone
steps:
  greet:
    answer: {}
  hello:
    play: [{say: "Connecting you to billing."}]
  hand_on:
    transfer: "{{ vars.to }}"
  front_gone:
    log: "front: the caller left"
vars:
  to: billing
"""

BILLING = """
name: billing
context: billing
on_hangup: billing_gone
vars:
  greeting: "Billing, edition one."
steps:
  hello:
    play: [{say: "{{ vars.greeting }} You came from {{ call.from }}."}]
  wait:
    sleep: 3600
  bye:
    hangup: {}
  billing_gone:
    log: "billing: the caller left after {{ steps.hello.state | default('?') }}"
"""


def folder(tmp_path: Path, **flows: str) -> Path:
    for name, text in flows.items():
        write(tmp_path / f"{name}.yaml", textwrap.dedent(text))
    return tmp_path


def path_of(trace: list[TraceEntry]) -> list[tuple[str, str, str]]:
    return [(e.flow, e.step, e.outcome) for e in trace]


async def test_a_transferred_call_goes_on_in_the_other_flow_and_on_hangup_runs_once(tmp_path):
    where = folder(tmp_path, front=FRONT, billing=BILLING)
    run = await run_flow(load_flow(where / "front.yaml"), "hangup@play2")
    assert path_of(run.report.trace) == [
        ("front", "greet", "answered"), ("front", "hello", "finished"),
        ("front", "hand_on", "transferred"),
        ("billing", "hello", "hangup"), ("billing", "billing_gone", "next")]
    billing = load_flow(where / "billing.yaml")
    assert {e.version for e in run.report.trace[3:]} == {billing.version}
    assert run.report.trace[2].result == {"flow": "billing", "version": billing.short_version}
    # The second flow has its own vars and steps; the first flow's on_hangup never ran.
    # The report keeps the first flow's results, and names both flows.
    assert run.report.vars == {"to": "billing"}
    assert run.report.steps["hand_on"]["flow"] == "billing"
    front = load_flow(where / "front.yaml")
    assert run.report.flows == (f"front@{front.short_version}",
                                f"billing@{billing.short_version}")
    assert run.report.trace[3].params["media"][0]["say"] == (
        "Billing, edition one. You came from +15551230000.")
    assert run.report.caller_hung_up and run.report.status == "completed"


async def test_a_transfer_to_a_flow_that_does_not_exist_is_an_error(tmp_path):
    where = folder(tmp_path, front=variant(FRONT, ("to: billing", "to: payroll")),
                   billing=BILLING)
    run = await run_flow(load_flow(where / "front.yaml"), "speak:1")
    assert path_of(run.report.trace)[-1] == ("front", "hand_on", "error")
    assert run.report.status == "failed"
    assert "no flow named 'payroll'" in (run.report.trace[-1].error or "")


async def test_a_flow_that_transfers_to_a_broken_flow_gets_an_error_not_the_broken_flow(
        tmp_path):
    where = folder(tmp_path, front=FRONT, billing=variant(BILLING, ("sleep: 3600",
                                                                   "sleep: -1")))
    run = await run_flow(load_flow(where / "front.yaml"), "speak:1")
    assert path_of(run.report.trace)[-1] == ("front", "hand_on", "error")


async def test_transfers_that_loop_end_the_call(tmp_path):
    loop = """
    name: loop
    context: office
    steps:
      again:
        transfer: loop
    """
    where = folder(tmp_path, loop=loop)
    run = await run_flow(load_flow(where / "loop.yaml"), "speak:1")
    assert run.report.status == "failed" and "more than 20 transfers" in run.report.error
    assert len(run.report.trace) == 21
    assert run.sim_calls[0].ended


def test_check_knows_transfer_ends_the_flow():
    version = compile_flow(textwrap.dedent(FRONT), "front.yaml").version
    assert version is not None
    assert version.edges["hand_on"] == {"transferred": None, "error": None,
                                       "hangup": "front_gone"}


async def test_serve_pins_a_transferred_call_to_the_version_it_got(
        tmp_path: Path, log_tap: LogTap) -> None:  # noqa: F811
    where = folder(tmp_path, front=FRONT, billing=BILLING)
    steps: list[TraceEntry] = []
    async with simulator(time_scale=0.01) as sim, serving(sim, [where], watch=False,
                                                          on_step=steps.append) as daemon:
        v1 = daemon.registry.flows["billing"].flow.version
        first = sim.offer_call("office", from_number="+15550000001", caller="speak:1")

        def handed_on(number_call: str) -> bool:
            return any(e.call_id == number_call and e.step == "hello" and e.flow == "billing"
                       for e in steps)

        with anyio.fail_after(20):
            while not handed_on(first.call_id):
                await anyio.sleep(0.01)
        # The first call now waits in billing (v1). Billing is edited and reloaded.
        write(where / "billing.yaml", textwrap.dedent(
            variant(BILLING, ("edition one", "edition two"))))
        daemon.request_reload("test")
        with anyio.fail_after(20):
            while daemon.registry.flows["billing"].flow.version == v1:
                await anyio.sleep(0.01)
        v2 = daemon.registry.flows["billing"].flow.version
        second = sim.offer_call("office", from_number="+15550000002", caller="speak:1")
        with anyio.fail_after(20):
            while not handed_on(second.call_id):
                await anyio.sleep(0.01)
        # Both callers hang up, in billing's long wait.
        first.end("hangup")
        second.end("hangup")
        await first.wait_ended(timeout=10)
        await second.wait_ended(timeout=10)
        with anyio.fail_after(20):
            while sum(e.step == "billing_gone" for e in steps) < 2:
                await anyio.sleep(0.01)

    def billing_steps(call_id: str) -> list[TraceEntry]:
        return [e for e in steps if e.call_id == call_id and e.flow == "billing"]

    assert {e.version for e in billing_steps(first.call_id)} == {v1}
    assert {e.version for e in billing_steps(second.call_id)} == {v2}
    said = {e.call_id: e.params["media"][0]["say"] for e in steps
            if e.flow == "billing" and e.step == "hello"}
    assert said == {first.call_id: "Billing, edition one. You came from +15550000001.",
                    second.call_id: "Billing, edition two. You came from +15550000002."}
    for call in (first, second):
        assert [(e.flow, e.step, e.outcome) for e in steps if e.call_id == call.call_id] == [
            ("front", "greet", "answered"), ("front", "hello", "finished"),
            ("front", "hand_on", "transferred"), ("billing", "hello", "finished"),
            ("billing", "wait", "hangup"), ("billing", "billing_gone", "next")]
    # The call's log line names both flows, with the versions it ran.
    _, line = await log_tap.wait_event("call_ended", call_id=first.call_id)
    front_v = load_flow(where / "front.yaml").short_version
    assert line.flows == [f"front@{front_v}", f"billing@{v1[:12]}"]
    assert line.getMessage().endswith(f"(transferred: front@{front_v} > billing@{v1[:12]})")


async def test_a_call_that_hung_up_is_not_transferred(tmp_path):
    where = folder(tmp_path,
                   front=variant(FRONT, ("  front_gone:\n    log: \"front: the caller left\"",
                                         "  front_gone:\n    transfer: billing")),
                   billing=BILLING)
    run = await run_flow(load_flow(where / "front.yaml"), "hangup@play")
    assert path_of(run.report.trace) == [
        ("front", "greet", "answered"), ("front", "hello", "hangup"),
        ("front", "front_gone", "hangup")]
    assert run.report.flows == (f"front@{load_flow(where / 'front.yaml').short_version}",)


async def test_handlers_are_taken_once_per_call_across_a_transfer(tmp_path):
    # front's play fails: its on_error transfers to billing, whose play fails too; billing's
    # on_error is not taken, as a second unhandled error of one call ends its flow.
    front = variant(FRONT, ("on_hangup: front_gone", "on_hangup: front_gone\non_error: hand_on"))
    billing = variant(BILLING, ("on_hangup: billing_gone",
                                "on_hangup: billing_gone\non_error: billing_gone"))
    where = folder(tmp_path, front=front, billing=billing)

    def setup(sim):
        sim.fail_next("calling.play")
        sim.fail_next("calling.play")

    run = await run_flow(load_flow(where / "front.yaml"), "speak:1", setup=setup)
    assert path_of(run.report.trace) == [
        ("front", "greet", "answered"), ("front", "hello", "error"),
        ("front", "hand_on", "transferred"), ("billing", "hello", "error")]
    assert run.report.status == "failed"


async def test_the_flow_transferred_to_reads_its_own_schedules(tmp_path):
    # The second flow's templates see its own schedules (the first flow has none).
    billing = variant(BILLING, ("vars:\n", "schedules:\n  desk:\n    timezone: UTC\n"
                                "    hours:\n      mon-sun: \"00:00-24:00\"\nvars:\n"),
                      ("{{ vars.greeting }} You came", "{{ vars.greeting }} "
                       "{{ 'Open.' if is_open('desk') else 'Closed.' }} You came"))
    where = folder(tmp_path, front=FRONT, billing=billing)
    run = await run_flow(load_flow(where / "front.yaml"), "hangup@play2")
    assert run.report.trace[3].params["media"][0]["say"] == (
        "Billing, edition one. Open. You came from +15551230000.")


def test_coverage_does_not_count_the_steps_of_the_flow_transferred_to(tmp_path, capsys):
    """billing's ``hello: finished → wait`` is billing's edge; front has an edge of the same
    step, outcome and target, which no scenario took: coverage must say so."""
    from flowengine.cli import main

    where = folder(tmp_path, front="""
        name: front
        context: office
        steps:
          greet:
            answer: {}
          hand_on:
            transfer: billing
            on: {error: hello}
          hello:
            play: [{say: "Billing is closed."}]
          wait:
            hangup: {}
        """, billing="""
        name: billing
        context: billing
        steps:
          hello:
            play: [{say: "Billing here."}]
          wait:
            sleep: 3600
        """)
    (where / "tests").mkdir()
    write(where / "tests" / "front.test.yaml", textwrap.dedent("""
        flow: ../front.yaml
        scenarios:
          - name: handed on to billing
            caller: "hangup:30"
            expect:
              outcomes: {hand_on: transferred}
        """))
    assert main(["test", str(where / "tests"), "--coverage"]) == 0
    out = capsys.readouterr().out
    assert "hand_on: transferred → (end)  — taken by 'handed on to billing'" in out
    assert "hello: finished → wait  — NOT TAKEN" in out
