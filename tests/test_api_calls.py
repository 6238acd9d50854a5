"""The call API's calls: create, get, list, cancel — on a daemon and the in-process
simulator, counting the simulator's dials."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.apitools import NOTIFY, DialWatch, api_serving, wait_call, write_flows
from tests.flowtools import variant
from tests.test_daemon import simulator

pytestmark = pytest.mark.anyio


async def test_a_call_is_queued_dialled_run_and_reported(tmp_path: Path) -> None:
    flows = write_flows(tmp_path, NOTIFY)
    async with simulator() as sim:
        watch = DialWatch(sim)
        async with api_serving(sim, [flows], tmp_path / "state") as (daemon, client):
            response = await client.post("/v1/calls", json={
                "flow": "notify", "to": "+15550001111", "from": "+15559990000",
                "vars": {"patient": "Ann"}})
            assert response.status_code == 202, response.text
            body = response.json()
            assert body["state"] == "queued" and body["id"].startswith("call_")
            assert response.headers["location"] == f"/v1/calls/{body['id']}"
            done = await wait_call(client, body["id"])
    assert done["state"] == "completed", done
    assert done["outcome"] == "answered" and done["status"] == "completed"
    assert done["path"] == ["hello", "bye"]
    assert "hello" in done["steps"]
    assert done["to"] == "+15550001111" and done["from"] == "+15559990000"
    assert done["vars"] == {"patient": "Ann"}
    assert done["flow_version"] == daemon.registry.flows["notify"].flow.version
    assert done["created_at"] and done["answered_at"] and done["ended_at"]
    assert done["attempts"] == 1 and done["attempt_log"][0]["outcome"] == "answered"
    assert watch.by_number() == {"+15550001111": 1}


async def test_each_dial_outcome_is_reported(tmp_path: Path) -> None:
    flows = write_flows(tmp_path, NOTIFY)
    async with simulator() as sim:
        sim.set_callee("+15550000001", "busy")
        sim.set_callee("+15550000002", "noanswer")
        sim.set_callee("+15550000003", "fail")
        async with api_serving(sim, [flows], tmp_path / "state") as (_, client):
            ids = {}
            for number in ("+15550000001", "+15550000002", "+15550000003"):
                response = await client.post("/v1/calls", json={"flow": "notify", "to": number})
                ids[number] = response.json()["id"]
            got = {n: await wait_call(client, i) for n, i in ids.items()}
    assert (got["+15550000001"]["state"], got["+15550000001"]["outcome"]) == ("completed", "busy")
    assert got["+15550000002"]["outcome"] == "no_answer"
    assert (got["+15550000003"]["state"], got["+15550000003"]["outcome"]) == ("failed", "failed")
    assert all(g["path"] == [] for g in got.values())


async def test_list_pages_newest_first_and_filters(tmp_path: Path) -> None:
    other = variant(NOTIFY, ("name: notify", "name: other"))
    flows = write_flows(tmp_path, NOTIFY, other)
    async with simulator() as sim:
        sim.set_callee(None, "busy")
        async with api_serving(sim, [flows], tmp_path / "state") as (_, client):
            made = []
            for i in range(5):
                flow = "other" if i == 2 else "notify"
                response = await client.post("/v1/calls", json={"flow": flow,
                                                                 "to": f"+1555000100{i}"})
                made.append(response.json()["id"])
            for call_id in made:
                await wait_call(client, call_id)
            first = (await client.get("/v1/calls", params={"limit": 2})).json()
            assert [c["id"] for c in first["calls"]] == made[::-1][:2]
            second = (await client.get("/v1/calls", params={
                "limit": 2, "cursor": first["next_cursor"]})).json()
            assert [c["id"] for c in second["calls"]] == made[::-1][2:4]
            last = (await client.get("/v1/calls", params={
                "limit": 2, "cursor": second["next_cursor"]})).json()
            assert [c["id"] for c in last["calls"]] == [made[0]]
            assert last["next_cursor"] is None
            only = (await client.get("/v1/calls", params={"flow": "other"})).json()
            assert [c["id"] for c in only["calls"]] == [made[2]]
            completed = (await client.get("/v1/calls", params={"state": "completed"})).json()
            assert len(completed["calls"]) == 5
            assert (await client.get("/v1/calls", params={"state": "queued"})).json() == {
                "calls": [], "next_cursor": None}


async def test_delete_hangs_up_a_live_call_and_cancels_a_queued_one(tmp_path: Path) -> None:
    # A callee that stays on the line: the flow waits in a long play.
    long_flow = variant(NOTIFY, ("  bye:\n", "  wait:\n    sleep: 3000\n  bye:\n"))
    flows = write_flows(tmp_path, long_flow)
    async with simulator() as sim:
        watch = DialWatch(sim)
        async with api_serving(sim, [flows], tmp_path / "state",
                               max_outbound=1) as (_, client):
            live = (await client.post("/v1/calls", json={"flow": "notify",
                                                         "to": "+15550002001"})).json()["id"]
            await wait_call(client, live, ["in_progress"])
            # The daemon-wide cap is 1: the second waits in the queue.
            queued = (await client.post("/v1/calls", json={"flow": "notify",
                                                           "to": "+15550002002"})).json()["id"]
            assert (await client.get(f"/v1/calls/{queued}")).json()["state"] == "queued"
            canceled = await client.delete(f"/v1/calls/{queued}")
            assert canceled.status_code == 200 and canceled.json()["state"] == "canceled"
            hung_up = await client.delete(f"/v1/calls/{live}")
            assert hung_up.status_code == 200, hung_up.text
            assert hung_up.json()["state"] == "canceled"
            assert hung_up.json()["outcome"] == "canceled"
            again = await client.delete(f"/v1/calls/{live}")
            assert again.status_code == 409
            assert again.json()["error"]["code"] == "already_ended"
            await sim.wait_all_ended(timeout=10)
    assert watch.by_number() == {"+15550002001": 1}


async def test_unknown_call_ids_are_404(tmp_path: Path) -> None:
    flows = write_flows(tmp_path, NOTIFY)
    async with simulator() as sim, api_serving(sim, [flows], tmp_path / "state") as (_, client):
        for path in ("/v1/calls/call_999", "/v1/calls/nope", "/v1/campaigns/cmp_x"):
            response = await client.get(path)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"
        assert (await client.delete("/v1/calls/call_999")).status_code == 404
        response = await client.get("/v1/nothing")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        response = await client.put("/v1/calls")
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"


async def test_openapi_describes_every_route(tmp_path: Path) -> None:
    from starlette.routing import Route

    flows = write_flows(tmp_path, NOTIFY)
    async with simulator() as sim, api_serving(sim, [flows], tmp_path / "state",
                                               token="t-123") as (daemon, client):
        # No token needed for the description.
        response = await client.get("/v1/openapi.json", headers={"Authorization": ""})
        assert response.status_code == 200
        doc = response.json()
        assert doc["openapi"].startswith("3.")
        assert daemon.api is not None
        app = daemon.api.server.app.app  # type: ignore[attr-defined]
        served = {(r.path, m.lower()) for r in app.routes if isinstance(r, Route)
                  for m in (r.methods or ()) if m != "HEAD"}
        described = {(p, m) for p, ops in doc["paths"].items() for m in ops
                     if m != "parameters"}
        assert served == described


async def test_a_call_keeps_the_version_it_was_dialled_with(tmp_path: Path) -> None:
    import anyio

    slow = variant(NOTIFY, ("  bye:\n", "  wait:\n    sleep: 20\n  bye:\n"))
    flows = write_flows(tmp_path, slow)
    async with simulator() as sim, api_serving(sim, [flows], tmp_path / "state") as (
            daemon, client):
        old = daemon.registry.flows["notify"].flow.version
        first = (await client.post("/v1/calls", json={"flow": "notify",
                                                      "to": "+15550005001"})).json()["id"]
        await wait_call(client, first, ["in_progress"])
        (flows / "flow0.yaml").write_text(variant(slow, ("sleep: 20", "sleep: 1")))
        daemon.request_reload("test")
        with anyio.fail_after(10):
            while daemon.registry.flows["notify"].flow.version == old:
                await anyio.sleep(0.02)
        new = daemon.registry.flows["notify"].flow.version
        second = (await client.post("/v1/calls", json={"flow": "notify",
                                                       "to": "+15550005002"})).json()["id"]
        done_first, done_second = await wait_call(client, first), await wait_call(client,
                                                                                  second)
    assert done_first["flow_version"] == old and done_first["state"] == "completed"
    assert done_second["flow_version"] == new != old
    assert done_first["path"] == done_second["path"] == ["hello", "wait", "bye"]


async def test_metrics_and_health_show_the_outbound_calls(tmp_path: Path) -> None:
    import anyio
    import httpx

    flows = write_flows(tmp_path, NOTIFY)
    async with simulator() as sim:
        sim.set_callee("+15550006002", "busy")
        async with api_serving(sim, [flows], tmp_path / "state", metrics_port=0) as (
                daemon, client):
            for number in ("+15550006001", "+15550006002"):
                call = (await client.post("/v1/calls", json={"flow": "notify",
                                                             "to": number})).json()
                await wait_call(client, call["id"])
            campaign = (await client.post("/v1/campaigns", json={
                "flow": "notify", "contacts": [{"to": "+15550006003"}, {"to": "+15550006004"}],
                "quiet_hours": {"start": "00:00", "end": "23:59", "timezone": "UTC"}})).json()
            base = f"http://127.0.0.1:{daemon.metrics_port}"
            async with httpx.AsyncClient(base_url=base) as scraper:
                with anyio.fail_after(10):
                    while True:
                        text = (await scraper.get("/metrics")).text
                        if f'campaign="{campaign["id"]}"' in text:
                            break
                        await anyio.sleep(0.05)
                health = (await scraper.get("/healthz")).json()
    assert 'flowengine_outbound_calls_total{flow="notify",outcome="answered"} 1.0' in text
    assert 'flowengine_outbound_calls_total{flow="notify",outcome="busy"} 1.0' in text
    assert 'flowengine_dial_to_answer_seconds_count{flow="notify"} 1.0' in text
    assert (f'flowengine_campaign_contacts{{campaign="{campaign["id"]}",state="queued"}} 2.0'
            in text)
    assert "flowengine_outbound_in_flight 0.0" in text
    assert health["api"]["authenticated"] is False and health["api"]["accepting"] is True
