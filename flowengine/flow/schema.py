"""Validation against ``schemas/flow.schema.json``, with every error short, human and positioned.

jsonschema's own messages ("Additional properties are not allowed ('urll' was unexpected)",
"… is not valid under any of the given schemas") are written for schema authors. Each error
is rewritten here from its validator keyword, the path of the offending node and the node
itself, and placed at the node (at the key, for an unknown or misnamed key)::

    unknown key 'end_silence_timout' in record; did you mean 'end_silence_timeout'?
    end_silence_timeout in record must be a number, not the text 'three'
    unknown action 'plya'; did you mean 'play'?

The schema is kept to what draft-07 understands (editors validate with draft-07); two custom
keywords that yaml-language-server also shows, ``errorMessage`` and ``patternErrorMessage``,
carry hand-written messages. A ``oneOf`` whose branches each start with ``required: [key]``
is read as "exactly one of these keys" (a step's action, a media item's kind).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from .diagnostics import Diagnostic, did_you_mean
from .loader import Document, Path

#: The flow schema's file name in ``flowengine/schemas/`` (a link to ``schemas/`` in the
#: repository).
SCHEMA_FILE = "flow.schema.json"

_TYPE_NAMES = {
    "string": "text",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "empty (null)",
}


@functools.cache
def flow_schema() -> dict[str, Any]:
    """The flow language's JSON Schema (``flowengine/schemas/flow.schema.json``), parsed once."""
    text = resources.files("flowengine").joinpath("schemas", SCHEMA_FILE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = flow_schema()
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


@functools.cache
def _one_action_validator() -> tuple[frozenset[str], jsonschema.protocols.Validator]:
    """(the action keys, a validator of the schema without the step's "exactly one action"
    ``oneOf``) — for documents whose every step has exactly one action key, where that
    ``oneOf`` holds and the errors are the same. It tried 19 alternatives per step: 60 % of
    the schema's time on a 10,000-step flow."""
    schema = copy.deepcopy(flow_schema())
    step = schema["definitions"]["step"]
    actions = frozenset(key for choice in step.pop("oneOf") for key in choice["required"])
    step.pop("errorMessage", None)
    cls = jsonschema.validators.validator_for(schema)
    return actions, cls(schema)


def _validator_for(data: Any) -> jsonschema.protocols.Validator:
    actions, fast = _one_action_validator()
    steps = data.get("steps") if isinstance(data, dict) else None
    if isinstance(steps, dict) and all(
            isinstance(step, dict) and len(actions.intersection(step)) == 1
            for step in steps.values()):
        return fast
    return _validator()


def validate(doc: Document) -> list[Diagnostic]:
    """Every schema error in ``doc``, each rewritten as one positioned finding."""
    errors = list(_validator_for(doc.data).iter_errors(doc.data))
    # `play: {say: …}` (a mapping where a list of media items belongs) would get two errors
    # ("needs 'media'", "unknown key 'say'") that do not say what to write: one error instead.
    found_list_as_mapping = _media_mapping_errors(doc, errors)
    if found_list_as_mapping:
        bad = {path for path, _ in found_list_as_mapping}
        errors = [e for e in errors if not any(tuple(e.absolute_path)[:len(p)] == p
                                                for p in bad)]
    # A value of the wrong type gets one message, not also "must be one of …" and the like.
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    found: dict[tuple[object, ...], Diagnostic] = {}
    for error in errors:
        if error.validator != "type" and tuple(error.absolute_path) in mistyped \
                and "propertyNames" not in error.absolute_schema_path:
            continue
        for diag in _translate(error, doc):
            found.setdefault((diag.line, diag.col, diag.message), diag)
    return [d for _, d in found_list_as_mapping] + list(found.values())


@functools.cache
def _media_keys() -> frozenset[str]:
    """The keys whose value is a list of media items, from the action specs: a parameter of
    kind ``media`` (``ringback``, a prompt's ``play``), or an action written as one
    (``play: [...]``)."""
    from .actions import ACTIONS

    return frozenset(
        {key for spec in ACTIONS.values() for key, kind in spec.fields.items()
         if kind == "media"}
        | {spec.name for spec in ACTIONS.values()
           if spec.shorthand is not None and spec.fields.get(spec.shorthand) == "media"})


def _media_kinds() -> frozenset[str]:
    """The keys that start a media item (``say``, ``audio``, …), from the schema."""
    media = flow_schema()["definitions"].get("media", {})
    return frozenset(key for branch in media.get("oneOf", [])
                     for key in branch.get("required", [])[:1])


def _media_mapping_errors(doc: Document,
                          errors: list[ValidationError]) -> list[tuple[Path, Diagnostic]]:
    """(path, finding) for each failing ``play``-like value written as one media mapping."""
    kinds = _media_kinds()
    out: list[tuple[Path, Diagnostic]] = []
    seen: set[Path] = set()
    for error in errors:
        path = tuple(error.absolute_path)
        value = error.instance
        if (not path or path in seen or not isinstance(value, dict) or "media" in value
                or path[-1] not in _media_keys()):
            continue
        kind = next((key for key in value if key in kinds), None)
        if kind is None:
            continue
        seen.add(path)
        out.append((path, doc.diagnostic(
            path, f"{path[-1]} takes a list of media items, not one mapping",
            hint=f"write each item on its own line starting with '- ' ('- {kind}: …'), "
                 f"or [{{{kind}: …}}]")))
    return out


# -- describing where a node is -------------------------------------------------------------

def describe(path: Path) -> str:
    """What the node at ``path`` is, for a message: ``step 'greet'``, ``record``,
    ``play item 2``."""
    if not path:
        return "the flow"
    if len(path) >= 2 and path[0] == "steps":
        step = path[1]
        rest = path[2:]
        if not rest:
            return f"step '{step}'"
        if len(rest) == 2 and rest[0] == "on":
            return f"on.{rest[1]} in step '{step}'"
        if len(rest) == 1:
            return str(rest[0]) if rest[0] not in ("on", "next", "timeout", "description") \
                else f"{rest[0]} in step '{step}'"
        if rest[0] == "play" and (isinstance(rest[-1], int) and len(rest) in (2, 3)):
            return f"play item {rest[-1] + 1}"
        if rest[0] == "branch" and len(rest) == 2 and isinstance(rest[1], int):
            return f"branch choice {rest[1] + 1}"
    if len(path) == 2 and path[0] == "schedules":
        return f"schedule '{path[1]}'"
    last = path[-1]
    if isinstance(last, int):
        return f"item {last + 1} of {describe(path[:-1])}"
    if len(path) == 1:
        return str(last)
    return f"{last} in {describe(path[:-1])}"


def _key_noun(path: Path) -> str:
    """The word for a key of the mapping at ``path`` when it names a choice (action, media)."""
    if len(path) == 2 and path[0] == "steps":
        return "action"
    return "media type"


def _name_noun(path: Path) -> str:
    """The word for a key of the mapping at ``path`` that is a name (propertyNames)."""
    if path == ("steps",):
        return "step id"
    if path == ("vars",) or (len(path) == 3 and path[0] == "steps" and path[2] == "set"):
        return "variable name"
    if path and path[-1] == "headers":
        return "header name"
    return f"key in {describe(path)}"


def _show(value: Any) -> str:
    """A value as a message shows it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "empty (null)"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the text '{text}'"
    if isinstance(value, (int, float)):
        return f"the number {getattr(value, 'written', value)}"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _expected(types: Any) -> str:
    names = [_TYPE_NAMES.get(t, t) for t in ([types] if isinstance(types, str) else types)]
    return " or ".join(names)


def _choice_keys(schema: dict[str, Any]) -> list[str] | None:
    """For a ``oneOf`` of ``required: [key]`` branches: those keys, else None."""
    branches = schema.get("oneOf")
    if not isinstance(branches, list):
        return None
    keys = []
    for branch in branches:
        required = branch.get("required") if isinstance(branch, dict) else None
        if not required:
            return None
        keys.append(required[0])
    return keys


# -- rewriting one error ---------------------------------------------------------------------

def _translate(error: ValidationError, doc: Document) -> Iterator[Diagnostic]:
    path: Path = tuple(error.absolute_path)
    value: Any = error.instance
    kind = error.validator
    rule: Any = error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}

    if "propertyNames" in error.absolute_schema_path:
        # The error is about a key (``value``) of the mapping at ``path``.
        noun = _name_noun(path)
        hint = schema.get("patternErrorMessage") if kind == "pattern" else None
        if kind == "maxLength":
            message = (f"{noun} '{_short(value)}' is too long ({len(value)} characters; "
                       f"at most {error.validator_value})")
        else:
            message = f"invalid {noun} '{_short(value)}'"
        yield doc.diagnostic((*path, value), message, key=True, hint=hint)
        return

    where = describe(path)
    if kind == "additionalProperties":
        choices = _choice_keys(schema)
        if choices is not None and not any(k in value for k in choices):
            known = list(schema.get("properties", {}))
            for key in value:
                if key in known:
                    continue
                message = f"unknown {_key_noun(path)} '{key}'"
                if len(path) != 2 or path[0] != "steps":
                    message += f" in {where}"
                hint = did_you_mean(key, choices) or did_you_mean(key, known)
                yield doc.diagnostic((*path, key), message, key=True, hint=hint)
            return

    if kind == "oneOf":
        yield from _one_of(error, doc, path, schema)
        return

    if kind == "type":
        if len(path) == 2 and path[0] == "steps" and isinstance(value, str) and value in \
                schema.get("properties", {}):
            yield doc.diagnostic(path, f"{where} must be {_expected(rule)}, not {_show(value)}",
                                 hint=f"write '{value}: {{}}' on its own line under the step")
            return
        if schema.get("title") == "Step id":
            yield doc.diagnostic(path, f"{where} must be a step id or null, not {_show(value)}")
            return

    yield from translate_error(error, doc, where)


def translate_error(error: ValidationError, doc: Document, where: str) -> Iterator[Diagnostic]:
    """The messages for the schema keywords every schema uses (unknown and missing keys,
    types, enums, patterns, bounds, lengths), placed at the node (``where`` names it).
    The flow's and the scenario file's translators handle their own cases, then this."""
    path: Path = tuple(error.absolute_path)
    value: Any = error.instance
    kind = error.validator
    rule: Any = error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}

    if kind == "additionalProperties":
        known = list(schema.get("properties", {}))
        for key in value:
            if key not in known:
                yield doc.diagnostic((*path, key), f"unknown key '{key}' in {where}", key=True,
                                     hint=did_you_mean(key, known))
        return

    if kind == "type":
        hint = None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (
                rule == "string" or (isinstance(rule, list) and "string" in rule)):
            # The number as written (+15551234567, 0123), not as Python prints it.
            hint = f'quote it: "{getattr(value, "written", value)}"'
        yield doc.diagnostic(path, f"{where} must be {_expected(rule)}, not {_show(value)}",
                             hint=hint)
        return

    if kind == "enum":
        options = [_option(o) for o in rule]
        listed = ", ".join(options) if len(options) <= 8 else ", ".join(options[:6]) + ", …"
        message = f"{where} must be one of {listed}, not {_show(value)}"
        hint = did_you_mean(value, options) if isinstance(value, str) else None
        yield doc.diagnostic(path, message, hint=hint)
        return

    if kind == "required":
        missing = [k for k in rule if isinstance(value, dict) and k not in value]
        for key in missing:
            yield doc.diagnostic(path, f"{where} needs '{key}'", key=True)
        return

    limit = rule
    bounds = {
        "minimum": "at least", "maximum": "at most",
        "exclusiveMinimum": "greater than", "exclusiveMaximum": "less than",
    }
    if kind in bounds:
        message = f"{where} must be {bounds[kind]} {limit}, not {_short(value)}"
    elif kind in ("minLength", "minItems", "minProperties") and limit == 1:
        message = f"{where} must not be empty"
    elif kind == "minLength":
        message = f"{where} must be at least {limit} characters long"
    elif kind == "maxLength":
        message = f"{where} is too long ({len(value)} characters; at most {limit})"
    elif kind in ("minItems", "minProperties"):
        message = f"{where} needs at least {limit} entries"
    elif kind in ("maxItems", "maxProperties"):
        message = f"{where} has too many entries ({len(value)}; at most {limit})"
    elif kind == "pattern":
        yield doc.diagnostic(path, f"invalid value '{_short(value)}' for {where}",
                             hint=schema.get("patternErrorMessage"))
        return
    else:
        message = f"{where}: {error.message}"
    yield doc.diagnostic(path, message)


def _option(value: Any) -> str:
    """An enum's option as a message lists it (YAML's words for booleans and null)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _one_of(error: ValidationError, doc: Document, path: Path,
            schema: dict[str, Any]) -> Iterator[Diagnostic]:
    """A ``oneOf`` failure: usually "exactly one of these keys" gone wrong."""
    value: Any = error.instance
    choices = _choice_keys(schema)
    where = describe(path)
    if not isinstance(value, dict):
        return  # a wrong type, reported by "type"
    if choices is None:
        yield doc.diagnostic(path, f"{where}: {schema.get('errorMessage') or error.message}")
        return
    present = [k for k in choices if k in value]
    noun = _key_noun(path)
    if len(present) == 1:
        # The node chose its branch; report what is wrong inside that branch.
        index = choices.index(present[0])
        for sub in error.context or ():
            if sub.relative_schema_path and sub.relative_schema_path[0] == index:
                if sub.validator == "additionalProperties" and isinstance(sub.instance, dict):
                    yield from _wrong_keys_for_choice(sub, doc, path, present[0], schema)
                else:
                    yield from _translate(sub, doc)
        return
    if len(present) > 1:
        second = present[1]
        yield doc.diagnostic(
            (*path, second),
            f"{where} has more than one {noun}: " + ", ".join(f"'{k}'" for k in present),
            key=True,
            hint="a step takes exactly one action; split it into two steps" if noun == "action"
            else "write each as its own item",
        )
        return
    known = set(schema.get("properties", {}))
    for branch in schema.get("oneOf", []):
        known |= set(branch.get("properties", {}))
    unknown = [k for k in value if k not in known]
    if unknown:
        if schema.get("additionalProperties") is False:
            return  # reported as "unknown action" by additionalProperties
        for key in unknown:
            yield doc.diagnostic((*path, key), f"unknown {noun} '{key}' in {where}", key=True,
                                 hint=did_you_mean(key, choices) or did_you_mean(key, known))
        return
    options = ", ".join(choices)
    yield doc.diagnostic(path, f"{where} has no {noun}; it needs one of {options}", key=True)


def _wrong_keys_for_choice(sub: ValidationError, doc: Document, path: Path, chosen: str,
                           schema: dict[str, Any]) -> Iterator[Diagnostic]:
    """Keys that do not go with the chosen kind (``duration`` on a ``say`` item)."""
    allowed = set(sub.schema.get("properties", {})) if isinstance(sub.schema, dict) else set()
    owners: dict[str, str] = {}
    for branch in schema.get("oneOf", []):
        for key in branch.get("properties", {}):
            owners.setdefault(key, branch["required"][0])
    where = describe(path)
    instance: Any = sub.instance
    for key in instance:
        if key in allowed:
            continue
        if key in owners:
            yield doc.diagnostic((*path, key), f"'{key}' does not go with {chosen} in {where}",
                                 key=True, hint=f"'{key}' belongs to {owners[key]}")
        else:
            yield doc.diagnostic((*path, key), f"unknown key '{key}' in {where}", key=True,
                                 hint=did_you_mean(key, allowed))
