"""request: an HTTP call to the user's own system (a webhook, a CRM lookup), with httpx.

It needs no live call, so it also runs after the caller hung up — that is how a voicemail
reaches its owner. Connection errors, timeouts, 5xx and 429 answers are retried
(``retries`` times, waiting ``backoff`` seconds and twice as long each time after); any
other answer is final. The call itself is never touched: a slow or failing server delays
the flow, it never ends the call.
"""

from __future__ import annotations

import functools
import json
import ssl
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from flowengine.actions.base import StepResult
from flowengine.redact import redact_url

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import Step

#: Defaults of the parameters (seconds).
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
BACKOFF = 1.0
#: At most this much of a response body is read; the rest is dropped (``text`` is cut,
#: ``json`` is null).
MAX_RESPONSE_BYTES = 1 << 20
#: On the simulator (time_scale < 1) a timeout is never shorter than this many real
#: seconds, or than itself: a local server's answer takes real time, however fast the
#: simulated clock runs.
MIN_SCALED_TIMEOUT = 0.25
#: Statuses worth another try besides 5xx.
_RETRY_STATUSES = frozenset({429})
USER_AGENT = "flowengine (+https://flowengine.dev)"


@functools.cache
def _tls() -> ssl.SSLContext:
    # Built once per process: loading the trust store costs milliseconds per client.
    return ssl.create_default_context()


def _scaled(seconds: float, scale: float) -> float:
    if scale >= 1.0:
        return seconds * scale
    return max(seconds * scale, min(seconds, MIN_SCALED_TIMEOUT))


def _body_json(response: httpx.Response, data: bytes, truncated: bool) -> Any:
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if truncated or not (content_type == "application/json" or content_type.endswith("+json")):
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


async def _read(response: httpx.Response) -> tuple[bytes, bool]:
    """The body, at most MAX_RESPONSE_BYTES of it, and whether it was cut."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return b"".join(chunks)[:MAX_RESPONSE_BYTES], True
    return b"".join(chunks), False


async def run_request(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``request: {url, method, headers, json, …}`` → one HTTP request, retried as configured.

    Outcomes: ``ok`` (a 2xx answer), ``http_error`` (another status; 5xx and 429 only after
    the retries), ``timeout`` (no connection or no answer in time, after the retries),
    ``error`` (the server cannot be reached, or the url is not http(s), after the retries).
    """
    url = str(params["url"])
    shown = redact_url(url)
    fields: dict[str, Any] = {"status": None, "json": None, "text": None, "attempts": 0}
    if not url.lower().startswith(("http://", "https://")):
        return StepResult("error", fields, method="HTTP",
                          error=f"url must start with http:// or https://, not {shown!r}")
    method = str(params.get("method") or ("POST" if "json" in params else "GET"))
    headers = {"User-Agent": USER_AGENT}
    headers.update({str(k): str(v) for k, v in (params.get("headers") or {}).items()})
    scale = session.time_scale
    connect = _scaled(float(params.get("connect_timeout", CONNECT_TIMEOUT)), scale)
    read = _scaled(float(params.get("read_timeout", READ_TIMEOUT)), scale)
    retries = int(params.get("retries", 0))
    backoff = float(params.get("backoff", BACKOFF)) * scale
    extra: dict[str, Any] = {"json": params["json"]} if "json" in params else {}
    outcome, error = "error", None
    async with httpx.AsyncClient(timeout=httpx.Timeout(read, connect=connect), verify=_tls(),
                                 follow_redirects=False) as client:
        for attempt in range(retries + 1):
            fields.update(status=None, json=None, text=None, attempts=attempt + 1)
            retry = True
            try:
                async with client.stream(method, url, headers=headers, **extra) as response:
                    data, truncated = await _read(response)
            except httpx.TimeoutException as exc:
                outcome, error = "timeout", f"{method} {shown}: {_timeout_kind(exc)}"
            except httpx.TransportError as exc:
                outcome, error = "error", f"{method} {shown}: {exc.__class__.__name__}: {exc}"
            except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
                # An invalid url or header: no other try can succeed.
                outcome, error, retry = "error", f"{method} {shown}: {exc}", False
            else:
                status = response.status_code
                fields.update(status=status, json=_body_json(response, data, truncated),
                              text=data.decode(response.encoding or "utf-8", "replace"))
                if 200 <= status < 300:
                    return StepResult("ok", fields, method="HTTP")
                outcome, error = "http_error", f"{method} {shown}: HTTP {status}"
                retry = status >= 500 or status in _RETRY_STATUSES
            if not retry:
                break
            if attempt < retries:
                await anyio.sleep(backoff * 2 ** attempt)
    return StepResult(outcome, fields, method="HTTP", error=error)


def _timeout_kind(exc: httpx.TimeoutException) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "no connection within connect_timeout"
    if isinstance(exc, httpx.ReadTimeout):
        return "no answer within read_timeout"
    return f"timed out ({exc.__class__.__name__})"
