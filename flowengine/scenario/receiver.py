"""A local HTTP receiver for testing flows that call webhooks (the ``request`` action).

It listens on 127.0.0.1 only, records every request it gets and answers each as scripted:
a status, a JSON body, after a delay — or, ``down``, nothing listens at all and
connections are refused. Scenario files use it through ``receiver:`` (see
docs/testing.md); tests use it directly::

    async with Receiver([Reply(500), Reply(200, json={"ok": True})]) as hook:
        hook.url                         # "http://127.0.0.1:PORT"
        ...                              # a flow posts to hook.url + "/voicemail"
    hook.received[0].json                # what the flow sent
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import anyio
import anyio.abc
import h11

__all__ = ["Received", "Receiver", "Reply"]

#: The largest request body read (bytes); a bigger one closes the connection.
MAX_BODY = 1 << 20


@dataclass(frozen=True, slots=True)
class Reply:
    """How the receiver answers one request."""

    status: int = 200
    #: Sent as an ``application/json`` body (``{}`` when neither this nor ``body`` is set).
    json: Any = None
    #: Sent as a ``text/plain`` body when ``json`` is None.
    body: str | None = None
    #: Real seconds to wait before answering (the client may give up first).
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the receiver got it."""

    method: str
    #: The path with the query, e.g. ``/voicemail?x=1``.
    path: str
    #: Header names in lower case.
    headers: dict[str, str]
    body: bytes
    #: The body parsed as JSON, or None when it is not JSON.
    json: Any = field(default=None)


class Receiver:
    """An HTTP server on 127.0.0.1 for the length of an ``async with`` block.

    Args:
        replies: answers in order; the last one repeats (default: 200 with ``{}``).
        down: nothing listens: ``url`` names a port whose connections are refused.
    """

    def __init__(self, replies: Sequence[Reply] = (), *, down: bool = False) -> None:
        self.replies = list(replies) or [Reply()]
        self.down = down
        self.received: list[Received] = []
        self.url = ""
        self._task_group: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Self:
        if self.down:
            # A port that was free a moment ago: connecting to it is refused.
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            return self
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self.url = f"http://127.0.0.1:{port}"
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(listener.serve, self._serve)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
            await self._task_group.__aexit__(None, None, None)
            self._task_group = None

    def _reply_for(self, index: int) -> Reply:
        return self.replies[min(index, len(self.replies) - 1)]

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while True:
                    request = await self._read_request(conn, stream)
                    if request is None:
                        return
                    reply = self._reply_for(len(self.received))
                    self.received.append(request)
                    if reply.delay:
                        await anyio.sleep(reply.delay)
                    await self._answer(conn, stream, reply)
                    if conn.our_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    h11.ProtocolError, ConnectionError):
                return  # the client went away (a timeout on its side): nothing to answer

    async def _read_request(self, conn: h11.Connection,
                            stream: anyio.abc.SocketStream) -> Received | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    conn.receive_data(await stream.receive(65536))
                except anyio.EndOfStream:
                    conn.receive_data(b"")
                continue
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise h11.RemoteProtocolError("request body too large")
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                           for k, v in head.headers}
                data = bytes(body)
                try:
                    parsed = json.loads(data) if data else None
                except ValueError:
                    parsed = None
                return Received(head.method.decode(), head.target.decode("latin-1"), headers,
                                data, parsed)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    @staticmethod
    async def _answer(conn: h11.Connection, stream: anyio.abc.SocketStream, reply: Reply) -> None:
        if reply.status < 200 or reply.status in (204, 304):
            # These statuses carry no body (RFC 9110).
            await stream.send(conn.send(h11.Response(status_code=reply.status, headers=[]))
                              + conn.send(h11.EndOfMessage()))
            return
        if reply.json is not None or reply.body is None:
            data = json.dumps({} if reply.json is None else reply.json).encode()
            content_type = "application/json"
        else:
            data = reply.body.encode()
            content_type = "text/plain; charset=utf-8"
        response = h11.Response(status_code=reply.status, headers=[
            ("Content-Type", content_type), ("Content-Length", str(len(data)))])
        await stream.send(conn.send(response) + conn.send(h11.Data(data=data))
                          + conn.send(h11.EndOfMessage()))
