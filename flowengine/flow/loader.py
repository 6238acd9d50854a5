"""The strict YAML reader: YAML 1.2 scalars, no duplicate keys, a position for every node.

PyYAML implements YAML 1.1, where ``on``/``off``/``yes``/``no`` are booleans, ``0123`` is
octal and ``12:30`` is a sexagesimal number — so the key ``on:`` of a step would become
``True``. Editors (yaml-language-server) read YAML 1.2. This module keeps libyaml's fast C
parser (``CSafeLoader``) for the syntax and replaces the scalar rules:

========================  =====================================================
plain scalar              value
========================  =====================================================
``true``, ``false``       booleans (also ``True``/``TRUE``, ``False``/``FALSE``)
``null``, ``~``, empty    ``None`` (also ``Null``/``NULL``)
``-12``, ``0``, ``+42``   int (YAML 1.2 core: also ``0123`` = 123, ``0x1F``, ``0o17``)
``1.5``, ``-2e3``, ``.5`` float
anything else             the text as written: ``on``, ``yes``, ``no``, ``12:30``,
                          ``1_000``, ``2024-01-01``, ``.inf``, ``.nan``
========================  =====================================================

An unquoted phone number (``+15551234567``) or digit string (``0123``) is therefore a
number, as editors read it too; where the schema wants text, both report it and ``check``
says "quote it", showing the number as written (:class:`WrittenInt`). ``.inf``/``.nan``
stay text: JSON has no such numbers.

Mapping keys are always text (``1:`` is the key ``"1"``). A duplicate key is an error, as
are custom tags (``!foo``) and anything that does not fit in JSON. Merge keys (``<<``) are
YAML 1.1 only and are read as an ordinary key.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .diagnostics import ERROR, Diagnostic, FlowError
from .yamlerrors import yaml_error_diagnostic

#: A place in the document: mapping keys and list indexes from the root.
Path = tuple[str | int, ...]
#: (line, col), 1-based.
Position = tuple[int, int]

#: Larger files are refused before parsing (a flow is a few kilobytes).
MAX_FILE_BYTES = 1024 * 1024
#: Nodes after aliases are expanded; stops "billion laughs" documents.
MAX_NODES = 100_000
#: Nesting depth of mappings and lists.
MAX_DEPTH = 64

#: Longest piece of a value quoted in a message; longer ones end with "…".
MAX_QUOTE = 40


def shorten(text: str, limit: int = MAX_QUOTE) -> str:
    """``text`` cut to ``limit`` characters plus ``…``: a 100,000-digit number or a
    megabyte-long string is not echoed whole in an error."""
    return text if len(text) <= limit else text[:limit] + "…"


class UnreadableFile(Exception):
    """A flow file that :func:`read_flow_file` refuses; ``str()`` says why, for a user."""


def read_flow_file(path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the flow file ``path``, read only if it is a regular file of at most
    ``limit`` bytes.

    The file is opened with ``O_NONBLOCK`` and checked with ``fstat`` before anything is
    read: a FIFO (which would block the open until a writer comes), a device such as
    ``/dev/zero`` (which never ends) or a 2 GiB file is refused at once, never read.

    Raises:
        FileNotFoundError: the file is gone (the daemon treats that as a deletion).
        UnreadableFile: anything else; the message is the reason, without the file name.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnreadableFile(_os_reason(exc)) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UnreadableFile("cannot read the file: it is a directory")
        if not stat.S_ISREG(info.st_mode):
            kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else
                    "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else
                    "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
            raise UnreadableFile(f"cannot read the file: it is {kind}, not a regular file")
        if info.st_size > limit:
            raise UnreadableFile(f"the file is too large ({info.st_size} bytes; at most {limit})")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:  # one byte more than allowed tells a file that grew meanwhile
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise UnreadableFile(f"the file is too large (more than {limit} bytes)")
        return b"".join(chunks)
    except OSError as exc:
        raise UnreadableFile(_os_reason(exc)) from None
    finally:
        os.close(fd)


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return ("cannot read the file: it is a symbolic link loop (the link leads back to "
                "itself, directly or through other links)")
    if exc.errno == errno.EISDIR:
        return "cannot read the file: it is a directory"
    return f"cannot read the file: {exc.strerror or exc}"


def path_problem(path: str) -> str:
    """Why ``path``, which does not exist as far as ``os.path.exists`` can tell, is not
    there: a symbolic link loop, a link to nothing, or no such file."""
    if os.path.islink(path):
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return ("symbolic link loop (the link leads back to itself, directly or "
                        "through other links)")
        return (f"broken symbolic link (it points to {shorten(os.readlink(path), 80)}, "
                "which does not exist)")
    return "no such file or directory"


_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"

# YAML 1.2 core schema numbers, as editors read them (``+1555…`` and ``0123`` are numbers
# there): a flow reads what the editor shows. ``.inf``/``.nan`` stay text (no JSON for them).
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")


class _Yaml12Loader(yaml.CSafeLoader):
    """libyaml's parser with YAML 1.2 implicit scalar types instead of PyYAML's 1.1 ones."""

    # A fresh table: the 1.1 resolvers of the base class must not apply.
    yaml_implicit_resolvers: ClassVar[dict[Any, list[Any]]] = {}  # type: ignore[misc]


_Yaml12Loader.add_implicit_resolver(_BOOL, _BOOL_RE, list("tTfF"))
_Yaml12Loader.add_implicit_resolver(_NULL, _NULL_RE, ["~", "n", "N", ""])
_Yaml12Loader.add_implicit_resolver(_INT, _INT_RE, list("-+0123456789"))
_Yaml12Loader.add_implicit_resolver(_FLOAT, _FLOAT_RE, list("-+.0123456789"))


class WrittenInt(int):
    """A number written otherwise than Python prints it (``+15551234567``, ``0123``): the
    text is kept so that "quote it" can show exactly what to quote."""

    written: str

    def __new__(cls, value: int, written: str) -> WrittenInt:
        number = super().__new__(cls, value)
        number.written = written
        return number

    def __reduce__(self) -> tuple[type[WrittenInt], tuple[int, str]]:
        # copy, deepcopy and pickle rebuild it with its text (the default passes one value).
        return type(self), (int(self), self.written)


class WrittenFloat(float):
    """A float written otherwise than Python prints it (``.5``, ``+1.50``); see WrittenInt."""

    written: str

    def __new__(cls, value: float, written: str) -> WrittenFloat:
        number = super().__new__(cls, value)
        number.written = written
        return number

    def __reduce__(self) -> tuple[type[WrittenFloat], tuple[float, str]]:
        # copy, deepcopy and pickle rebuild it with its text (the default passes one value).
        return type(self), (float(self), self.written)


@dataclass(frozen=True, slots=True)
class Document:
    """A loaded YAML document: plain data plus where each part of it was written."""

    file: str
    #: dicts (str keys, in file order), lists, str, int, float, bool, None.
    data: Any
    #: path → position of the value written there.
    positions: Mapping[Path, Position]
    #: path → position of the key that names it (mapping entries only).
    key_positions: Mapping[Path, Position]

    def position(self, path: Path, *, key: bool = False) -> Position:
        """The position of ``path`` (of its key when ``key``), else of its nearest ancestor."""
        if key and path in self.key_positions:
            return self.key_positions[path]
        while path not in self.positions and path:
            path = path[:-1]
        return self.positions.get(path, (1, 1))

    def diagnostic(
        self, path: Path, message: str, *, key: bool = False, hint: str | None = None,
        severity: str = ERROR,
    ) -> Diagnostic:
        """A finding positioned at ``path``."""
        line, col = self.position(path, key=key)
        return Diagnostic(self.file, line, col, severity, message, hint)  # type: ignore[arg-type]


def _mark(node: Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def syntax_diagnostic(file: str, exc: yaml.YAMLError, text: str = "") -> Diagnostic:
    """Turn a PyYAML/libyaml exception into one positioned finding (see :mod:`.yamlerrors`)."""
    return yaml_error_diagnostic(file, exc, text)


class _Builder:
    """Walks the composed node tree into plain data, recording positions and problems."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[Path, Position] = {}
        self.key_positions: dict[Path, Position] = {}
        self.problems: list[Diagnostic] = []
        self.count = 0
        self._active: set[int] = set()

    def problem(self, node: Node, message: str) -> None:
        line, col = _mark(node)
        self.problems.append(Diagnostic(self.file, line, col, ERROR, message))

    def build(self, node: Node, path: Path, depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            if self.count == MAX_NODES + 1:
                self.problem(node, f"the document is too large (more than {MAX_NODES} values "
                             "once aliases are expanded)")
            return None
        self.positions.setdefault(path, _mark(node))
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        if depth >= MAX_DEPTH:
            self.problem(node, f"the document is nested too deeply (more than {MAX_DEPTH} levels)")
            return None
        if id(node) in self._active:
            self.problem(node, "an alias refers to the list or mapping that contains it")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ:
                    self.problem(node, f"unsupported YAML tag '{node.tag}'")
                return [self.build(item, (*path, i), depth + 1)
                        for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                if node.tag != _MAP:
                    self.problem(node, f"unsupported YAML tag '{node.tag}'")
                return self.mapping(node, path, depth)
        finally:
            self._active.discard(id(node))
        # The composer makes only those 3 kinds of node.
        self.problem(node, "unsupported YAML node")  # pragma: no cover
        return None

    def mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Position] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.problem(key_node, "a key must be plain text, not a list or mapping")
                continue
            key = key_node.value
            if key in first_seen:
                first_line = first_seen[key][0]
                self.problem(key_node, f"duplicate key '{key}' (first at line {first_line})")
                continue
            first_seen[key] = _mark(key_node)
            child = (*path, key)
            self.key_positions[child] = _mark(key_node)
            result[key] = self.build(value_node, child, depth + 1)
        return result

    def scalar(self, node: ScalarNode) -> Any:
        tag, value = node.tag, node.value
        if tag == _STR:
            return value
        if tag == _NULL:
            if _NULL_RE.match(value):
                return None
        elif tag == _BOOL:
            if _BOOL_RE.match(value):
                return value.lower() == "true"
        elif tag == _INT:
            for base in (10, 0):
                try:
                    number = int(value, base)
                except ValueError:
                    continue
                return number if str(number) == value else WrittenInt(number, value)
        elif tag == _FLOAT:
            try:
                real = float(value)
            except ValueError:
                pass
            else:
                return real if repr(real) == value else WrittenFloat(real, value)
        else:
            self.problem(node, f"unsupported YAML tag '{tag}'")
            return value
        self.problem(node, f"cannot read '{shorten(value)}' as {tag.rsplit(':', 1)[-1]}")
        return value


def load_yaml(text: str, file: str) -> Document:
    """Read one YAML document with YAML 1.2 scalar rules and positions for every node.

    Raises:
        FlowError: for a syntax error, a duplicate key, an unsupported tag or an oversized
            document — each finding with its position. Never raises a PyYAML exception.
    """
    loader = _Yaml12Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise FlowError([syntax_diagnostic(file, exc, text)]) from None
    finally:
        loader.dispose()
    if node is None:
        return Document(file, None, {(): (1, 1)}, {})
    builder = _Builder(file)
    data = builder.build(node, ())
    if builder.problems:
        raise FlowError(builder.problems)
    return Document(file, data, builder.positions, builder.key_positions)
