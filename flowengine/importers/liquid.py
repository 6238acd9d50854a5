"""Liquid (as Twilio Studio writes it) → Jinja (as flowengine reads it).

Studio's templates are Liquid: ``{{widgets.menu.Digits}}``, ``{{flow.variables.count |
plus: 1}}``, ``{% if trigger.call.From == '+1555' %}…{% endif %}``. flowengine's are Jinja.
The two share the ``{{ }}``/``{% %}`` shapes but not their names or filters, so a template
is translated piece by piece:

- a variable path (``widgets.menu.Digits``) is handed to a *resolver*, which knows what
  the importer made of each widget and returns the Jinja expression for it
  (``steps.menu.digits``), or ``None`` when the name has no counterpart;
- the common filters become their Jinja equivalents (``upcase`` → ``upper``, ``size`` →
  ``length``, ``append: x`` → ``~ x`` …); the others are reported and left out;
- ``if``/``elsif``/``else``/``unless``, ``assign``, ``for``, ``raw`` and ``comment`` tags
  are translated; ``case``, ``capture``, ``cycle`` and the rest are reported.

Nothing is dropped in silence: every untranslated piece is an :class:`Issue` with its
offset in the template text. An unknown name becomes the empty text ``''``, which is what
Liquid prints for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Issue", "Resolver", "Translation", "jinja_string", "translate"]

#: (path of names and indexes, offset in the text) → (Jinja expression or None, warning).
Resolver = Callable[[list[str | int]], tuple[str | None, str | None]]


@dataclass(frozen=True, slots=True)
class Issue:
    """A piece of a template that did not translate as it was, at ``offset`` in the text."""

    offset: int
    message: str


@dataclass(slots=True)
class Translation:
    """The result of :func:`translate`.

    Attributes:
        template: the Jinja template text.
        expression: when the Liquid text was exactly one ``{{ output }}`` (spaces around
            allowed), its Jinja expression, usable in ``when:``; else ``None``.
        issues: what did not translate.
        has_tags: whether the text used ``{% %}`` tags.
    """

    template: str
    expression: str | None
    issues: list[Issue] = field(default_factory=list)
    has_tags: bool = False


_TOKEN = re.compile(r"\{\{(-?)(.*?)(-?)\}\}|\{%(-?)(.*?)(-?)%\}", re.DOTALL)
_IDENT = re.compile(r"[A-Za-z_][\w-]*")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_JINJA_IDENT = re.compile(r"[A-Za-z_]\w*")

#: Liquid filter → Jinja filter, for the ones whose arguments carry over as they are.
_SIMPLE_FILTERS = {
    "upcase": "upper", "downcase": "lower", "capitalize": "capitalize", "size": "length",
    "strip": "trim", "join": "join", "first": "first", "last": "last", "abs": "abs",
    "round": "round", "url_encode": "urlencode", "to_json": "tojson", "json": "tojson",
    "replace": "replace", "escape": "e", "uniq": "unique", "sort": "sort",
    "reverse": "reverse", "ceil": "round", "floor": "round",
}


def jinja_string(text: str) -> str:
    """``text`` as a Jinja string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _Scanner:
    """Reads one Liquid expression (the inside of ``{{ }}`` or a tag's arguments)."""

    def __init__(self, text: str, base: int, translator: _Translator) -> None:
        self.text = text
        self.pos = 0
        self.base = base
        self.tr = translator

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip()
        return self.pos >= len(self.text)

    def peek(self, *words: str) -> str | None:
        self.skip()
        for word in words:
            if self.text.startswith(word, self.pos):
                end = self.pos + len(word)
                if word[-1].isalpha() and end < len(self.text) and (
                        self.text[end].isalnum() or self.text[end] == "_"):
                    continue
                return word
        return None

    def take(self, word: str) -> None:
        self.skip()
        self.pos += len(word)

    def issue(self, message: str, at: int | None = None) -> None:
        self.tr.issues.append(Issue(self.base + (self.pos if at is None else at), message))

    def string(self) -> str | None:
        self.skip()
        if self.pos < len(self.text) and self.text[self.pos] in "'\"":
            quote = self.text[self.pos]
            end = self.text.find(quote, self.pos + 1)
            if end < 0:
                end = len(self.text)
            value = self.text[self.pos + 1:end]
            self.pos = end + 1
            return value
        return None

    def primary(self) -> str:
        """One operand → a Jinja atom (a name, a literal or something in parentheses)."""
        self.skip()
        start = self.pos
        literal = self.string()
        if literal is not None:
            return jinja_string(literal)
        match = _NUMBER.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            return match.group(0)
        if self.text.startswith("(", self.pos):
            self.issue("a range (a..b) has no counterpart; it was left out")
            end = self.text.find(")", self.pos)
            self.pos = len(self.text) if end < 0 else end + 1
            return "''"
        match = _IDENT.match(self.text, self.pos)
        if not match:
            self.issue(f"cannot read {self.text[self.pos:self.pos + 20]!r}; it was left out")
            self.pos = len(self.text)
            return "''"
        self.pos = match.end()
        word = match.group(0)
        keywords = {"true": "true", "false": "false", "nil": "none", "null": "none",
                    "empty": "''", "blank": "''"}
        if word in keywords:
            return keywords[word]
        path: list[str | int] = [word]
        while True:
            if self.text.startswith(".", self.pos):
                match = _IDENT.match(self.text, self.pos + 1)
                if not match:
                    break
                self.pos = match.end()
                path.append(match.group(0))
            elif self.text.startswith("[", self.pos):
                end = self.text.find("]", self.pos)
                if end < 0:
                    break
                inner = self.text[self.pos + 1:end].strip()
                self.pos = end + 1
                if inner.isdigit():
                    path.append(int(inner))
                elif len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
                    path.append(inner[1:-1])
                else:
                    self.issue(f"an index by a variable ([{inner}]) has no counterpart; "
                               "it was left out", start)
                    return "''"
            else:
                break
        return self.tr.name(path, self.base + start)

    def filtered(self) -> str:
        """An operand with its ``| filter: args`` chain."""
        atom = self.primary()
        while self.peek("|"):
            self.take("|")
            self.skip()
            at = self.pos
            match = _IDENT.match(self.text, self.pos)
            if not match:
                self.issue("a filter without a name; it was left out")
                break
            self.pos = match.end()
            name = match.group(0)
            args: list[str] = []
            if self.peek(":"):
                self.take(":")
                args.append(self.primary())
                while self.peek(","):
                    self.take(",")
                    args.append(self.primary())
            atom = self.tr.filter(name, atom, args, self.base + at)
        return atom

    def comparison(self) -> str:
        left = self.filtered()
        op = self.peek("==", "!=", "<>", ">=", "<=", ">", "<", "contains")
        if op is None:
            return left
        self.take(op)
        right = self.filtered()
        if op == "contains":
            return f"{right} in {left}"
        return f"{left} {'!=' if op == '<>' else op} {right}"

    def condition(self) -> str:
        """Liquid's ``and``/``or`` group from the right, without precedence."""
        first = self.comparison()
        op = self.peek("and", "or")
        if op is None:
            return first
        self.take(op)
        return f"{first} {op} ({self.condition()})"


class _Translator:
    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve
        self.issues: list[Issue] = []
        self.locals: set[str] = set()

    def name(self, path: list[str | int], offset: int) -> str:
        head = path[0]
        if isinstance(head, str) and head in self.locals:
            return _join_path(head, path[1:])
        # `x.size`, `x.first`, `x.last` are Liquid's properties of every list and text.
        tail = path[-1]
        if len(path) > 1 and tail in ("size", "first", "last"):
            inner = self.name(path[:-1], offset)
            return f"({inner} | {'length' if tail == 'size' else tail})"
        expr, warning = self.resolve(path)
        shown = ".".join(str(p) for p in path)
        if warning:
            self.issues.append(Issue(offset, warning))
        if expr is None:
            if not warning:
                self.issues.append(Issue(offset, f"{shown} has no counterpart in flowengine; "
                                                 "it was left out (empty text)"))
            return "''"
        return expr

    def filter(self, name: str, atom: str, args: list[str], offset: int) -> str:
        first = args[0] if args else "''"
        if name in _SIMPLE_FILTERS:
            target = _SIMPLE_FILTERS[name]
            if name in ("ceil", "floor"):
                method = "'ceil'" if name == "ceil" else "'floor'"
                return f"({atom} | float | round(0, {method}) | int)"
            return f"({atom} | {target}({', '.join(args)}))" if args else f"({atom} | {target})"
        if name == "default":
            return f"({atom} | default({first}, true))"
        if name == "append":
            return f"({atom} ~ {first})"
        if name == "prepend":
            return f"({first} ~ {atom})"
        if name == "remove":
            return f"({atom} | replace({first}, ''))"
        if name == "split":
            return f"(({atom} ~ '').split({first}))"
        if name == "truncate":
            return f"({atom} | truncate({first}, true, '...', 0))"
        if name in ("plus", "minus", "times", "divided_by", "modulo"):
            op = {"plus": "+", "minus": "-", "times": "*", "divided_by": "/",
                  "modulo": "%"}[name]
            cast = "int" if re.fullmatch(r"-?\d+", first) else "float"
            if name == "divided_by" and cast == "int":
                op = "//"
            return f"(({atom} | {cast}) {op} {first})"
        if name in ("lstrip", "rstrip"):
            return f"(({atom} ~ '').{name}())"
        if name == "date":
            self.issues.append(Issue(offset, "the date filter has no counterpart in flowengine "
                                             "templates (no clock); the value is left as it is"))
            return atom
        self.issues.append(Issue(offset, f"the Liquid filter '{name}' has no counterpart; "
                                         "it was left out"))
        return atom


def _join_path(head: str, rest: list[str | int]) -> str:
    text = head
    for part in rest:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _JINJA_IDENT.fullmatch(part) and not part.startswith("_"):
            text += f".{part}"
        else:
            text += f"[{jinja_string(part)}]"
    return text


def _strip_parens(expr: str) -> str:
    """``(a | upper)`` → ``a | upper`` when the parentheses hold the whole expression."""
    if not (expr.startswith("(") and expr.endswith(")")):
        return expr
    depth = 0
    quote = ""
    for i, ch in enumerate(expr):
        if quote:
            if ch == "\\":
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0 and i != len(expr) - 1:
                return expr
    return expr[1:-1]


def _literal(text: str) -> str:
    """Plain text as template text: Jinja would read ``{#`` as a comment."""
    if "{#" in text or "{{" in text or "{%" in text:
        return "{% raw %}" + text + "{% endraw %}"
    return text


_BLOCKS = {"if": "endif", "unless": "endif", "for": "endfor"}


def translate(text: str, resolve: Resolver) -> Translation:
    """Translate one Liquid template (``text``) to Jinja, naming things with ``resolve``."""
    tr = _Translator(resolve)
    out: list[str] = []
    stack: list[str] = []
    pos = 0
    outputs = 0
    has_tags = False
    only_expr: str | None = None
    skipping: str | None = None  # inside {% comment %} / {% raw %}
    for match in _TOKEN.finditer(text):
        literal = text[pos:match.start()]
        pos = match.end()
        if skipping == "raw":
            tag = (match.group(5) or "").strip()
            if tag == "endraw":
                out.append(_literal(literal))
                skipping = None
            continue
        if skipping == "comment":
            if (match.group(5) or "").strip() == "endcomment":
                skipping = None
            continue
        out.append(_literal(literal))
        if match.group(2) is not None and match.group(0).startswith("{{"):
            inner_start = match.start(2)
            scanner = _Scanner(match.group(2), inner_start, tr)
            expr = "''" if scanner.at_end() else scanner.filtered()
            if not scanner.at_end():
                scanner.issue("unexpected text in the output; it was left out")
            expr = _strip_parens(expr)
            if expr != "''":  # a name left out prints nothing, as Liquid prints it
                out.append("{{" + match.group(1) + " " + expr + " " + match.group(3) + "}}")
            outputs += 1
            only_expr = expr
            continue
        has_tags = True
        body = match.group(5)
        lead, trail = match.group(4), match.group(6)
        scanner = _Scanner(body, match.start(5), tr)
        scanner.skip()
        word_match = _IDENT.match(body, scanner.pos)
        word = word_match.group(0) if word_match else ""
        scanner.pos = word_match.end() if word_match else scanner.pos
        jinja: str | None = None
        if word in ("if", "elsif", "unless"):
            cond = scanner.condition()
            if word == "if":
                stack.append("if")
                jinja = f"if {cond}"
            elif word == "unless":
                stack.append("unless")
                jinja = f"if not ({cond})"
            else:
                jinja = f"elif {cond}"
        elif word == "else":
            jinja = "else"
        elif word in ("endif", "endunless", "endfor"):
            if stack:
                jinja = _BLOCKS[stack.pop()]
            else:
                tr.issues.append(Issue(match.start(), f"{word} without its opening tag; "
                                                      "it was left out"))
        elif word == "assign":
            target = _IDENT.match(body, _skip(body, scanner.pos))
            if target and "=" in body[target.end():]:
                scanner.pos = body.index("=", target.end()) + 1
                value = scanner.filtered()
                name = target.group(0).replace("-", "_")
                tr.locals.add(target.group(0))
                jinja = f"set {name} = {_strip_parens(value)}"
            else:
                tr.issues.append(Issue(match.start(), "cannot read this assign; it was left out"))
        elif word == "for":
            var = _IDENT.match(body, _skip(body, scanner.pos))
            if var and re.match(r"\s+in\s", body[var.end():]):
                scanner.pos = body.index("in", var.end()) + 2
                seq = scanner.filtered()
                tr.locals.add(var.group(0))
                stack.append("for")
                jinja = f"for {var.group(0)} in {seq}"
                if not scanner.at_end():
                    scanner.issue("for-loop options (limit, offset, reversed) have no "
                                  "counterpart; they were left out")
            else:
                tr.issues.append(Issue(match.start(), "cannot read this for; it was left out"))
        elif word == "comment":
            skipping = "comment"
        elif word == "raw":
            skipping = "raw"
        else:
            tr.issues.append(Issue(match.start(), f"the Liquid tag '{word or body.strip()}' has "
                                                  "no counterpart; it was left out"))
        if jinja is not None:
            out.append("{%" + lead + " " + jinja + " " + trail + "%}")
    out.append(_literal(text[pos:]))
    while stack:
        tr.issues.append(Issue(len(text), "a block tag is not closed; it was closed at the end"))
        out.append("{% " + _BLOCKS[stack.pop()] + " %}")
    template = "".join(out)
    expression = None
    if outputs == 1 and not has_tags and _TOKEN.sub("", text).strip() == "":
        expression = only_expr
    return Translation(template, expression, tr.issues, has_tags)


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos
