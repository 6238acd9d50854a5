"""Status webhooks: JSON POSTs to a call's ``status_url``, signed, retried, never in a call's way.

:meth:`WebhookSender.send` only puts the event on a bounded queue (it never awaits), so a
slow or dead endpoint cannot delay a call; the sender's task takes events off the queue
and delivers each in a task of its own (at most ``concurrency`` at once), retrying with
exponential backoff up to ``attempts`` times. A full queue drops the event and says so.

The signature: ``X-Flowengine-Signature: sha256=HEX``, the HMAC-SHA256 of the exact body
bytes under ``FLOWENGINE_WEBHOOK_SECRET``. Verify it with::

    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    hmac.compare_digest(expected, request.headers["X-Flowengine-Signature"])
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import httpx
import orjson
from anyio.abc import TaskStatus

from flowengine.redact import redact_url

__all__ = ["SIGNATURE_HEADER", "WebhookSender", "sign"]

logger = logging.getLogger("flowengine.api.webhooks")

SIGNATURE_HEADER = "X-Flowengine-Signature"


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookSender:
    """Delivers status events in the background.

    Args:
        secret: the HMAC key (``FLOWENGINE_WEBHOOK_SECRET``); without one the events go
            unsigned (logged once at start by the daemon).
        attempts: deliveries tried per event (a 2xx ends them; 4xx other than 408/429 too).
        backoff: seconds before the second try, doubled for each one after (capped at 60).
        timeout: seconds one try may take, connecting included.
        concurrency: deliveries in flight at once.
        queue_size: events waiting; beyond it an event is dropped (logged, counted).
        on_result: called with ``delivered``, ``failed`` or ``dropped`` per event (metrics).
    """

    def __init__(self, secret: bytes | None = None, *, attempts: int = 5, backoff: float = 1.0,
                 timeout: float = 5.0, concurrency: int = 32, queue_size: int = 10_000,
                 on_result: Callable[[str], None] | None = None) -> None:
        self._secret = secret
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self._limiter = anyio.Semaphore(concurrency)
        self._send, self._receive = anyio.create_memory_object_stream[
            tuple[str, bytes]](queue_size)
        self._on_result = on_result or (lambda result: None)
        #: Events delivered, failed for good, dropped (for tests and /healthz).
        self.counts = {"delivered": 0, "failed": 0, "dropped": 0}

    def send(self, url: str, event: Mapping[str, Any]) -> None:
        """Queue ``event`` for ``url``; never waits."""
        body = orjson.dumps(dict(event))
        try:
            self._send.send_nowait((url, body))
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._count("dropped")
            logger.warning("webhook queue full: %s event for %s dropped",
                           event.get("event"), redact_url(url))

    def close(self) -> None:
        """Take no more events; :meth:`run` returns once the queued ones are delivered."""
        self._send.close()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver until cancelled."""
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client, \
                anyio.create_task_group() as tg:
            task_status.started()
            async for url, body in self._receive:
                await self._limiter.acquire()
                tg.start_soon(self._deliver, client, url, body)

    async def _deliver(self, client: httpx.AsyncClient, url: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "flowengine-webhooks"}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        shown = redact_url(url)
        try:
            for attempt in range(1, self.attempts + 1):
                why = ""
                try:
                    with anyio.fail_after(self.timeout):
                        response = await client.post(url, content=body, headers=headers)
                    if response.is_success:
                        self._count("delivered")
                        return
                    why = f"HTTP {response.status_code}"
                    if 400 <= response.status_code < 500 and response.status_code not in (408,
                                                                                         429):
                        break  # the receiver refuses it: trying again would not change that
                except (httpx.HTTPError, TimeoutError, OSError) as exc:
                    why = type(exc).__name__
                if attempt < self.attempts:
                    delay = min(60.0, self.backoff * 2 ** (attempt - 1))
                    logger.info("webhook to %s: %s (try %d of %d); again in %g s", shown, why,
                                attempt, self.attempts, delay)
                    # The slot is given back while waiting: a dead endpoint's retries do not
                    # hold up the other events.
                    self._limiter.release()
                    try:
                        await anyio.sleep(delay)
                    finally:
                        await self._limiter.acquire()
            self._count("failed")
            logger.warning("webhook to %s failed after %d tries (%s): event dropped", shown,
                           attempt, why)
        finally:
            self._limiter.release()

    def _count(self, result: str) -> None:
        self.counts[result] += 1
        self._on_result(result)
