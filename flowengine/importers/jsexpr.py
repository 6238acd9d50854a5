"""SWML's ``${…}``/``%{…}`` JavaScript expressions, translated to Jinja.

SWML evaluates its expressions with V8; flowengine's templates are Jinja. This module
reads the part of JavaScript that call scripts use — property access (``a.b``, ``a['b']``,
``a[0]``), literals, ``== === != !== < <= > >=``, ``&& || !``, ``?:``, ``??``, arithmetic,
``+`` on text (``~`` in Jinja), ``.length``, the common string and array methods,
``parseInt``/``parseFloat``/``String``/``Math.*`` — with a tokenizer and a precedence-climbing
parser, and writes the equivalent Jinja, parenthesised by Jinja's own precedence (where
``~`` binds tighter than ``+``, unlike JavaScript's single ``+``).

Anything outside that subset raises :class:`JsError` with the offset of the construct in
the expression text, so the importer can report it at its place.

Names are not this module's business: the importer passes a *resolver* that maps a name
and the static property chain after it (``prompt_value``, ``call.from``,
``request_response.user.name``) to Jinja (``steps.menu.digits``, ``call.from``,
``steps.lookup.json.user.name``) and its type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Array",
    "Binary",
    "Call",
    "Conditional",
    "Index",
    "Jinja",
    "JsError",
    "Literal_",
    "Member",
    "Name",
    "Node",
    "Resolver",
    "Template",
    "Unary",
    "parse",
    "to_jinja",
    "translate_expression",
    "translate_template",
]

#: What the translator knows of a value's type: enough to choose ``~`` over ``+`` and to
#: compare a text with a number the way JavaScript's ``==`` does.
Type = Literal["str", "num", "bool", "none", "list", "any"]


class JsError(Exception):
    """A construct outside the supported subset (or not JavaScript at all), at ``offset``
    (0-based, in the expression text)."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# --- tokens ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Token:
    kind: Literal["num", "str", "name", "op", "subst", "eof"]
    value: str | float | int
    pos: int


_OPS = sorted(["===", "!==", "==", "!=", "<=", ">=", "&&", "||", "??", "?.", "=>", "<", ">",
               "+", "-", "*", "/", "%", "!", "?", ":", ".", ",", "(", ")", "[", "]", "{",
               "}", "="], key=len, reverse=True)
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\":
            i += 1
            if i >= len(text):
                break
            esc = text[i]
            if esc == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 1:i + 5]):
                out.append(chr(int(text[i + 1:i + 5], 16)))
                i += 5
                continue
            out.append(_ESCAPES.get(esc, esc))
            i += 1
            continue
        if ch == "\n":
            break
        out.append(ch)
        i += 1
    raise JsError("a text in quotes that does not end", start)


def tokens(text: str, start: int = 0) -> Iterator[Token]:
    """The tokens of ``text`` from ``start``; ``${`` and ``%{`` are one ``subst`` token."""
    i = start
    while True:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if i >= len(text):
            yield Token("eof", "", i)
            return
        ch = text[i]
        if ch in "$%" and text[i + 1:i + 2] == "{":
            yield Token("subst", ch + "{", i)
            i += 2
            continue
        if ch in "'\"":
            value, end = _read_string(text, i)
            yield Token("str", value, i)
            i = end
            continue
        if ch == "`":
            raise JsError("template literals (`…`) are not supported", i)
        number = _NUMBER.match(text, i)
        if number and (ch.isdigit() or (ch == "." and text[i + 1:i + 2].isdigit())):
            raw = number.group()
            value_n: float | int = (int(raw, 16) if raw[:2] in ("0x", "0X") else
                                    float(raw) if any(c in raw for c in ".eE") else int(raw))
            yield Token("num", value_n, i)
            i = number.end()
            continue
        ident = _IDENT.match(text, i)
        if ident:
            yield Token("name", ident.group(), i)
            i = ident.end()
            continue
        for op in _OPS:
            if text.startswith(op, i):
                yield Token("op", op, i)
                i += len(op)
                break
        else:
            raise JsError(f"unexpected character {ch!r}", i)


# --- syntax tree ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Literal_:
    """A literal: text, number, true/false, null/undefined (both ``None``)."""

    value: str | int | float | bool | None
    pos: int


@dataclass(frozen=True, slots=True)
class Name:
    """An identifier."""

    id: str
    pos: int


@dataclass(frozen=True, slots=True)
class Member:
    """``obj.prop``."""

    obj: Node
    prop: str
    pos: int


@dataclass(frozen=True, slots=True)
class Index:
    """``obj[index]``."""

    obj: Node
    index: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Call:
    """``callee(args…)``."""

    callee: Node
    args: tuple[Node, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Unary:
    """``!x``, ``-x``, ``+x``."""

    op: str
    arg: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Binary:
    """A binary operator (``+``, ``===``, ``&&``, …)."""

    op: str
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Conditional:
    """``test ? then : otherwise``."""

    test: Node
    then: Node
    otherwise: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Array:
    """``[a, b]``."""

    items: tuple[Node, ...]
    pos: int


Node = Literal_ | Name | Member | Index | Call | Unary | Binary | Conditional | Array

#: JavaScript's binary precedence (higher binds tighter).
_BINARY = {"??": 1, "||": 2, "&&": 3, "==": 7, "!=": 7, "===": 7, "!==": 7,
           "<": 8, ">": 8, "<=": 8, ">=": 8, "+": 10, "-": 10, "*": 11, "/": 11, "%": 11}
_UNSUPPORTED_OPS = {"=": "assignment", "=>": "arrow functions", "?.": "optional chaining (?.)",
                    "{": "object literals"}


class _Parser:
    def __init__(self, text: str, start: int = 0, *, in_subst: bool = False) -> None:
        self.text = text
        self.toks = tokens(text, start)
        self.tok = next(self.toks)
        self.in_subst = in_subst

    def advance(self) -> Token:
        tok = self.tok
        self.tok = next(self.toks)
        return tok

    def at(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.value in ops

    def expect(self, op: str) -> Token:
        if not self.at(op):
            raise JsError(f"expected '{op}' here, found {self._describe()}", self.tok.pos)
        return self.advance()

    def _describe(self) -> str:
        tok = self.tok
        if tok.kind == "eof":
            return "the end of the expression"
        if tok.kind == "str":
            return f"the text {json.dumps(tok.value)}"
        return f"'{tok.value}'"

    def whole(self) -> Node:
        node = self.expression()
        if self.tok.kind != "eof":
            raise JsError(f"unexpected {self._describe()} after the expression", self.tok.pos)
        return node

    def expression(self) -> Node:
        test = self.binary(1)
        if self.at("?"):
            pos = self.advance().pos
            then = self.expression()
            self.expect(":")
            otherwise = self.expression()
            return Conditional(test, then, otherwise, pos)
        if self.tok.kind == "op" and self.tok.value in _UNSUPPORTED_OPS:
            raise JsError(f"{_UNSUPPORTED_OPS[str(self.tok.value)]} are not supported",
                          self.tok.pos)
        return test

    def binary(self, min_prec: int) -> Node:
        left = self.unary()
        while self.tok.kind == "op" and _BINARY.get(str(self.tok.value), 0) >= min_prec:
            tok = self.advance()
            op = str(tok.value)
            right = self.binary(_BINARY[op] + 1)
            left = Binary(op, left, right, tok.pos)
        if self.tok.kind == "name" and self.tok.value in ("in", "instanceof"):
            raise JsError(f"the operator '{self.tok.value}' is not supported", self.tok.pos)
        return left

    def unary(self) -> Node:
        if self.at("!", "-", "+"):
            tok = self.advance()
            return Unary(str(tok.value), self.unary(), tok.pos)
        if self.tok.kind == "name" and self.tok.value in ("typeof", "new", "delete", "void"):
            raise JsError(f"'{self.tok.value}' is not supported", self.tok.pos)
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            if self.at("."):
                self.advance()
                if self.tok.kind != "name":
                    raise JsError(f"expected a property name after '.', found "
                                  f"{self._describe()}", self.tok.pos)
                tok = self.advance()
                node = Member(node, str(tok.value), tok.pos)
            elif self.at("["):
                pos = self.advance().pos
                index = self.expression()
                self.expect("]")
                node = Index(node, index, pos)
            elif self.at("("):
                pos = self.advance().pos
                args: list[Node] = []
                while not self.at(")"):
                    args.append(self.expression())
                    if not self.at(")"):
                        self.expect(",")
                self.advance()
                node = Call(node, tuple(args), pos)
            else:
                return node

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "num":
            self.advance()
            return Literal_(tok.value, tok.pos)
        if tok.kind == "str":
            self.advance()
            return Literal_(str(tok.value), tok.pos)
        if tok.kind == "name":
            self.advance()
            constants: dict[str, bool | None] = {"true": True, "false": False, "null": None,
                                                 "undefined": None}
            if tok.value in constants:
                return Literal_(constants[str(tok.value)], tok.pos)
            if tok.value == "function":
                raise JsError("function expressions are not supported", tok.pos)
            return Name(str(tok.value), tok.pos)
        if tok.kind == "subst":
            # ``%{x}`` inside a condition: SWML substitutes the value first; here it is
            # the expression x, grouped.
            self.advance()
            inner = self.expression()
            self.expect("}")
            return inner
        if self.at("("):
            self.advance()
            inner = self.expression()
            self.expect(")")
            return inner
        if self.at("["):
            pos = self.advance().pos
            items: list[Node] = []
            while not self.at("]"):
                items.append(self.expression())
                if not self.at("]"):
                    self.expect(",")
            self.advance()
            return Array(tuple(items), pos)
        if tok.kind == "op" and tok.value in _UNSUPPORTED_OPS:
            raise JsError(f"{_UNSUPPORTED_OPS[str(tok.value)]} are not supported", tok.pos)
        raise JsError(f"expected a value, found {self._describe()}", tok.pos)


def parse(text: str) -> Node:
    """The syntax tree of the JavaScript expression ``text``.

    Raises:
        JsError: not an expression of the supported subset; ``offset`` points at it.
    """
    return _Parser(text).whole()


# --- Jinja output ---------------------------------------------------------------------

#: Jinja's precedence levels, lowest first: ``a if t else b`` < or < and < not <
#: comparisons < ``+ -`` < ``~`` < ``* / %`` < unary minus < ``| filter`` < attributes, calls.
COND, OR, AND, NOT, COMPARE, ADD, CONCAT, MUL, NEG, FILTER, ATOM = range(1, 12)


@dataclass(frozen=True, slots=True)
class Jinja:
    """A Jinja expression: its text, its precedence level and what is known of its type."""

    text: str
    prec: int = ATOM
    type: Type = "any"

    def at(self, level: int) -> str:
        """The text, parenthesised unless it binds at least as tightly as ``level``.

        A filter used as an operand is parenthesised too, although Jinja would not need
        it: ``(x | int) + 1`` reads as meant, ``x | int + 1`` does not."""
        if self.prec == FILTER and COND < level < FILTER:
            return f"({self.text})"
        return self.text if self.prec >= level else f"({self.text})"


#: ``resolver(root, chain)`` → (the Jinja for root + the first k members, k). ``chain``
#: holds the static property names and indexes written after the root name.
Resolver = Callable[[str, tuple[str | int, ...], int], tuple[Jinja, int]]


def literal(value: str | int | float | bool | None) -> Jinja:
    """A Python value as a Jinja literal."""
    if value is None:
        return Jinja("none", ATOM, "none")
    if isinstance(value, bool):
        return Jinja("true" if value else "false", ATOM, "bool")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            value = int(value)
        return Jinja(repr(value), ATOM if value >= 0 else NEG, "num")
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return Jinja(f"'{escaped}'", ATOM, "str")


def _prop(name: str | int) -> str:
    if isinstance(name, int):
        return f"[{name}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return f".{name}"
    return f"[{literal(name).text}]"


def static_chain(node: Node) -> tuple[str, tuple[str | int, ...], int] | None:
    """``(root, members, pos)`` when ``node`` is a name followed only by ``.x``,
    ``['x']`` and ``[0]``; else ``None``."""
    chain: list[str | int] = []
    while True:
        if isinstance(node, Member):
            chain.append(node.prop)
            node = node.obj
        elif isinstance(node, Index) and isinstance(node.index, Literal_) and \
                isinstance(node.index.value, (str, int)) and not isinstance(node.index.value,
                                                                            bool):
            chain.append(node.index.value)
            node = node.obj
        elif isinstance(node, Name):
            return node.id, tuple(reversed(chain)), node.pos
        else:
            return None


def apply_filter(obj: Jinja, name: str, type_: Type, args: Sequence[Jinja] = ()) -> Jinja:
    """``obj | name(args)``."""
    suffix = f"({', '.join(a.text for a in args)})" if args else ""
    return Jinja(f"{obj.at(FILTER)} | {name}{suffix}", FILTER, type_)


class _Translator:
    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve

    def node(self, node: Node) -> Jinja:
        method = getattr(self, "_" + type(node).__name__.lower().rstrip("_"))
        result: Jinja = method(node)
        return result

    def _literal(self, node: Literal_) -> Jinja:
        return literal(node.value)

    def _array(self, node: Array) -> Jinja:
        return Jinja("[" + ", ".join(self.node(i).at(COND) for i in node.items) + "]", ATOM,
                     "list")

    def _chain(self, node: Node) -> Jinja:
        chain = static_chain(node)
        if chain is None:
            raise JsError("unsupported expression", getattr(node, "pos", 0))
        root, members, pos = chain
        base, used = self.resolve(root, members, pos)
        text = base.at(ATOM) if used < len(members) else base.text
        for member in members[used:]:
            text += _prop(member)
        return Jinja(text, base.prec if used == len(members) else ATOM,
                     base.type if used == len(members) else "any")

    def _name(self, node: Name) -> Jinja:
        return self._chain(node)

    def _member(self, node: Member) -> Jinja:
        if node.prop == "length":
            return apply_filter(self.node(node.obj), "length", "num")
        if static_chain(node) is not None:
            return self._chain(node)
        obj = self.node(node.obj)
        return Jinja(obj.at(ATOM) + _prop(node.prop), ATOM, "any")

    def _index(self, node: Index) -> Jinja:
        if static_chain(node) is not None:
            return self._chain(node)
        obj = self.node(node.obj)
        return Jinja(f"{obj.at(ATOM)}[{self.node(node.index).at(COND)}]", ATOM, "any")

    def _unary(self, node: Unary) -> Jinja:
        arg = self.node(node.arg)
        if node.op == "!":
            return Jinja(f"not {arg.at(NOT)}", NOT, "bool")
        if node.op == "-":
            return Jinja(f"-{arg.at(NEG)}", NEG, "num")
        return apply_filter(arg, "float", "num")

    def _binary(self, node: Binary) -> Jinja:
        op = node.op
        left, right = self.node(node.left), self.node(node.right)
        if op in ("&&", "||"):
            word, level = ("and", AND) if op == "&&" else ("or", OR)
            type_: Type = left.type if left.type == right.type else "any"
            return Jinja(f"{left.at(level)} {word} {right.at(level + 1)}", level, type_)
        if op == "??":
            return Jinja(f"{left.at(OR)} if {left.at(OR)} is not none else {right.at(COND)}",
                         COND, right.type if left.type == right.type else "any")
        if op in ("==", "!=", "===", "!=="):
            return self._equality(node, left, right)
        if op in ("<", ">", "<=", ">="):
            return Jinja(f"{left.at(ADD)} {op} {right.at(ADD)}", COMPARE, "bool")
        if op == "+":
            if left.type == "str" or right.type == "str":
                return Jinja(f"{left.at(CONCAT)} ~ {right.at(CONCAT + 1)}", CONCAT, "str")
            type_ = "num" if left.type == right.type == "num" else "any"
            return Jinja(f"{left.at(ADD)} + {right.at(ADD + 1)}", ADD, type_)
        if op == "-":
            return Jinja(f"{left.at(ADD)} - {right.at(ADD + 1)}", ADD, "num")
        return Jinja(f"{left.at(MUL)} {op} {right.at(MUL + 1)}", MUL, "num")

    def _equality(self, node: Binary, left: Jinja, right: Jinja) -> Jinja:
        negate = node.op in ("!=", "!==")
        loose = node.op in ("==", "!=")
        for side, other in ((left, right), (right, left)):
            if side.type == "none":
                # x == null is true for null and undefined alike.
                return Jinja(f"{other.at(ADD)} is {'not ' if negate else ''}none", COMPARE,
                             "bool")
        if loose:
            # JavaScript's == compares a text with a number as numbers: '1' == 1. The
            # digits a caller pressed are text, so compare both as text.
            for side, other, side_node in ((left, right, node.left), (right, left, node.right)):
                if side.type == "num" and isinstance(side_node, Literal_) and \
                        other.type != "num":
                    as_text = literal(str(literal(side_node.value).text))
                    other_text = other if other.type == "str" else apply_filter(other, "string",
                                                                            "str")
                    left, right = (other_text, as_text) if side is right else (as_text,
                                                                               other_text)
                    break
        return Jinja(f"{left.at(ADD)} {'!=' if negate else '=='} {right.at(ADD)}", COMPARE,
                     "bool")

    def _conditional(self, node: Conditional) -> Jinja:
        test, then, otherwise = (self.node(node.test), self.node(node.then),
                                 self.node(node.otherwise))
        type_: Type = then.type if then.type == otherwise.type else "any"
        return Jinja(f"{then.at(OR)} if {test.at(OR)} else {otherwise.at(COND)}", COND, type_)

    def _call(self, node: Call) -> Jinja:
        callee = node.callee
        args = [self.node(a) for a in node.args]
        if isinstance(callee, Name):
            return self._function(callee.id, args, node)
        if isinstance(callee, Member) and isinstance(callee.obj, Name) and \
                callee.obj.id in ("Math", "JSON"):
            return self._function(f"{callee.obj.id}.{callee.prop}", args, node)
        if isinstance(callee, Member):
            return self._method(self.node(callee.obj), callee.prop, args, node, callee.pos)
        raise JsError("only functions and methods by name can be called", node.pos)

    def _arity(self, name: str, args: Sequence[Jinja], low: int, high: int, pos: int) -> None:
        if not low <= len(args) <= high:
            want = str(low) if low == high else f"{low} to {high}"
            raise JsError(f"{name}() takes {want} argument(s), not {len(args)}", pos)

    def _function(self, name: str, args: list[Jinja], node: Call) -> Jinja:
        one = {"parseInt": ("int", "num"), "parseFloat": ("float", "num"),
               "Number": ("float", "num"), "String": ("string", "str"),
               "encodeURIComponent": ("urlencode", "str"), "encodeURI": ("urlencode", "str"),
               "Math.abs": ("abs", "num"), "JSON.stringify": ("tojson", "str")}
        if name in one:
            high = 2 if name == "parseInt" else 1
            self._arity(name, args, 1, high, node.pos)
            if name == "parseInt" and len(args) == 2 and args[1].text != "10":
                raise JsError("parseInt() with a radix other than 10 is not supported",
                              node.pos)
            filt, type_ = one[name]
            return apply_filter(args[0], filt, type_)  # type: ignore[arg-type]
        if name == "Boolean":
            self._arity(name, args, 1, 1, node.pos)
            return Jinja(f"true if {args[0].at(OR)} else false", COND, "bool")
        if name in ("Math.round", "Math.floor", "Math.ceil"):
            self._arity(name, args, 1, 1, node.pos)
            how = {"Math.round": "", "Math.floor": "(0, 'floor')", "Math.ceil": "(0, 'ceil')"}
            return Jinja(f"{args[0].at(FILTER)} | round{how[name]} | int", FILTER, "num")
        if name in ("Math.max", "Math.min"):
            if not args:
                raise JsError(f"{name}() needs arguments", node.pos)
            items = ", ".join(a.at(COND) for a in args)
            return Jinja(f"[{items}] | {name[5:]}", FILTER, "num")
        raise JsError(f"the function {name}() is not supported", node.pos)

    def _method(self, obj: Jinja, name: str, args: list[Jinja], node: Call,
                pos: int) -> Jinja:
        text_obj = obj if obj.type == "str" else apply_filter(obj, "string", "str")
        simple = {"toLowerCase": ("lower", "str"), "toUpperCase": ("upper", "str"),
                  "trim": ("trim", "str"), "toString": ("string", "str")}
        if name in simple:
            self._arity(name, args, 0, 0, node.pos)
            filt, type_ = simple[name]
            return apply_filter(obj, filt, type_)  # type: ignore[arg-type]
        if name == "includes":
            self._arity(name, args, 1, 1, node.pos)
            return Jinja(f"{args[0].at(ADD)} in {obj.at(ADD)}", COMPARE, "bool")
        if name in ("startsWith", "endsWith"):
            self._arity(name, args, 1, 1, node.pos)
            return Jinja(f"{text_obj.at(ATOM)}.{name[:-5]}swith({args[0].text})", ATOM, "bool")
        if name in ("substring", "slice", "substr"):
            if name == "substr":
                raise JsError("substr() is not supported; use substring()", pos)
            self._arity(name, args, 1, 2, node.pos)
            end = args[1].at(COND) if len(args) == 2 else ""
            return Jinja(f"{obj.at(ATOM)}[{args[0].at(COND)}:{end}]", ATOM, obj.type)
        if name == "split":
            self._arity(name, args, 1, 1, node.pos)
            if args[0].text == "''":
                return apply_filter(text_obj, "list", "list")
            return Jinja(f"{text_obj.at(ATOM)}.split({args[0].text})", ATOM, "list")
        if name == "join":
            self._arity(name, args, 0, 1, node.pos)
            return apply_filter(obj, "join", "str", [args[0] if args else literal(",")])
        if name == "replace":
            self._arity(name, args, 2, 2, node.pos)
            return apply_filter(text_obj, "replace", "str", [args[0], args[1], literal(1)])
        if name == "toFixed":
            self._arity(name, args, 0, 1, node.pos)
            digits = args[0].text if args else "0"
            if not digits.isdigit():
                raise JsError("toFixed() needs a literal number of digits", node.pos)
            return Jinja(f"'%.{digits}f' | format({obj.at(COND)})", FILTER, "str")
        if name == "indexOf" and obj.type == "str":
            self._arity(name, args, 1, 1, node.pos)
            return Jinja(f"{obj.at(ATOM)}.find({args[0].text})", ATOM, "num")
        raise JsError(f"the method .{name}() is not supported", pos)


def to_jinja(node: Node, resolve: Resolver) -> Jinja:
    """``node`` as a Jinja expression; names go through ``resolve``.

    Raises:
        JsError: a construct without a Jinja equivalent here, at its offset.
    """
    return _Translator(resolve).node(node)


def translate_expression(text: str, resolve: Resolver) -> Jinja:
    """The JavaScript expression ``text`` (a ``when:``) as Jinja (``%{x}`` in it is ``x``)."""
    return to_jinja(parse(text), resolve)


# --- templates: text with ${…} ---------------------------------------------------------

@dataclass
class Template:
    """A translated SWML text: Jinja template text, and what could not be translated.

    ``single`` is the translation of the one expression when the text was exactly one
    ``${…}`` (so that a ``set`` keeps its type); ``errors`` hold offsets into the text.
    """

    text: str
    errors: list[JsError] = field(default_factory=list)
    single: Jinja | None = None
    expressions: int = 0


def jinja_text(text: str) -> str:
    """Plain ``text`` as Jinja template text that renders to itself."""
    if "{{" in text or "{%" in text or "{#" in text:
        return "{% raw %}" + text.replace("{% endraw %}", "{% endraw %}{{ '{% endraw %}' }}"
                                          "{% raw %}") + "{% endraw %}"
    return text


def _subst_end(text: str, start: int) -> int:
    """The index just past the ``}`` that closes the substitution whose body starts at
    ``start``."""
    depth = 0
    for tok in tokens(text, start):
        if tok.kind == "eof":
            raise JsError("a ${…} that is not closed with '}'", start - 2)
        if tok.kind == "subst" or (tok.kind == "op" and tok.value in ("{", "(", "[")):
            depth += 1
        elif tok.kind == "op" and tok.value in ("}", ")", "]"):
            if depth == 0:
                if tok.value != "}":
                    raise JsError(f"unbalanced '{tok.value}'", tok.pos)
                return tok.pos + 1
            depth -= 1
    raise AssertionError("unreachable")  # pragma: no cover


#: SWML's template functions written before a variable: ``${lc:x}``, ``${enc:url:x}``.
_PREFIXES = {"lc:": ("lower", "str"), "enc:url:": ("urlencode", "str")}


def translate_template(text: str, resolve: Resolver) -> Template:
    """SWML text with ``${…}``/``%{…}`` substitutions as a Jinja template.

    A substitution that does not translate is kept as written (as plain text) and listed
    in ``errors``; the rest of the text is still translated.
    """
    out: list[str] = []
    result = Template("")
    i = 0
    plain_start = 0
    translations: list[Jinja] = []
    while i < len(text):
        if text[i] in "$%" and text[i + 1:i + 2] == "{":
            body = i + 2
            try:
                end = _subst_end(text, body)
            except JsError as exc:
                result.errors.append(exc)
                break
            out.append(jinja_text(text[plain_start:i]))
            inner = text[body:end - 1]
            try:
                expr = _translate_subst(inner, resolve)
            except JsError as exc:
                result.errors.append(JsError(exc.message, body + exc.offset))
                out.append(jinja_text(text[i:end]))
            else:
                translations.append(expr)
                out.append("{{ " + expr.text + " }}")
            result.expressions += 1
            i = plain_start = end
            continue
        i += 1
    out.append(jinja_text(text[plain_start:]))
    result.text = "".join(out)
    if (len(translations) == 1 and not result.errors and text.startswith(("${", "%{"))
            and text.endswith("}") and result.text == "{{ " + translations[0].text + " }}"):
        result.single = translations[0]
    return result


def _translate_subst(inner: str, resolve: Resolver) -> Jinja:
    stripped = inner.lstrip()
    lead = len(inner) - len(stripped)
    for prefix, (filt, type_) in _PREFIXES.items():
        if stripped.startswith(prefix):
            try:
                value = translate_expression(stripped[len(prefix):], resolve)
            except JsError as exc:
                raise JsError(exc.message, lead + len(prefix) + exc.offset) from None
            return apply_filter(value, filt, type_)  # type: ignore[arg-type]
    try:
        return translate_expression(inner, resolve)
    except JsError as exc:
        raise JsError(exc.message, exc.offset) from None
