"""What every importer returns, and how a converted flow is written out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

__all__ = ["Finding", "ImportResult", "SourceError", "dump_flow"]


@dataclass(frozen=True, slots=True)
class Finding:
    """Something of the source that did not translate as it was, at its place in the source.

    Printed as ``FILE:LINE:COL: warning: message`` by ``flowengine import``.
    """

    line: int
    col: int
    message: str
    severity: Literal["warning", "error"] = "warning"

    def format(self, file: str) -> str:
        """The compiler-style line for ``file``."""
        return f"{file}:{self.line}:{self.col}: {self.severity}: {self.message}"


class SourceError(Exception):
    """The input is not a document of that kind at all (not JSON, not a Studio flow, a
    cycle of subflows…): one clear error at a position; ``flowengine import`` exits 2."""

    def __init__(self, message: str, line: int = 1, col: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col

    def format(self, file: str) -> str:
        """The compiler-style line for ``file``."""
        return f"{file}:{self.line}:{self.col}: error: {self.message}"


@dataclass(slots=True)
class ImportResult:
    """A converted flow.

    Attributes:
        flow: the flow file's content as plain data (dicts in the order to write them).
        findings: what did not carry over, each at its source position.
        scenarios: with ``--tests``, a scenario file's content (plain data) walking each
            path the importer could infer; ``None`` when it inferred none.
        subflows: further flow files the import produced (file name → flow data), e.g.
            SWML sections called with ``execute`` or Studio subflows; written next to the
            main output.
    """

    flow: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    scenarios: dict[str, Any] | None = None
    subflows: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the order given, multi-line strings as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        """A value used twice is written twice (no ``&id001`` anchors in a flow)."""
        return True

    def choose_scalar_style(self) -> str:
        """Double quotes for text that has single quotes in it, so that a template such as
        ``'sales' in steps.menu.text`` is written as it reads, without doubled quotes."""
        style: str = super().choose_scalar_style()
        text = getattr(self.event, "value", "")
        if style == "'" and "'" in text and not any(c in text for c in '"\\\n'):
            return '"'
        return style


# Flows are read as YAML 1.2, where only true/false are booleans: `on:`, `yes`, `no` need
# no quotes (PyYAML's YAML 1.1 rules would write the key `on` as `'on'`).
_Dumper.yaml_implicit_resolvers = {
    first: [(tag, regexp) if tag != "tag:yaml.org,2002:bool"
            else (tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"))
            for tag, regexp in resolvers]
    for first, resolvers in yaml.SafeDumper.yaml_implicit_resolvers.items()
}


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_flow(data: dict[str, Any], header: str | None = None) -> str:
    """``data`` as flow YAML text, keys in their given order; ``header`` (one or more
    lines) is written first as ``#`` comments. Lines are not folded: a long template is
    easier to read on one line than cut with escapes."""
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=100_000)
    if header:
        text = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines()) + text
    return text
