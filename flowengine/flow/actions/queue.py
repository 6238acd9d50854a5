"""Queues — the spec of enqueue: a caller waits in a named queue until an agent takes them.

Agents take callers with ``connect: {queue: NAME}`` (``flow/actions/call_control.py``). The
runner is in ``flowengine.actions.queue``.
"""

from __future__ import annotations

import re
from typing import Any

from .spec import CALL_OUTCOMES, ActionSpec, CheckContext, Conditional, Problem, fields, frozen

RUNNERS = "flowengine.actions.queue"

#: Keys a caller may press to leave the queue.
_KEYS = re.compile(r"^[0-9*#]+$")
#: An agent's number for call_agents: E.164 (a template is checked when the call is placed).
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def _check_enqueue(step: str, value: Any, ctx: CheckContext) -> list[Problem]:
    if not isinstance(value, dict):
        return []  # enqueue: NAME (the shorthand) has nothing more to check
    problems: list[Problem] = []
    if "announce_every" in value and "announce" not in value:
        problems.append(Problem(("announce_every",), "announce_every without announce: "
                                "there is nothing to announce", key=True, warning=True,
                                hint="add announce: [{say: \"You are number "
                                     "{{ queue.position }}\"}]"))
    keys = value.get("leave_on")
    if isinstance(keys, str) and not _KEYS.match(keys):
        problems.append(Problem(("leave_on",), f"'{keys}' is not a set of keys",
                                hint="use 0-9, * and #, e.g. \"*\""))
    agents = value.get("call_agents")
    if isinstance(agents, dict):
        for i, number in enumerate(agents.get("numbers") or ()):
            if isinstance(number, str) and "{{" not in number and not _E164.match(number):
                problems.append(Problem(("call_agents", "numbers", i),
                                        f"'{number}' is not an E.164 number",
                                        hint="write it as +15551234567"))
        if "numbers" in agents and not agents.get("numbers"):
            problems.append(Problem(("call_agents", "numbers"), "no numbers to call"))
    return problems


ENQUEUE = ActionSpec(
    name="enqueue",
    outcomes=("connected", "left", "timeout", *CALL_OUTCOMES),
    result_fields=("wait_time", "position_at_entry", "agent", "agent_call_id", "key",
                   "agents_called"),
    runner=f"{RUNNERS}:run_enqueue",
    summary=("Put the caller in a named queue (calling.queue.enter) with hold music and "
             "position announcements until an agent takes them."),
    method="calling.queue.enter",
    own_timeout=True,
    shorthand="queue",
    fields=fields(queue="text", music="media", announce="media"),
    defaults={"announce_every": 30},
    outcome_docs={
        "connected": ("an agent took the call; the step lasted until the bridge ended "
                      "(the agent hung up: the caller is still on the line)."),
        "left": "the caller pressed a leave_on key; steps.<id>.key says which.",
        "timeout": "nobody took the call within max_wait (or the step's timeout).",
    },
    conditional={
        "left": Conditional(lambda p: bool(p.get("leave_on")),
                            "an enqueue ends with left only with leave_on: KEYS"),
        "timeout": Conditional(lambda p: p.get("max_wait") is not None,
                               "an enqueue ends with timeout only with max_wait: SECONDS"),
    },
    check=_check_enqueue,
    schema=frozen({
        "title": "enqueue",
        "description": (
            "Put the caller in a named queue (RELAY calling.queue.enter) until an agent takes "
            "them with connect: {queue: NAME}, longest-waiting first. Meanwhile the caller "
            "hears `music` (looped) and, every `announce_every` seconds, `announce`, whose "
            "templates see queue.position (1 = next), queue.size, queue.expected_wait "
            "(seconds, the average of the latest waits; none before the first) and "
            "queue.waited. Outcomes: connected (an agent took the call; the step lasts until "
            "the bridge ends), left (the caller pressed a leave_on key), timeout (max_wait "
            "passed), hangup, error. Result: steps.<id>.wait_time (seconds waited), "
            "position_at_entry, agent (the agent's number), agent_call_id, key; with "
            "call_agents, agents_called (each number dialled: to, outcome, reason, "
            "took_caller)."),
        "type": ["object", "string"],
        "maxLength": 256,
        "required": ["queue"],
        "properties": {
            "queue": {
                "title": "Queue name",
                "description": "The queue to wait in (created on first use); a template.",
                "$ref": "#/definitions/text",
                "examples": ["support", "{{ vars.department }}"],
            },
            "music": {
                "title": "Hold music",
                "description": ("What the caller hears while waiting (media items, as for "
                                "play), played again and again. Default: RELAY's own."),
                "$ref": "#/definitions/media_list",
                "examples": [[{"audio": "https://example.com/hold.mp3"}]],
            },
            "announce": {
                "title": "Announcement",
                "description": ("Played when the caller enters and every announce_every "
                                "seconds after; its templates can use queue.position, "
                                "queue.size, queue.expected_wait and queue.waited."),
                "$ref": "#/definitions/media_list",
                "examples": [[{"say": "You are number {{ queue.position }} in the queue."}]],
            },
            "announce_every": {
                "title": "Seconds between announcements",
                "type": "number",
                "minimum": 5,
                "maximum": 3600,
                "default": 30,
            },
            "leave_on": {
                "title": "Keys that leave the queue",
                "description": ("A key the caller can press to leave (outcome left), e.g. "
                                "\"*\" for a voicemail; several keys in one string."),
                "type": "string",
                "minLength": 1,
                "maxLength": 12,
                "examples": ["*"],
            },
            "max_wait": {
                "title": "Maximum wait (seconds)",
                "description": "Leave the queue after this long (outcome timeout).",
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 86400,
                "examples": [300],
            },
            "call_agents": {
                "title": "Call agents out",
                "description": (
                    "When the caller enters the queue, place calls to these agents' numbers, "
                    "each running the outbound flow `flow` (which typically says a caller is "
                    "waiting and takes them with connect: {queue: NAME}): one after another "
                    "(serial: the next once the last call is over, e.g. busy, unanswered or "
                    "declined) or all at once (parallel), until an agent takes the caller. "
                    "Then the other calls are ended; when the caller leaves, all are; every "
                    "agent call ends with the step. The flow is found at run time, as "
                    "transfer finds it: an unknown name ends the step with error. Its "
                    "inputs queue and caller (the caller's number), where it declares "
                    "them, are given."),
                "type": "object",
                "required": ["flow", "numbers"],
                "properties": {
                    "flow": {"title": "Agents' flow",
                             "description": "The outbound flow each agent's call runs.",
                             "type": "string", "minLength": 1, "maxLength": 128,
                             "examples": ["agent_callout"]},
                    "numbers": {"title": "Agents' numbers",
                                "description": "E.164 numbers, called in this order.",
                                "type": "array", "minItems": 1, "maxItems": 50,
                                "items": {"type": "string", "minLength": 1,
                                          "maxLength": 256},
                                "examples": [["+15550100001", "+15550100002"]]},
                    "strategy": {"title": "One after another, or all at once",
                                 "enum": ["serial", "parallel"], "default": "serial"},
                    "ring": {"title": "Seconds each agent's phone rings",
                             "description": "Default: the flow's outbound.timeout (30 s).",
                             "type": "number", "minimum": 5, "maximum": 120,
                             "examples": [20]},
                    "from": {"title": "Caller id",
                             "description": ("The number the agents see. Default: the "
                                             "flow's outbound.from, else the number the "
                                             "caller dialled. E.164."),
                             "type": "string", "pattern": "^\\+[1-9][0-9]{6,14}$",
                             "examples": ["+15559870000"]},
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
        "examples": [
            "support",
            {"queue": "support", "music": [{"audio": "https://example.com/hold.mp3"}],
             "announce": [{"say": "You are number {{ queue.position }}."}],
             "announce_every": 60, "leave_on": "*", "max_wait": 300},
            {"queue": "support", "max_wait": 120,
             "call_agents": {"flow": "agent_callout", "strategy": "serial", "ring": 20,
                             "numbers": ["+15550100001", "+15550100002"]}},
        ],
    }),
)

#: This family's actions, in the order the schema and docs list them.
SPECS = (ENQUEUE,)
