"""The call API's HTTP side: a Starlette app (docs/api.md).

Every request passes, in order: the bearer token (compared in constant time, before the
body is read), the body limit (``Content-Length`` first, then the bytes as they come, under
a deadline so a slow sender cannot hold a request open), the content type, the JSON, the
fields. Any refusal is an :class:`~flowengine.api.errors.ApiError` turned into
``{"error": {"code", "message", "field"}}``; an unexpected exception is a 500 with the
same shape, logged — never a traceback in a response, never a crash of the daemon.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .dispatch import Dispatcher, call_view, campaign_summary, entry_id_of, public_call_id
from .errors import ApiError
from .openapi import openapi_document
from .requests import VarsCheck, parse_call, parse_campaign, parse_campaign_csv

__all__ = ["MAX_BODY", "build_app"]

logger = logging.getLogger("flowengine.api")

#: The largest request body taken (bytes).
MAX_BODY = 1 << 20
#: Seconds a client gets to send its whole body.
BODY_DEADLINE = 30.0
#: Calls per page at most (``GET /v1/calls?limit=``).
MAX_PAGE = 500


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=dict(headers or {}))


def _error(exc: ApiError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _json(exc.status, exc.body(), headers)


class _Guard:
    """ASGI middleware: the token check, and ApiError / any crash → the JSON error shape."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response: Response | None = None
        if self._token is not None and scope.get("path") != "/v1/openapi.json":
            response = self._check_token(scope)
        if response is not None:
            await response(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ApiError as exc:
            if not started:
                await _error(exc)(scope, receive, send)
        except Exception:
            logger.exception("API: %s %s failed", scope.get("method"), scope.get("path"))
            if not started:
                await _error(ApiError(500, "internal", "internal error (logged)"))(
                    scope, receive, send)

    def _check_token(self, scope: Scope) -> Response | None:
        assert self._token is not None
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                given = value
                break
        scheme, _, credential = given.partition(b" ")
        if not given:
            return _error(ApiError(401, "unauthorized",
                                   "an Authorization: Bearer <token> header is required"))
        if scheme.lower() != b"bearer" or not hmac.compare_digest(credential.strip(),
                                                                   self._token):
            return _error(ApiError(401, "unauthorized", "the bearer token is not valid"))
        return None


async def _body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, "bad_request", "Content-Length is not a number")
        if int(length) > limit:
            raise ApiError(413, "too_large", f"the body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(BODY_DEADLINE):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "too_large",
                                   f"the body is over the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, "timeout", f"the body did not arrive within {BODY_DEADLINE:g} s"
                       ) from None
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _json_body(request: Request, limit: int) -> Any:
    raw = await _body(request, limit)
    kind = _media_type(request)
    if kind not in ("application/json", ""):
        raise ApiError(415, "unsupported_media_type",
                       f"the body must be application/json, not {kind[:60]!r}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from None


def build_app(dispatcher: Dispatcher, *, known_flow: Callable[[str], bool],
              check_vars: VarsCheck, token: str | None, max_body: int = MAX_BODY) -> ASGIApp:
    """The API as an ASGI app: routes over ``dispatcher`` behind the token guard."""
    store = dispatcher.store

    async def create_call(request: Request) -> Response:
        call = parse_call(await _json_body(request, max_body), known_flow, check_vars)
        entry = await dispatcher.submit(call)
        view = call_view(entry)
        return _json(202, {"id": view["id"], "state": view["state"], "call": view},
                     {"Location": f"/v1/calls/{view['id']}"})

    async def get_call(request: Request) -> Response:
        entry = await store.get_entry(_entry_id(request.path_params["call_id"]))
        if entry is None:
            raise _not_found(request.path_params["call_id"])
        return _json(200, call_view(entry))

    async def delete_call(request: Request) -> Response:
        entry_id = _entry_id(request.path_params["call_id"])
        if await store.get_entry(entry_id) is None:
            raise _not_found(request.path_params["call_id"])
        entry = await dispatcher.cancel_call(entry_id)
        return _json(200, call_view(entry))

    async def list_calls(request: Request) -> Response:
        query = request.query_params
        for key in query:
            if key not in ("flow", "state", "campaign", "limit", "cursor"):
                raise ApiError(422, "unknown_field", f"unknown query parameter {key!r}", key)
        limit_text = query.get("limit", "50")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
            raise ApiError.invalid("limit", f"limit must be an integer from 1 to {MAX_PAGE}")
        state = query.get("state")
        if state is not None and state not in ("queued", "dialing", "in_progress", "completed",
                                               "failed", "canceled"):
            raise ApiError.invalid("state", f"unknown state {state[:40]!r}")
        before = None
        if "cursor" in query:
            before = entry_id_of(query["cursor"])
            if before is None:
                raise ApiError.invalid("cursor", "cursor must be a next_cursor this API gave")
        limit = int(limit_text)
        entries = await store.list_entries(flow=query.get("flow"), phase=state,
                                           campaign=query.get("campaign"), before=before,
                                           limit=limit + 1)
        more = len(entries) > limit
        entries = entries[:limit]
        return _json(200, {"calls": [call_view(e) for e in entries],
                           "next_cursor": public_call_id(entries[-1].id) if more else None})

    async def create_campaign(request: Request) -> Response:
        if _media_type(request) == "text/csv":
            raw = await _body(request, max_body)
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise ApiError(400, "bad_csv", "the CSV body is not UTF-8") from None
            # A big campaign's contacts take a while to check: not on the event loop.
            campaign = await anyio.to_thread.run_sync(
                parse_campaign_csv, text, dict(request.query_params), known_flow, check_vars)
        else:
            if request.query_params:
                key = next(iter(request.query_params))
                raise ApiError(422, "unknown_field", f"query parameters are for a text/csv "
                                                     f"body only ({key!r})", key)
            body = await _json_body(request, max_body)
            campaign = await anyio.to_thread.run_sync(parse_campaign, body, known_flow,
                                                      check_vars)
        record = await dispatcher.create_campaign(campaign)
        return _json(202, await _campaign_view(record.id),
                     {"Location": f"/v1/campaigns/{record.id}"})

    async def _campaign_view(campaign_id: str) -> dict[str, Any]:
        record = await store.get_campaign(campaign_id)
        if record is None:
            raise ApiError(404, "not_found", f"no campaign {campaign_id[:80]!r}")
        summary = campaign_summary(await store.entry_counts(campaign_id))
        return {"id": record.id, "flow": record.flow, "state": record.state,
                **{k: v for k, v in record.spec.items()}, **summary,
                "created_at": _iso(record.created_at), "updated_at": _iso(record.updated_at)}

    async def get_campaign(request: Request) -> Response:
        return _json(200, await _campaign_view(request.path_params["campaign_id"]))

    async def list_campaigns(request: Request) -> Response:
        records = await store.list_campaigns()
        return _json(200, {"campaigns": [await _campaign_view(r.id) for r in records[-100:]]})

    def campaign_action(action: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            record = await dispatcher.set_campaign(request.path_params["campaign_id"], action)
            return _json(200, await _campaign_view(record.id))
        return endpoint

    async def openapi(request: Request) -> Response:
        return _json(200, openapi_document(max_body))

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return _error(ApiError(405, "method_not_allowed",
                                   f"{request.method} is not allowed on {request.url.path}"))
        return _error(ApiError(exc.status_code, "not_found",
                               f"no such endpoint: {request.url.path[:100]}"))

    routes = [
        Route("/v1/calls", create_call, methods=["POST"]),
        Route("/v1/calls", list_calls, methods=["GET"]),
        Route("/v1/calls/{call_id}", get_call, methods=["GET"]),
        Route("/v1/calls/{call_id}", delete_call, methods=["DELETE"]),
        Route("/v1/campaigns", create_campaign, methods=["POST"]),
        Route("/v1/campaigns", list_campaigns, methods=["GET"]),
        Route("/v1/campaigns/{campaign_id}", get_campaign, methods=["GET"]),
        Route("/v1/campaigns/{campaign_id}", campaign_action("cancel"), methods=["DELETE"]),
        Route("/v1/campaigns/{campaign_id}/pause", campaign_action("pause"), methods=["POST"]),
        Route("/v1/campaigns/{campaign_id}/resume", campaign_action("resume"),
              methods=["POST"]),
        Route("/v1/openapi.json", openapi, methods=["GET"]),
    ]
    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error(exc)

    async def crashed(request: Request, exc: Exception) -> Response:
        return _error(ApiError(500, "internal", "internal error (logged)"))

    app = Starlette(routes=routes, exception_handlers={
        HTTPException: not_found, ApiError: refused, Exception: crashed})
    return _Guard(app, token)


def _entry_id(text: str) -> int:
    entry_id = entry_id_of(text)
    if entry_id is None:
        raise _not_found(text)
    return entry_id


def _not_found(text: str) -> ApiError:
    return ApiError(404, "not_found", f"no call {text[:80]!r}")


def _iso(epoch: float) -> str | None:
    from .dispatch import _iso as iso
    return iso(epoch)
