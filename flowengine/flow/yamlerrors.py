"""YAML syntax errors in words a flow author knows, at the line and column of the mistake.

libyaml reports where it *noticed* a problem, which is often past the mistake: a key with
no ``:`` is noticed at the next line's ``:``, a ``[`` never closed at the next line, a quote
never closed at the end of the file. Its messages ("mapping values are not allowed in this
context") name parser states. :func:`yaml_error_diagnostic` recognises the common mistakes,
moves the position back to where the author has to type, and adds a hint; anything else
keeps libyaml's own words, positioned as libyaml says.
"""

from __future__ import annotations

import re

import yaml

from .diagnostics import ERROR, Diagnostic

__all__ = ["yaml_error_diagnostic"]

_KEY_VALUE = re.compile(r"^(\s*(?:-\s+)?)([^\s#:][^:#]*?):\s+(.*\S)\s*$")
_CLOSERS = {"flow sequence": ("[", "]", "list"), "flow mapping": ("{", "}", "mapping")}


def yaml_error_diagnostic(file: str, exc: yaml.YAMLError, text: str = "") -> Diagnostic:
    """One positioned finding for a PyYAML/libyaml exception, with a hint where one helps."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None) or ""
    context_mark = getattr(exc, "context_mark", None)
    lines = text.splitlines()
    if context == "expected a single document in the stream":
        return _at(file, mark, "a flow file holds one YAML document, but this is a second one")
    if mark is None:
        return Diagnostic(file, None, None, ERROR, f"invalid YAML: {problem}")
    line = lines[mark.line] if mark.line < len(lines) else ""


    if problem == "mapping values are not allowed in this context":
        found = _KEY_VALUE.match(line)
        if found and found.end(2) < mark.column:
            # key: some text: more — the second ": " starts a mapping inside the value.
            indent, key, value = found.groups()
            return _at(file, mark, "a ': ' inside a value: YAML reads it as the start of a "
                       "mapping", f'quote the value: {indent.lstrip()}{key}: '
                       f'"{_escaped(value)}"')
        previous = _previous_content_line(lines, mark.line)
        if previous is not None and ":" not in lines[previous].split("#", 1)[0] \
                and not lines[previous].lstrip().startswith("-"):
            # "greet" alone on a line, then "answer: {}": the key above lacks its colon.
            end = len(lines[previous].rstrip())
            return Diagnostic(file, previous + 1, end + 1, ERROR,
                              f"'{lines[previous].strip()}' has no ':' after it",
                              f"write '{lines[previous].strip()}:' to start a mapping")
        if previous is not None:
            above = _KEY_VALUE.match(lines[previous])
            indent = len(line) - len(line.lstrip())
            if above and indent > len(above.group(1)):
                # "b: 1" then "   c: 2": the deeper line continues b's plain value.
                key = above.group(2)
                return Diagnostic(file, mark.line + 1, indent + 1, ERROR,
                                  f"this line is indented deeper than '{key}' above it, so "
                                  f"YAML reads it as more of {key}'s value",
                                  f"indent it like '{key}' to make it a key of the same "
                                  "mapping")
        return _at(file, mark, "a ':' where YAML cannot start a mapping",
                   "quote the text if the ':' is part of it")

    if context == "while scanning a simple key" and context_mark is not None \
            and context_mark.line < len(lines):
        # "bye" alone on its line, noticed where the next line's key ends.
        key_line = lines[context_mark.line]
        key = key_line.split("#", 1)[0].strip()
        return Diagnostic(file, context_mark.line + 1, len(key_line.rstrip()) + 1, ERROR,
                          f"'{key}' has no ':' after it", f"write '{key}:' to start a mapping")

    if context == "while scanning a quoted scalar" and context_mark is not None \
            and "end of stream" in problem:
        quote = _char(lines, context_mark)
        return _at(file, context_mark, "this quoted text is never closed",
                   f"end it with {quote}" + (" (write '' for a ' inside it)" if quote == "'"
                                             else ' (write \\" for a " inside it)'))

    for kind, (opener, closer, noun) in _CLOSERS.items():
        if context == f"while parsing a {kind}" and context_mark is not None:
            return _at(file, context_mark,
                       f"this {opener} … {closer} {noun} is not closed, or two of its items "
                       "have no ',' between them",
                       f"end it with '{closer}' and separate its items with ','")

    if problem == "did not find expected key" and context == "while parsing a block mapping":
        before = line[:mark.column].rstrip()
        if before.endswith(('"', "'")):
            return _at(file, mark, "text after the closing quote",
                       "put all of the value inside the quotes")
        started = (f" (that mapping starts at line {context_mark.line + 1}, column "
                   f"{context_mark.column + 1})" if context_mark is not None else "")
        return _at(file, mark, "this line is not indented like the keys of its mapping"
                   + started, "indent the keys of one mapping by the same number of spaces; "
                   "a list item starts with '- '")

    hint = ("YAML does not allow tabs for indentation; use spaces"
            if line[mark.column:mark.column + 1] == "\t" else None)
    message = f"invalid YAML: {problem}"
    if context:
        started = ""
        if context_mark is not None and (context_mark.line, context_mark.column) != (
                mark.line, mark.column):
            started = (f" that started at line {context_mark.line + 1}, "
                       f"column {context_mark.column + 1}")
        message += f" ({context}{started})"
    return _at(file, mark, message, hint)


def _at(file: str, mark: yaml.Mark | None, message: str, hint: str | None = None) -> Diagnostic:
    if mark is None:
        return Diagnostic(file, None, None, ERROR, message, hint)
    return Diagnostic(file, mark.line + 1, mark.column + 1, ERROR, message, hint)


def _previous_content_line(lines: list[str], index: int) -> int | None:
    """The nearest line above ``index`` with something other than blanks and a comment."""
    for i in range(min(index, len(lines)) - 1, -1, -1):
        if lines[i].split("#", 1)[0].strip():
            return i
    return None


def _char(lines: list[str], mark: yaml.Mark) -> str:
    line = lines[mark.line] if mark.line < len(lines) else ""
    return line[mark.column:mark.column + 1] or '"'


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
