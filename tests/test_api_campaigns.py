"""Campaigns: pacing that holds (per campaign and daemon-wide), retries by policy, pause and
resume, quiet hours, CSV bodies — counted on the in-process simulator's own clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from tests.apitools import DialWatch, api_serving, wait_campaign, write_flows
from tests.test_daemon import simulator

pytestmark = pytest.mark.anyio

#: A short outbound call: half a (simulated) second on the line, then hang up.
BRIEF = """\
name: brief
context: outbound
inputs:
  n: {type: integer, default: 0}
  name: {type: string, default: ""}
  slot: {type: string, default: ""}
outbound:
  from: "+15559870000"
steps:
  hold_on:
    sleep: 0.5
  bye:
    hangup: {}
"""


def contacts(count: int, start: int = 0) -> list[dict[str, object]]:
    return [{"to": f"+1555{start + i:07}", "vars": {"n": i}} for i in range(count)]


async def test_200_contacts_at_10_concurrent_and_5_per_second(tmp_path: Path) -> None:
    flows = write_flows(tmp_path, BRIEF)
    async with simulator(time_scale=0.1) as sim:
        sim.set_callee(None, "answer:1")
        watch = DialWatch(sim)
        async with api_serving(sim, [flows], tmp_path / "state") as (_, client):
            response = await client.post("/v1/campaigns", json={
                "flow": "brief", "from": "+15559990000", "contacts": contacts(200),
                "max_concurrent": 10, "calls_per_second": 5})
            assert response.status_code == 202, response.text
            campaign = response.json()
            assert campaign["state"] == "running" and campaign["total"] == 200
            done = await wait_campaign(client, campaign["id"], timeout=120)
    assert done["state"] == "completed"
    assert done["counts"] == {"queued": 0, "dialing": 0, "in_progress": 0, "done": 200}
    assert done["done_by_outcome"] == {"answered": 200}
    assert watch.max_up <= 10
    assert watch.max_per_window(1.0) <= 5 + 1
    dialled = watch.by_number()
    assert len(dialled) == 200 and set(dialled.values()) == {1}


async def test_the_daemon_wide_cap_holds_across_campaigns(tmp_path: Path) -> None:
    flows = write_flows(tmp_path, BRIEF)
    async with simulator(time_scale=0.05) as sim:
        sim.set_callee(None, "answer:1")
        watch = DialWatch(sim)
        async with api_serving(sim, [flows], tmp_path / "state",
                               max_outbound=3) as (_, client):
            ids = []
            for start in (0, 100):
                response = await client.post("/v1/campaigns", json={
                    "flow": "brief", "contacts": contacts(12, start), "max_concurrent": 5,
                    "calls_per_second": 100})
                ids.append(response.json()["id"])
            for campaign_id in ids:
                await wait_campaign(client, campaign_id)
    assert watch.max_up <= 3
    assert watch.count == 24 and set(watch.by_number().values()) == {1}


async def test_busy_and_no_answer_are_retried_by_policy(tmp_path: Path) -> None:
    flows = write_flows(tmp_path, BRIEF)
    async with simulator(time_scale=0.05) as sim:
        sim.set_callee(None, "answer:1")
        sim.set_callee("+15550000001", "busy")
        sim.set_callee("+15550000002", "noanswer")
        sim.set_callee("+15550000003", "fail")
        watch = DialWatch(sim)
        async with api_serving(sim, [flows], tmp_path / "state") as (_, client):
            response = await client.post("/v1/campaigns", json={
                "flow": "brief", "contacts": contacts(4), "max_concurrent": 4,
                "calls_per_second": 50,
                "retry": {"busy": {"count": 2, "delay": 2}, "no_answer": {"count": 1}}})
            campaign = response.json()
            done = await wait_campaign(client, campaign["id"])
            calls = (await client.get("/v1/calls", params={"campaign": campaign["id"]})).json()
    assert watch.by_number() == {"+15550000000": 1, "+15550000001": 3, "+15550000002": 2,
                                 "+15550000003": 1}
    assert done["done_by_outcome"] == {"answered": 1, "busy": 1, "no_answer": 1, "failed": 1}
    by_to = {c["to"]: c for c in calls["calls"]}
    busy = by_to["+15550000001"]
    assert busy["attempts"] == 3 and [a["outcome"] for a in busy["attempt_log"]] == [
        "busy"] * 3
    # The retry waited its delay (2 simulated seconds) after the attempt before it.
    log = busy["attempt_log"]
    assert log[1]["started_at"] - log[0]["ended_at"] >= 2 * 0.05 * 0.9
    assert by_to["+15550000003"]["state"] == "failed"


async def test_pause_stops_dialling_and_resume_goes_on(tmp_path: Path) -> None:
    flows = write_flows(tmp_path, BRIEF)
    async with simulator(time_scale=0.05) as sim:
        sim.set_callee(None, "answer:1")
        watch = DialWatch(sim)
        async with api_serving(sim, [flows], tmp_path / "state") as (_, client):
            campaign = (await client.post("/v1/campaigns", json={
                "flow": "brief", "contacts": contacts(30), "max_concurrent": 2,
                "calls_per_second": 10})).json()
            with anyio.fail_after(10):
                while watch.count < 3:
                    await anyio.sleep(0.01)
            paused = await client.post(f"/v1/campaigns/{campaign['id']}/pause")
            assert paused.status_code == 200 and paused.json()["state"] == "paused"
            assert (await client.post(f"/v1/campaigns/{campaign['id']}/pause")
                    ).status_code == 200  # idempotent
            await sim.wait_all_ended(timeout=10)
            placed = watch.count
            await anyio.sleep(0.5)  # 10 simulated seconds: 100 starts' worth at the rate
            assert watch.count == placed < 30
            view = (await client.get(f"/v1/campaigns/{campaign['id']}")).json()
            assert view["counts"]["queued"] == 30 - placed
            resumed = await client.post(f"/v1/campaigns/{campaign['id']}/resume")
            assert resumed.json()["state"] == "running"
            done = await wait_campaign(client, campaign["id"])
            assert (await client.post(f"/v1/campaigns/{campaign['id']}/resume")
                    ).status_code == 409
    assert done["counts"]["done"] == 30 and watch.count == 30


async def test_quiet_hours_defer_dialling_and_cancel_ends_the_campaign(tmp_path: Path) -> None:
    flows = write_flows(tmp_path, BRIEF)
    now = datetime.now(UTC)
    quiet = {"start": (now - timedelta(hours=1)).strftime("%H:%M"),
             "end": (now + timedelta(hours=1)).strftime("%H:%M"), "timezone": "UTC"}
    async with simulator(time_scale=0.05) as sim:
        watch = DialWatch(sim)
        async with api_serving(sim, [flows], tmp_path / "state") as (_, client):
            campaign = (await client.post("/v1/campaigns", json={
                "flow": "brief", "contacts": contacts(5), "calls_per_second": 100,
                "max_concurrent": 5, "quiet_hours": quiet})).json()
            assert campaign["quiet_hours"] == quiet
            await anyio.sleep(0.5)
            assert watch.count == 0
            canceled = await client.delete(f"/v1/campaigns/{campaign['id']}")
            assert canceled.status_code == 200
            body = canceled.json()
            assert body["state"] == "canceled" and body["done_by_outcome"] == {"canceled": 5}
            assert (await client.post(f"/v1/campaigns/{campaign['id']}/resume")
                    ).status_code == 409
    assert watch.count == 0


async def test_a_csv_campaign_takes_its_settings_from_the_query(tmp_path: Path) -> None:
    flows = write_flows(tmp_path, BRIEF)
    text = "to,name,slot\n+15550000010,Ann,9:00\n+15550000011,Bob,9:30\n\n"
    async with simulator(time_scale=0.05) as sim:
        sim.set_callee(None, "answer:1")
        watch = DialWatch(sim)
        async with api_serving(sim, [flows], tmp_path / "state") as (_, client):
            response = await client.post(
                "/v1/campaigns", content=text.encode(), headers={"Content-Type": "text/csv"},
                params={"flow": "brief", "from": "+15559990000", "max_concurrent": "2",
                        "retry.busy.count": "1", "retry.busy.delay": "30"})
            assert response.status_code == 202, response.text
            campaign = response.json()
            assert campaign["max_concurrent"] == 2
            assert campaign["retry"]["busy"] == {"count": 1, "delay": 30.0}
            await wait_campaign(client, campaign["id"])
            calls = (await client.get("/v1/calls", params={"campaign": campaign["id"]})).json()
    assert {c["to"]: c["vars"] for c in calls["calls"]} == {
        "+15550000010": {"n": 0, "name": "Ann", "slot": "9:00"},
        "+15550000011": {"n": 0, "name": "Bob", "slot": "9:30"}}
    assert all(c["from"] == "+15559990000" for c in calls["calls"])
    assert watch.count == 2
