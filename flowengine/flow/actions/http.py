"""HTTP — the specs of request.

Their runners are in ``flowengine.actions.http``.
"""

from __future__ import annotations

from .spec import ActionSpec, fields, frozen

RUNNERS = "flowengine.actions.http"

REQUEST = ActionSpec(
    name="request",
    outcomes=("ok", "http_error", "timeout", "error"),
    result_fields=("status", "json", "text", "attempts"),
    runner=f"{RUNNERS}:run_request",
    summary="Call your own system over HTTP (a webhook, a lookup), retrying as configured.",
    needs_call=False,
    method="HTTP",
    waits=True,
    fields=fields(url="text", headers="text_map", json="value"),
    outcome_docs={
        "ok": "the server answered 2xx.",
        "http_error": ("the server answered another status (5xx and 429 after the retries). "
                       "steps.<id>.status holds it."),
        "timeout": "no connection or no answer in time, after the retries.",
    },
    schema=frozen({
        "title": "request",
        "description": ("Call your own system over HTTP (a webhook, a CRM lookup). Needs no "
                        "live call: it also runs after the caller hung up. Connection errors, "
                        "timeouts, 5xx and 429 answers are tried again `retries` times, "
                        "`backoff` seconds apart, doubling. Outcomes: ok (2xx), http_error, "
                        "timeout, error. Result: steps.<id>.status, json, text, attempts. "
                        "Header values whose names look secret (Authorization, *token*, *key*…) "
                        "and credentials in the url are left out of traces."),
        "type": "object",
        "properties": {
            "url": {
                "title": "URL",
                "description": "An http:// or https:// URL; a template.",
                "$ref": "#/definitions/text",
                "examples": ["https://example.com/hooks/voicemail", "{{ vars.webhook_url }}"],
            },
            "method": {
                "title": "Method",
                "description": "The HTTP method. Default: POST when `json` is given, else GET.",
                "type": "string",
                "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"],
            },
            "headers": {
                "title": "Headers",
                "description": ("Header name → value; values are templates. Values of "
                                "secret-looking headers are redacted from traces."),
                "type": "object",
                "maxProperties": 100,
                "propertyNames": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$",
                    "patternErrorMessage": ("a header name is letters, digits and "
                                            "!#$%&'*+.^_`|~- (no spaces or colons)"),
                    "maxLength": 256,
                },
                "additionalProperties": {"$ref": "#/definitions/text"},
                "examples": [{"Authorization": "Bearer {{ vars.webhook_token }}"}],
            },
            "json": {
                "title": "JSON body",
                "description": ("Sent as the JSON body (Content-Type: application/json). "
                                "Strings are templates; one `{{ expression }}` keeps its type "
                                "(a number stays a number)."),
                "$ref": "#/definitions/value",
                "examples": [
                    {
                        "url": "{{ steps.take_message.url }}",
                        "duration": "{{ steps.take_message.duration }}",
                        "caller": "{{ call.from }}",
                    },
                ],
            },
            "connect_timeout": {
                "title": "Connect timeout (seconds)",
                "description": "How long to wait for the connection to the server.",
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 300,
                "default": 5,
            },
            "read_timeout": {
                "title": "Read timeout (seconds)",
                "description": "How long to wait for the answer (and for each part of it).",
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 3600,
                "default": 10,
            },
            "retries": {
                "title": "Retries",
                "description": ("How many more times to try after a connection error, a "
                                "timeout, a 5xx or a 429 answer."),
                "type": "integer",
                "minimum": 0,
                "maximum": 10,
                "default": 0,
                "examples": [2],
            },
            "backoff": {
                "title": "Backoff (seconds)",
                "description": ("The wait before the first retry; each later wait is twice the "
                                "one before."),
                "type": "number",
                "minimum": 0,
                "maximum": 600,
                "default": 1,
            },
        },
        "required": ["url"],
        "additionalProperties": False,
        "examples": [
            {
                "method": "POST",
                "url": "{{ vars.webhook_url }}",
                "headers": {"Authorization": "Bearer {{ vars.webhook_token }}"},
                "json": {"url": "{{ steps.take_message.url }}", "caller": "{{ call.from }}"},
                "retries": 2,
            },
        ],
    }),
)

#: This family's actions, in the order the schema and docs list them.
SPECS = (REQUEST,)
