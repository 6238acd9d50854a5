"""Every bad request gets a 4xx JSON error naming the field, and nothing is dialled; the
token is required, compared, never echoed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.apitools import NOTIFY, DialWatch, api_serving, wait_call, write_flows
from tests.test_daemon import simulator

pytestmark = pytest.mark.anyio

TOKEN = "api-test-token-5c1f0b2e"

#: A flow with a required, typed input and no caller id of its own.
COUNTED = """\
name: counted
context: outbound
inputs:
  count: {type: integer, required: true}
steps:
  bye:
    hangup: {}
"""

GOOD_CALL = {"flow": "notify", "to": "+15550001111"}
GOOD_CAMPAIGN = {"flow": "notify", "contacts": [{"to": "+15550001111"}]}

#: (path, body, status, code, field)
BAD_JSON_BODIES: list[tuple[str, Any, int, str, str | None]] = [
    ("/v1/calls", {"to": "+15550001111"}, 422, "invalid", "flow"),
    ("/v1/calls", {"flow": "nope", "to": "+15550001111"}, 422, "unknown_flow", "flow"),
    ("/v1/calls", {"flow": 3, "to": "+15550001111"}, 422, "invalid", "flow"),
    ("/v1/calls", {"flow": "notify"}, 422, "invalid", "to"),
    ("/v1/calls", {"flow": "notify", "to": "5550001111"}, 422, "invalid", "to"),
    ("/v1/calls", {"flow": "notify", "to": "+1555abc1111"}, 422, "invalid", "to"),
    ("/v1/calls", {"flow": "notify", "to": 15550001111}, 422, "invalid", "to"),
    ("/v1/calls", {**GOOD_CALL, "from": "nobody"}, 422, "invalid", "from"),
    ("/v1/calls", {**GOOD_CALL, "vars": [1, 2]}, 422, "invalid", "vars"),
    ("/v1/calls", {**GOOD_CALL, "status_url": "ftp://x"}, 422, "invalid", "status_url"),
    ("/v1/calls", {**GOOD_CALL, "colour": "red"}, 422, "unknown_field", "colour"),
    ("/v1/calls", [GOOD_CALL], 422, "invalid", None),
    # The flow's inputs: unknown, missing, ill-typed; a flow with no caller id needs one.
    ("/v1/calls", {**GOOD_CALL, "vars": {"patent": "Ann"}}, 422, "invalid", "vars.patent"),
    ("/v1/calls", {"flow": "counted", "to": "+15550001111", "from": "+15559990000"}, 422,
     "invalid", "vars.count"),
    ("/v1/calls", {"flow": "counted", "to": "+15550001111", "from": "+15559990000",
                   "vars": {"count": "many"}}, 422, "invalid", "vars.count"),
    ("/v1/calls", {"flow": "counted", "to": "+15550001111", "vars": {"count": 2}}, 422,
     "invalid", "from"),
    ("/v1/campaigns", {"flow": "counted", "from": "+15559990000", "contacts": [
        {"to": "+15550001111", "vars": {"count": 1}}, {"to": "+15550001112"}]}, 422,
     "invalid", "contacts[1].vars.count"),
    ("/v1/campaigns", {"flow": "notify", "contacts": []}, 422, "invalid", "contacts"),
    ("/v1/campaigns", {"flow": "notify", "contacts": [{"to": "+15550001111"}, {"to": "x"}]},
     422, "invalid", "contacts[1].to"),
    ("/v1/campaigns", {"flow": "notify", "contacts": [{"to": "+15550001111", "x": 1}]},
     422, "unknown_field", "contacts[0].x"),
    ("/v1/campaigns", {**GOOD_CAMPAIGN, "max_concurrent": 0}, 422, "invalid", "max_concurrent"),
    ("/v1/campaigns", {**GOOD_CAMPAIGN, "max_concurrent": "ten"}, 422, "invalid",
     "max_concurrent"),
    ("/v1/campaigns", {**GOOD_CAMPAIGN, "calls_per_second": -1}, 422, "invalid",
     "calls_per_second"),
    ("/v1/campaigns", {**GOOD_CAMPAIGN, "retry": {"busy": {"count": -1}}}, 422, "invalid",
     "retry.busy.count"),
    ("/v1/campaigns", {**GOOD_CAMPAIGN, "retry": {"angry": {"count": 1}}}, 422,
     "unknown_field", "retry.angry"),
    ("/v1/campaigns", {**GOOD_CAMPAIGN, "quiet_hours": {"start": "21:00", "end": "08:00",
                                                          "timezone": "Mars/Olympus"}},
     422, "invalid", "quiet_hours.timezone"),
    ("/v1/campaigns", {**GOOD_CAMPAIGN, "quiet_hours": {"start": "25:00", "end": "08:00",
                                                          "timezone": "UTC"}},
     422, "invalid", "quiet_hours.start"),
]


async def test_every_bad_body_is_refused_naming_the_field_and_nothing_is_dialled(
        tmp_path: Path) -> None:
    flows = write_flows(tmp_path, NOTIFY, COUNTED)
    async with simulator() as sim:
        watch = DialWatch(sim)
        async with api_serving(sim, [flows], tmp_path / "state") as (daemon, client):
            for path, body, status, code, field in BAD_JSON_BODIES:
                response = await client.post(path, json=body)
                assert response.status_code == status, (body, response.text)
                error = response.json()["error"]
                assert (error["code"], error["field"]) == (code, field), (body, error)
                assert error["message"]
            raw_cases: list[tuple[bytes, dict[str, str], int, str]] = [
                (b'{"flow": "notify", "to": ', {"Content-Type": "application/json"}, 400,
                 "bad_json"),
                (b"\xff\xfe", {"Content-Type": "application/json"}, 400, "bad_json"),
                (b"flow=notify", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
                 "unsupported_media_type"),
                (b"x" * (1 << 20 + 1), {"Content-Type": "application/json"}, 413, "too_large"),
            ]
            for content, headers, status, code in raw_cases:
                response = await client.post("/v1/calls", content=content, headers=headers)
                assert response.status_code == status, (content[:40], response.text)
                assert response.json()["error"]["code"] == code
            # A body over the limit sent without Content-Length (chunked) is cut off too.

            async def chunks() -> Any:
                for _ in range(40):
                    yield b" " * 65536

            response = await client.post("/v1/calls", content=chunks(),
                                         headers={"Content-Type": "application/json"})
            assert response.status_code == 413
            csv_cases = [
                ("to,name\n+15550001111,Ann\n", {}, "flow"),
                ("number,name\n+15550001111,Ann\n", {"flow": "notify"}, "contacts"),
                ("to,name\n+15550001111\n", {"flow": "notify"}, "contacts[0]"),
                ("to,name\nnot-a-number,Ann\n", {"flow": "notify"}, "contacts[0].to"),
                ("to\n+15550001111\n", {"flow": "notify", "speed": "3"}, "speed"),
                ("to,count\n+15550001111,3\n+15550001112,x\n",
                 {"flow": "counted", "from": "+15559990000"}, "contacts[1].vars.count"),
            ]
            for text, query, field in csv_cases:
                response = await client.post("/v1/campaigns", content=text, params=query,
                                             headers={"Content-Type": "text/csv"})
                assert response.status_code == 422, (text, response.text)
                assert response.json()["error"]["field"] == field
            # The daemon is fine: a good call still goes through.
            good = (await client.post("/v1/calls", json=GOOD_CALL)).json()
            done = await wait_call(client, good["id"])
            assert done["state"] == "completed"
            assert (await client.get("/v1/campaigns")).json() == {"campaigns": []}
            assert daemon.state == "serving"
    assert watch.count == 1


async def test_the_token_is_required_compared_and_never_shown(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    flows = write_flows(tmp_path, NOTIFY)
    caplog.set_level(logging.DEBUG)
    async with simulator() as sim:
        watch = DialWatch(sim)
        async with api_serving(sim, [flows], tmp_path / "state", token=TOKEN) as (_, client):
            base = str(client.base_url)
            async with httpx.AsyncClient(base_url=base) as anonymous:
                for headers in ({}, {"Authorization": "Bearer wrong"},
                                {"Authorization": f"Basic {TOKEN}"},
                                {"Authorization": f"Bearer {TOKEN}x"},
                                {"Authorization": "Bearer"}):
                    for method, path in (("POST", "/v1/calls"), ("GET", "/v1/calls"),
                                         ("GET", "/v1/calls/call_1"),
                                         ("DELETE", "/v1/calls/call_1"),
                                         ("POST", "/v1/campaigns")):
                        response = await anonymous.request(method, path, json=GOOD_CALL,
                                                           headers=headers)
                        assert response.status_code == 401, (headers, path)
                        assert response.json()["error"]["code"] == "unauthorized"
                        assert response.headers["www-authenticate"] == "Bearer"
                        assert TOKEN not in response.text
            ok = await client.post("/v1/calls", json=GOOD_CALL)
            assert ok.status_code == 202
            await wait_call(client, ok.json()["id"])
    assert watch.count == 1
    assert TOKEN not in caplog.text


async def test_without_a_token_only_loopback_is_served() -> None:
    # The command refuses another address; the process never starts serving.
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if k != "FLOWENGINE_API_TOKEN"}
    process = await anyio.run_process(
        [sys.executable, "-m", "flowengine.cli", "serve", "flows", "--simulate", "--api-port", "0",
         "--api-host", "0.0.0.0"], env=env, check=False)
    assert process.returncode == 2
    assert b"not a loopback address: set FLOWENGINE_API_TOKEN" in process.stderr


async def test_a_slow_or_stuck_client_does_not_hold_up_the_others(tmp_path: Path) -> None:
    flows = write_flows(tmp_path, NOTIFY)
    async with simulator() as sim, api_serving(sim, [flows], tmp_path / "state") as (
            daemon, client):
        assert daemon.api is not None
        port = daemon.api.port
        stuck = []
        for partial in (b"POST /v1/calls HTTP/1.1\r\nHost: x\r\n",  # headers never end
                        b"POST /v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                        b"\r\nContent-Length: 1000\r\n\r\n{\"flow\": "):  # the body never ends
            stream = await anyio.connect_tcp("127.0.0.1", port)
            await stream.send(partial)
            stuck.append(stream)
        # A huge campaign is checked off the event loop: calls keep being served meanwhile.
        big = {"flow": "notify", "contacts": [{"to": f"+1555{i:07}"} for i in range(20_000)],
               "max_concurrent": 1}
        created: list[int] = []

        async def create() -> None:
            created.append((await client.post("/v1/campaigns", json=big)).status_code)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(create)
                response = await client.post("/v1/calls", json=GOOD_CALL)
                assert response.status_code == 202
                done = await wait_call(client, response.json()["id"])
        assert done["state"] == "completed" and created == [202]
        for stream in stuck:
            await stream.aclose()


@pytest.mark.parametrize("problem", ["state dir is a file", "port taken"])
async def test_a_bad_state_dir_or_a_taken_port_is_a_clear_error(tmp_path: Path,
                                                                 problem: str) -> None:
    import os
    import socket
    import sys

    flows = write_flows(tmp_path, NOTIFY)
    state = tmp_path / "state"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1] if problem == "port taken" else 0
    if problem == "state dir is a file":
        state.write_text("not a directory")
    try:
        process = await anyio.run_process(
            [sys.executable, "-m", "flowengine.cli", "serve", str(flows), "--simulate",
             "--sim-rate", "0.1", "--api-port", str(port), "--state-dir", str(state),
             "--no-watch"], check=False,
            env={k: v for k, v in os.environ.items() if k != "FLOWENGINE_API_TOKEN"})
    finally:
        taken.close()
    assert process.returncode == 1, process.stderr.decode()
    if problem == "port taken":
        assert b"cannot serve the call API on 127.0.0.1:" in process.stderr
    else:  # --state-dir keeps both the ledger and the calls' checkpoints there
        assert b"cannot keep the state in " + str(state).encode() + b": File exists" in (
            process.stderr)
    assert b"Traceback" not in process.stderr
