"""``GET /v1/openapi.json``: the API described by hand (OpenAPI 3.1), kept next to the code
that it describes; tests/test_api_calls.py checks that every route is in it and nothing else."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def _responses(ok: int, schema: dict[str, Any], *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {str(ok): {"description": "OK" if ok == 200 else "Accepted",
                                     "content": {"application/json": {"schema": schema}}}}
    reasons = {400: "Bad JSON or CSV", 401: "No or a wrong bearer token", 404: "Not found",
               408: "The body came too slowly", 409: "Not possible in the current state",
               413: "The body is over the limit", 415: "Not JSON (or CSV)",
               422: "A field is missing, unknown or wrong (the error names it)",
               503: "The daemon is stopping"}
    for code in (401, *errors):
        out[str(code)] = {"description": reasons[code],
                          "content": {"application/json": {"schema": _ERROR}}}
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _path_id(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"},
            "description": what}


def openapi_document(max_body: int) -> dict[str, Any]:
    """The OpenAPI document (``max_body``: the body limit in force)."""
    e164 = {"type": "string", "pattern": r"^\+[1-9][0-9]{6,14}$", "example": "+15551230000"}
    retry_rule = {"type": "object", "additionalProperties": False, "properties": {
        "count": {"type": "integer", "minimum": 0, "maximum": 20, "default": 1},
        "delay": {"type": "number", "minimum": 0, "default": 0,
                  "description": "seconds after the attempt before the next one"}}}
    campaign_settings = {
        "from": {**e164, "description": "caller id"},
        "max_concurrent": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1},
        "calls_per_second": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000,
                             "default": 1},
        "retry": {"type": "object", "additionalProperties": False,
                  "description": "per outcome, how often and when to dial again; "
                                 "`interrupted` is a dial that was in flight when the daemon "
                                 "stopped (default: once more, at once)",
                  "properties": {k: retry_rule for k in ("busy", "no_answer", "failed",
                                                         "interrupted")}},
        "quiet_hours": {"type": "object", "additionalProperties": False,
                        "required": ["start", "end", "timezone"],
                        "description": "no dialling from start to end, local time",
                        "properties": {"start": {"type": "string", "example": "21:00"},
                                       "end": {"type": "string", "example": "08:00"},
                                       "timezone": {"type": "string",
                                                    "example": "America/New_York"}}},
        "status_url": {"type": "string", "format": "uri"},
        "name": {"type": "string"},
    }
    auth: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "flowengine call API", "version": "1",
                 "description": "Place outbound calls that run a flow, and campaigns of "
                                "them, on `flowengine serve --api-port`. Bodies up to "
                                f"{max_body} bytes. Errors are "
                                '`{"error": {"code", "message", "field"}}`.'},
        "security": auth,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "FLOWENGINE_API_TOKEN"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "object", "required": ["code", "message", "field"],
                              "properties": {"code": {"type": "string"},
                                             "message": {"type": "string"},
                                             "field": {"type": ["string", "null"]}}}}},
                "CallRequest": {"type": "object", "additionalProperties": False,
                                "required": ["flow", "to"], "properties": {
                                    "flow": {"type": "string", "description": "a served flow"},
                                    "to": e164, "from": e164,
                                    "vars": {"type": "object",
                                             "description": "the flow's inputs"},
                                    "status_url": {"type": "string", "format": "uri"}}},
                "Call": {"type": "object", "properties": {
                    "id": {"type": "string"}, "campaign": {"type": ["string", "null"]},
                    "flow": {"type": "string"}, "flow_version": {"type": ["string", "null"]},
                    "to": {"type": "string"}, "from": {"type": ["string", "null"]},
                    "vars": {"type": "object"},
                    "state": {"enum": ["queued", "dialing", "in_progress", "completed",
                                       "failed", "canceled"]},
                    "outcome": {"type": ["string", "null"],
                                "description": "answered, machine, busy, no_answer, failed, "
                                               "canceled, interrupted"},
                    "status": {"type": ["string", "null"],
                               "description": "the flow's: completed or failed"},
                    "path": {"type": "array", "items": {"type": "string"}},
                    "steps": {"type": "object", "description": "each step's results"},
                    "error": {"type": ["string", "null"]},
                    "call_sid": {"type": ["string", "null"],
                                 "description": "RELAY's call id of the answered leg"},
                    "attempts": {"type": "integer"},
                    "attempt_log": {"type": "array", "items": {"type": "object"}},
                    "created_at": {"type": ["string", "null"], "format": "date-time"},
                    "answered_at": {"type": ["string", "null"], "format": "date-time"},
                    "ended_at": {"type": ["string", "null"], "format": "date-time"},
                    "updated_at": {"type": ["string", "null"], "format": "date-time"},
                    "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                    "status_url": {"type": ["string", "null"]}}},
                "CampaignRequest": {
                    "type": "object", "additionalProperties": False,
                    "required": ["flow", "contacts"], "properties": {
                        "flow": {"type": "string"},
                        "contacts": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "additionalProperties": False,
                            "required": ["to"],
                            "properties": {"to": e164, "vars": {"type": "object"}}}},
                        **campaign_settings}},
                "Campaign": {"type": "object", "properties": {
                    "id": {"type": "string"}, "flow": {"type": "string"},
                    "state": {"enum": ["running", "paused", "canceled", "completed"]},
                    **campaign_settings,
                    "total": {"type": "integer"},
                    "counts": {"type": "object", "properties": {
                        k: {"type": "integer"} for k in ("queued", "dialing", "in_progress",
                                                         "done")}},
                    "done_by_outcome": {"type": "object",
                                        "additionalProperties": {"type": "integer"}},
                    "by_state": {"type": "object",
                                 "additionalProperties": {"type": "integer"}}}},
            },
        },
        "paths": {
            "/v1/calls": {
                "post": {"summary": "Place a call: it is queued, dialled, and runs the flow",
                         "requestBody": {"required": True, "content": {
                             "application/json": {"schema": _ref("CallRequest")}}},
                         "responses": _responses(202, {"type": "object", "properties": {
                             "id": {"type": "string"}, "state": {"const": "queued"},
                             "call": _ref("Call")}}, 400, 408, 413, 415, 422, 503)},
                "get": {"summary": "List calls, newest first (keyset pages)",
                        "parameters": [
                            {"name": "flow", "in": "query", "schema": {"type": "string"}},
                            {"name": "state", "in": "query", "schema": {"type": "string"}},
                            {"name": "campaign", "in": "query", "schema": {"type": "string"}},
                            {"name": "limit", "in": "query",
                             "schema": {"type": "integer", "minimum": 1, "maximum": 500,
                                        "default": 50}},
                            {"name": "cursor", "in": "query", "schema": {"type": "string"},
                             "description": "next_cursor of the previous page"}],
                        "responses": _responses(200, {"type": "object", "properties": {
                            "calls": {"type": "array", "items": _ref("Call")},
                            "next_cursor": {"type": ["string", "null"]}}}, 422)},
            },
            "/v1/calls/{call_id}": {
                "parameters": [_path_id("call_id", "a call's id")],
                "get": {"summary": "A call: state, outcome, path, steps, timestamps",
                        "responses": _responses(200, _ref("Call"), 404)},
                "delete": {"summary": "Cancel a queued call, or hang up a live one",
                           "responses": _responses(200, _ref("Call"), 404, 409)},
            },
            "/v1/campaigns": {
                "post": {"summary": "Start a campaign (JSON, or text/csv with the settings "
                                    "in the query string)",
                         "requestBody": {"required": True, "content": {
                             "application/json": {"schema": _ref("CampaignRequest")},
                             "text/csv": {"schema": {"type": "string"},
                                          "description": "a header row with `to`; the other "
                                                         "columns are vars"}}},
                         "responses": _responses(202, _ref("Campaign"), 400, 408, 413, 415,
                                                 422, 503)},
                "get": {"summary": "The latest 100 campaigns",
                        "responses": _responses(200, {"type": "object", "properties": {
                            "campaigns": {"type": "array", "items": _ref("Campaign")}}})},
            },
            "/v1/campaigns/{campaign_id}": {
                "parameters": [_path_id("campaign_id", "a campaign's id")],
                "get": {"summary": "A campaign and its progress",
                        "responses": _responses(200, _ref("Campaign"), 404)},
                "delete": {"summary": "Cancel: no more dialling (calls up finish)",
                           "responses": _responses(200, _ref("Campaign"), 404, 409)},
            },
            "/v1/campaigns/{campaign_id}/pause": {
                "parameters": [_path_id("campaign_id", "a campaign's id")],
                "post": {"summary": "Pause dialling (calls up finish)",
                         "responses": _responses(200, _ref("Campaign"), 404, 409)},
            },
            "/v1/campaigns/{campaign_id}/resume": {
                "parameters": [_path_id("campaign_id", "a campaign's id")],
                "post": {"summary": "Resume a paused campaign",
                         "responses": _responses(200, _ref("Campaign"), 404, 409)},
            },
            "/v1/openapi.json": {
                "get": {"summary": "This document (no token needed)", "security": [],
                        "responses": {"200": {"description": "OK"}}},
            },
        },
    }
