"""Status webhooks: signed (the HMAC verified here), retried when the receiver fails, and
never in a call's way when the endpoint is dead."""

from __future__ import annotations

import hashlib
import hmac
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowengine.api.server import ApiServer
from tests.apitools import NOTIFY, api_serving, wait_call, wait_campaign, write_flows
from tests.test_daemon import simulator

pytestmark = pytest.mark.anyio

SECRET = b"webhook-secret-0d9c8b7a"


@dataclass
class Receiver:
    """A local HTTP endpoint that fails its first ``fail`` requests with 500."""

    fail: int = 0
    seen: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    got: anyio.Event = field(default_factory=anyio.Event)

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        status = 500 if len(self.seen) < self.fail else 204
        self.seen.append((status, dict(request.headers), body))
        if status == 204 and orjson.loads(body)["event"] == "completed":
            self.got.set()
        return Response(status_code=status)

    def delivered(self) -> list[dict[str, Any]]:
        return [orjson.loads(body) for status, _, body in self.seen if status == 204]


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    server = ApiServer(Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])]))
    port = server.bind()
    receiver.url = f"http://127.0.0.1:{port}/hook"
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        yield receiver
        tg.cancel_scope.cancel()


async def test_events_are_signed_and_retried_until_delivered(tmp_path: Path) -> None:
    flows = write_flows(tmp_path, NOTIFY)
    async with simulator() as sim, receiving(Receiver(fail=2)) as receiver, api_serving(
            sim, [flows], tmp_path / "state", webhook_secret=SECRET,
            webhook_backoff=0.05) as (_, client):
        call = (await client.post("/v1/calls", json={
            "flow": "notify", "to": "+15550001111", "status_url": receiver.url})).json()
        await wait_call(client, call["id"])
        with anyio.fail_after(10):
            await receiver.got.wait()
    assert sorted(status for status, _, _ in receiver.seen) == [204, 204, 500, 500]
    for _, headers, body in receiver.seen:
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-flowengine-signature"], expected)
        assert headers["content-type"] == "application/json"
    # A failed try is tried again, byte for byte, until delivered; each event once.
    tries: dict[bytes, list[int]] = {}
    for status, _, body in receiver.seen:
        tries.setdefault(body, []).append(status)
    assert len(tries) == 2
    assert all(statuses[-1] == 204 and set(statuses[:-1]) <= {500}
               for statuses in tries.values())
    events = {event["event"]: event for event in receiver.delivered()}
    answered, completed = events["answered"], events["completed"]
    assert answered["event"] == "answered" and answered["id"] == call["id"]
    assert answered["state"] == "in_progress" and answered["call_sid"]
    assert completed["event"] == "completed" and completed["state"] == "completed"
    assert completed["outcome"] == "answered" and completed["path"] == ["hello", "bye"]
    assert "hello" in completed["steps"]


async def test_a_tampered_body_does_not_verify(tmp_path: Path) -> None:
    # The check a receiver makes is meaningful: another body or key gives another signature.
    from flowengine.api.webhooks import sign

    body = orjson.dumps({"event": "completed", "id": "call_1"})
    assert sign(SECRET, body) != sign(SECRET, body + b" ")
    assert sign(SECRET, body) != sign(b"other", body)


def _refusing_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connections are refused
    return f"http://127.0.0.1:{port}/hook"


async def test_a_dead_endpoint_does_not_hold_up_the_calls(tmp_path: Path) -> None:
    flows = write_flows(tmp_path, NOTIFY)
    # An endpoint that accepts the connection and never answers.
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    silent_port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def hold(stream: anyio.abc.SocketStream) -> None:
        await anyio.sleep_forever()

    async with simulator() as sim, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, hold)
        async with api_serving(sim, [flows], tmp_path / "state", webhook_secret=SECRET,
                               webhook_timeout=30.0, webhook_flush=0.2) as (daemon, client):
            silent = f"http://127.0.0.1:{silent_port}/hook"
            campaign = (await client.post("/v1/campaigns", json={
                "flow": "notify", "contacts": [{"to": f"+155500020{i:02}"} for i in range(8)],
                "max_concurrent": 8, "calls_per_second": 100, "status_url": silent})).json()
            single = (await client.post("/v1/calls", json={
                "flow": "notify", "to": "+15550003000", "status_url": _refusing_url()})
                      ).json()
            done = await wait_campaign(client, campaign["id"])
            assert (await wait_call(client, single["id"]))["state"] == "completed"
            assert daemon.api is not None
            counts = daemon.api.webhooks.counts
            # Every call ended while the silent endpoint still holds all of its events.
            assert done["counts"]["done"] == 8
            assert counts["delivered"] == 0 and counts["dropped"] == 0
        tg.cancel_scope.cancel()
