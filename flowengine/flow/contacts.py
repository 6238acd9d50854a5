"""Contacts for a campaign from CSV text: ``to[,from][,input columns…]``, each row checked.

The first row is the header: a ``to`` column (the number to call), an optional ``from``
column (the caller id for that row), and one column per input of the flow (``inputs:``).
An empty cell is "not given" (the input's default applies). Every row is checked like the
inputs of one call (:func:`~flowengine.flow.inputs.validate_inputs`) before anything is
dialled, and every problem is reported with its line number::

    contacts.csv:4: to: '555-1234' is not a phone number in E.164 …

``flowengine dial --csv`` and the daemon's campaigns (a CSV body) both read them here.
Standard library only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .inputs import InputError, parse_number, validate_inputs

if TYPE_CHECKING:
    from .model import FlowVersion

__all__ = ["MAX_CONTACTS", "Contact", "ContactProblem", "parse_contacts"]

#: Most rows one CSV text may hold.
MAX_CONTACTS = 100_000


@dataclass(frozen=True, slots=True)
class Contact:
    """One row: who to call, from which number, with which inputs (checked, defaults in)."""

    #: The line of the CSV text the row starts on (1 is the header).
    line: int
    to: str
    #: The row's caller id; None: the flow's (or the command's) own.
    from_: str | None
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContactProblem:
    """What is wrong with one row (or the header, line 1): the column and why."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


def parse_contacts(text: str, version: FlowVersion, *, base: Mapping[str, Any] | None = None
                   ) -> tuple[list[Contact], list[ContactProblem]]:
    """The rows of ``text`` as contacts for ``version``, and every problem found.

    ``base``: input values for every row that leaves the cell empty or has no such column
    (``dial --var``); a row's own cells win.

    A header without ``to``, a column that is neither ``to``, ``from`` nor an input of the
    flow, a row with more cells than the header: problems, like each row's own (a bad
    number, a missing required input, a value of the wrong type). The contacts returned
    are the good rows only.
    """
    problems: list[ContactProblem] = []
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        return [], [ContactProblem(1, "header", f"not CSV: {exc}")]
    if header is None or not any(cell.strip() for cell in header):
        return [], [ContactProblem(1, "header", "no header row: the first row names the "
                                   "columns (to, from, and the flow's inputs)")]
    columns = [cell.strip() for cell in header]
    if "to" not in columns:
        problems.append(ContactProblem(1, "to", "the header has no to column (the number "
                                       "to call)"))
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            problems.append(ContactProblem(1, name, f"column {name!r} appears twice"))
        seen.add(name)
        if name not in ("to", "from") and name not in version.inputs:
            declared = ", ".join(version.inputs) or "none"
            problems.append(ContactProblem(1, name or "(empty)", f"column {name!r} is not "
                                           f"an input of flow {version.name} (its inputs: "
                                           f"{declared})"))
    if problems:
        return [], problems
    contacts: list[Contact] = []
    rows = 0
    try:
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # a blank line
            rows += 1
            if rows > MAX_CONTACTS:
                problems.append(ContactProblem(line, "rows", f"more than {MAX_CONTACTS} "
                                               "contacts; split the file"))
                break
            if len(cells) > len(columns):
                problems.append(ContactProblem(line, "row", f"{len(cells)} cells, but the "
                                               f"header has {len(columns)} columns"))
                continue
            row = {name: cell.strip() for name, cell in zip(columns, cells, strict=False)
                   if cell.strip()}
            contact = _contact(line, row, version, problems, base or {})
            if contact is not None:
                contacts.append(contact)
    except csv.Error as exc:
        problems.append(ContactProblem(reader.line_num, "row", f"not CSV: {exc}"))
    return contacts, problems


def _contact(line: int, row: dict[str, str], version: FlowVersion,
             problems: list[ContactProblem], base: Mapping[str, Any]) -> Contact | None:
    found: list[tuple[str, str]] = []
    to = from_ = None
    try:
        to = parse_number("to", row.get("to", ""))
    except InputError as exc:
        found += exc.problems
    if "from" in row:
        try:
            from_ = parse_number("from", row["from"])
        except InputError as exc:
            found += exc.problems
    values: dict[str, Any] = {}
    try:
        values = validate_inputs(version, {**base, **{k: v for k, v in row.items()
                                                      if k not in ("to", "from")}})
    except InputError as exc:
        found += exc.problems
    problems.extend(ContactProblem(line, name, message) for name, message in found)
    if found or to is None:
        return None
    return Contact(line, to, from_, values)
