"""Every reference in the repository points inside the repository.

A user who clones flowengine has this repository and nothing else, so:

- no file may cite a path outside it (the project's notes in a folder beside the
  repository, an absolute path on the machine it was written on) or a document that is not
  in it (a ``something.md`` that does not exist here, the project's old "tech notes");
- every Markdown link in the docs must lead to a file of the repository;
- every ``§n`` / ``§n.m`` / ``§n X`` in code, tests and docs is a section of
  docs/relay-protocol.md, whose headings are written ``## §2 Title`` / ``### §2.8 Title``
  / ``### §8 A Title``.

The checks are plain functions over text, so the tests at the end also show each of them
catching a bad reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_DOC = ROOT / "docs" / "relay-protocol.md"
#: Where references are looked for: what a user reads (README, docs) and what a developer
#: reads (code, tests, benchmarks, tools).
_SCANNED_FILES = ("README.md", "CHANGELOG.md", "CONTRIBUTING.md")
_SCANNED_DIRS = {"docs": ("*.md",), "flowengine": ("*.py",),
                 "tests": ("*.py", "*.md", "*.yaml"), "bench": ("*.py", "*.md"),
                 "tools": ("*.py",)}
#: This file spells out the patterns it forbids.
_SELF = Path(__file__).resolve()

# Built from pieces so that no line of this file is an outside reference itself.
_OUTSIDE_PATH = re.compile(r"\.\./" + r"shared\b|/" + r"work/|(?<![\w./-])shared/"
                           r"(?:design|research|seed|hooks|relay-protocol)")
_OUTSIDE_NOTES = re.compile(r"\btech[- ]notes\b", re.IGNORECASE)
_MD_NAME = re.compile(r"(?<![\w*])((?:\.{1,2}/)?[\w][\w./-]*\.md)\b")
_MD_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")
_HEADING = re.compile(r"^#{2,4} §(\d+(?:\.\d+)?)(?: ([A-Z]))?(?=[ \t]|$)", re.MULTILINE)
_SECTION_REF = re.compile(
    r"§\s?(\d+(?:\.\d+)?)(?:\s?[–-]\s?(\d+(?:\.\d+)?))?(?: ([A-Z])(?![\w]))?")


def scanned_files() -> Iterator[Path]:
    """The files whose references must stay inside the repository."""
    for name in _SCANNED_FILES:
        if (ROOT / name).is_file():
            yield ROOT / name
    for folder, patterns in _SCANNED_DIRS.items():
        for pattern in patterns:
            for path in sorted((ROOT / folder).rglob(pattern)):
                if path.resolve() != _SELF and ".venv" not in path.parts:
                    yield path


def protocol_sections(text: str) -> set[str]:
    """The section numbers docs/relay-protocol.md has: ``{"1", "2.8", "8 A", …}``."""
    return {number + (f" {letter}" if letter else "")
            for number, letter in _HEADING.findall(text)}


def section_refs(line: str) -> list[str]:
    """The sections a line cites: ``"(§2.5–2.6, §8 A)"`` → ``["2.5", "2.6", "8 A"]``."""
    found: list[str] = []
    for first, last, letter in _SECTION_REF.findall(line):
        found.append(first + (f" {letter}" if letter and not last else ""))
        if last:
            found.append(last + (f" {letter}" if letter else ""))
    return found


def outside_refs(line: str) -> list[str]:
    """Paths or documents outside the repository that a line cites."""
    return [m.group(0) for m in _OUTSIDE_PATH.finditer(line)] + [
        m.group(0) for m in _OUTSIDE_NOTES.finditer(line)]


def _md_exists(name: str, here: Path, md_names: set[str]) -> bool:
    """Whether a cited ``x.md`` is a file of the repository: relative to the citing file,
    to the root, or (a bare name, as prose cites them) any Markdown file of that name."""
    if "/" not in name:
        return name in md_names
    for base in (here.parent, ROOT):
        target = (base / name).resolve()
        if target.is_file() and target.is_relative_to(ROOT):
            return True
    return False


def missing_documents(line: str, here: Path, md_names: set[str]) -> list[str]:
    """``*.md`` names in a line that are not files of the repository."""
    return [m.group(1) for m in _MD_NAME.finditer(line)
            if not _md_exists(m.group(1), here, md_names)]


def broken_links(line: str, here: Path) -> list[str]:
    """Relative Markdown link targets in a line that are not files of the repository."""
    broken = []
    for target in _MD_LINK.findall(line):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        resolved = (here.parent / target).resolve()
        if not (resolved.exists() and resolved.is_relative_to(ROOT)):
            broken.append(target)
    return broken


def _md_names() -> set[str]:
    return {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts
            and ".git" not in p.parts}


def _where(path: Path, number: int) -> str:
    return f"{path.relative_to(ROOT)}:{number}"


# ------------------------------------------------------------------ the repository


def test_no_reference_leaves_the_repository() -> None:
    md_names = _md_names()
    problems = []
    for path in scanned_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for ref in outside_refs(line):
                problems.append(f"{_where(path, number)}: cites {ref!r}, outside the repository")
            for name in missing_documents(line, path, md_names):
                problems.append(f"{_where(path, number)}: cites {name}, not in the repository")
            if path.suffix == ".md":
                for target in broken_links(line, path):
                    problems.append(f"{_where(path, number)}: link to {target}, not a file "
                                    f"of the repository")
    assert not problems, "\n".join(problems)


def test_every_section_reference_names_a_section_of_the_protocol_doc() -> None:
    sections = protocol_sections(PROTOCOL_DOC.read_text(encoding="utf-8"))
    problems = []
    cited = 0
    for path in scanned_files():  # docs/relay-protocol.md among them
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for ref in section_refs(line):
                cited += 1
                if ref not in sections:
                    problems.append(f"{_where(path, number)}: §{ref} is not a section of "
                                    f"docs/relay-protocol.md")
    assert not problems, "\n".join(problems)
    # The code cites the protocol doc in well over a hundred places: far fewer means the
    # pattern stopped matching, not that the references went away.
    assert cited > 100, cited


def test_the_protocol_doc_has_the_sections_the_code_relies_on() -> None:
    sections = protocol_sections(PROTOCOL_DOC.read_text(encoding="utf-8"))
    expected = {"1", "2", *(f"2.{i}" for i in range(1, 9)), "3", "4",
                *(f"4.{i}" for i in range(1, 9)), "5", *(f"5.{i}" for i in range(1, 9)),
                "6", "6.1", "6.6", "7", "8", "8 A", "9"}
    assert expected <= sections, sorted(expected - sections)


# ------------------------------------------------------------- the checks catch things


def test_the_checks_catch_outside_paths_and_documents() -> None:
    here = ROOT / "docs" / "internals.md"
    md_names = _md_names()
    notes = "sha" + "red"  # spelled in pieces: this file must not match its own check
    assert outside_refs(f"see `../{notes}/design/architecture.md`")
    assert outside_refs("Section numbers refer to /wo" f"rk/{notes}/relay-protocol.md.")
    assert outside_refs(f"({notes}/research/tech.md)")
    assert outside_refs("The rules (tech-" "notes §4):")
    assert missing_documents("Structure (models.md §3)::", here, md_names) == ["models.md"]
    assert missing_documents("see docs/nowhere.md", here, md_names) == ["docs/nowhere.md"]
    assert broken_links("[the design](../../elsewhere/architecture.md)", here)
    assert broken_links("[gone](missing.md)", here) == ["missing.md"]
    # …and leave the repository's own references alone.
    assert not outside_refs("see docs/relay-protocol.md §2.8")
    assert not missing_documents("relay-protocol.md §8 A and docs/daemon.md", here, md_names)
    assert not broken_links("[the client](relay-client.md) [web](https://example.com/x.md)",
                            here)


def test_the_checks_read_section_references_and_headings() -> None:
    assert section_refs("(§2.5–2.6, §8 A) and §4.2-4.8; §3–4") == [
        "2.5", "2.6", "8 A", "4.2", "4.8", "3", "4"]
    assert section_refs("unlike the SDK (§1 BUG); ``§n`` is a placeholder") == ["1"]
    doc = "# Title\n## §2 Sessions\n### §2.8 Reconnecting\n### §8 A Plain ws://\n#### not §9\n"
    sections = protocol_sections(doc)
    assert sections == {"2", "2.8", "8 A"}
    assert "12.3" not in sections and "2.9" not in sections
