"""Loading and hot-reloading the flows a daemon serves.

The rules (docs/daemon.md, "Hot reload", says the same for users):

- **Never act on event types.** Whatever the watcher reports (and whenever SIGHUP or the
  periodic rescan asks), :meth:`FlowLoader.rescan` lists the paths again (``*.yaml`` /
  ``*.yml`` in each directory, dotfiles skipped), hashes every file with sha256 and
  compiles only the files whose bytes changed since they were last looked at.
- A change is acted on once two looks, ``settle`` apart, agree (same bytes, or still gone):
  a file caught in the middle of an in-place write, or between an editor's rename and its
  write, is not taken for an edit.
- A file that is gone, or empty (0 bytes), is acted on only once it stayed so for
  ``grace`` (20 ``settle`` intervals, at most 2 s; 2 s by default): an editor that deletes and
  re-creates, or truncates then writes, is not taken for a deletion or an empty flow. Once
  the grace is over a deleted file's flow is removed; an empty file is rejected like any
  invalid edit (the version already serving stays).
- Listing, reading and compiling run in a worker thread, never on the event loop; a file
  is read only if it is a regular file within the size limit (a FIFO, a device or a 2 GiB
  file is refused without being read), and each compile has a time budget.
- Every changed file goes through the whole strict pipeline (``compile_flow``: YAML,
  schema, semantic checks, templates) and gets its machine built (``FlowRuntime``) before
  anything is swapped. An invalid edit is logged with its ``file:line:col`` errors, counted,
  kept as the file's ``last reload error``, and the version already serving stays.
- The result is a new immutable :class:`~flowengine.daemon.routing.Registry`, swapped in as
  one reference; calls in progress keep the entry (version and runtime) they started with.
  The swap and its log line happen in one synchronous stretch, so a call that arrives
  after the line was logged is routed with the new registry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

import anyio

from flowengine.engine import FlowRuntime
from flowengine.flow import Diagnostic, FlowVersion, compile_flow, flow_files
from flowengine.flow.compiler import COMPILE_BUDGET
from flowengine.flow.loader import UnreadableFile, read_flow_file

from .routing import FlowEntry, Registry, TieWarnings

__all__ = ["FileState", "FlowLoader", "RejectedEdit", "ReloadReport"]

logger = logging.getLogger("flowengine.daemon.reload")

#: How many looks a rescan takes at files that keep changing under it.
_SETTLE_ROUNDS = 20

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RejectedEdit:
    """An edit of a flow file that did not load; the file's previous version kept serving."""

    #: When it was rejected (seconds since the epoch).
    at: float
    #: sha256 of the rejected bytes.
    sha256: str
    #: The errors, ``file:line:col: error: message``, as ``flowengine check`` prints them
    #: (for the log; ``/healthz`` shows only ``locations``).
    errors: tuple[str, ...]
    #: Where each error is, ``file:line:col`` (or ``file``), without its message.
    locations: tuple[str, ...] = ()


@dataclass(slots=True)
class FileState:
    """What the loader knows about one flow file. Owned by the loader, never shared."""

    path: str
    #: sha256 of the bytes last compiled, valid or not: the same bytes are not compiled twice.
    seen: str
    #: The version this file serves, if any.
    entry: FlowEntry | None = None
    #: The last edit that was rejected, until a later edit loads.
    rejected: RejectedEdit | None = None
    #: sha256 of each subflow file the served version calls, as last compiled: an edit of a
    #: subflow alone recompiles the flows that call it.
    source_hashes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """What one rescan did."""

    reason: str
    #: The registry after the rescan (the same object as before when nothing was swapped).
    registry: Registry
    loaded: tuple[FlowEntry, ...] = ()
    #: (old, new) for every flow that got a new version.
    updated: tuple[tuple[FlowEntry, FlowEntry], ...] = ()
    removed: tuple[FlowEntry, ...] = ()
    #: (path, edit) for every changed file that was rejected.
    rejected: tuple[tuple[str, RejectedEdit], ...] = ()
    contexts_added: frozenset[str] = field(default_factory=frozenset)
    contexts_removed: frozenset[str] = field(default_factory=frozenset)

    @property
    def swapped(self) -> bool:
        """True when a new registry was swapped in."""
        return bool(self.loaded or self.updated or self.removed)

    @property
    def ok_count(self) -> int:
        """Files whose change was applied (a new, changed or deleted flow)."""
        return len(self.loaded) + len(self.updated) + len(self.removed)


@dataclass(slots=True)
class _Change:
    path: str
    data: bytes
    sha256: str
    #: Why the file could not be read (then ``data`` is empty and ``sha256`` hashes this).
    error: str | None = None


def _change(path: str, read: tuple[bytes, str | None]) -> _Change:
    data, error = read
    digest = hashlib.sha256(data if error is None else error.encode()).hexdigest()
    return _Change(path, data, digest, error)


async def run_in_daemon_thread(func: Callable[..., _T], *args: object) -> _T:
    """``func(*args)`` in a thread of its own that the process does not wait for at exit.

    Cancelling the caller abandons the thread: its result (or error) is dropped when it
    ends. One thread per call: reloads are rare, and a thread costs ~50 us to start.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[_T] = loop.create_future()

    def settle(result: _T | None, error: BaseException | None) -> None:
        if done.done():  # abandoned
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result, error = func(*args), None
        except BaseException as exc:  # handed to the awaiting task, which re-raises it
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is closed: nobody waits for this any more
            pass

    threading.Thread(target=work, name="flowengine-compile", daemon=True).start()
    return await done


class FlowLoader:
    """The flow files of one daemon, their states, and the registry built from them.

    Args:
        paths: directories and files, as given to ``flowengine serve``.
        settle: seconds a changed file must hold still before it is compiled (0: no check).
        grace: seconds a file must stay gone (or empty) before its flow is removed (or the
            empty file rejected); default 20 ``settle`` intervals, at most 2 s.
        budget: seconds one compile may take (a flow and its subflows); a flow over it is
            rejected and the version serving stays.
        calls_on: how many calls in flight run a version (only for the log lines).
    """

    def __init__(self, paths: Iterable[str], *, settle: float = 0.1,
                 grace: float | None = None, budget: float = COMPILE_BUDGET,
                 calls_on: Callable[[FlowVersion], int] | None = None) -> None:
        self.paths = tuple(os.fspath(p) for p in paths)
        self.settle = settle
        self.budget = budget
        self.grace = min(20 * settle, 2.0) if grace is None else grace
        # path → time.monotonic() when it was first seen gone or empty (until it is not).
        self._pending_since: dict[str, float] = {}
        # sha256 of subflow files as read by the worker thread in this rescan, so that the
        # event loop does not read them again when it applies the result.
        self._subflow_hashes: dict[str, str] = {}
        # One worker thread at a time reads and compiles: a big flow costs one core, never
        # the event loop's.
        self._worker = anyio.CapacityLimiter(1)
        self._calls_on = calls_on or (lambda _flow: 0)
        #: The registry being served: the one reference a reload swaps.
        self.registry = Registry()
        self._files: dict[str, FileState] = {}
        self._path_problems: frozenset[str] = frozenset()
        self._ties = TieWarnings()  # a tie is warned about when it appears, not every reload
        # Every version ever compiled, while something (a call, the registry) holds it: the
        # proof that a replaced version is freed once its last call ends.
        self._alive: weakref.WeakSet[FlowVersion] = weakref.WeakSet()

    @property
    def files(self) -> Mapping[str, FileState]:
        """Path → state of every flow file seen in the last rescan (read-only)."""
        return MappingProxyType(self._files)

    def versions_in_memory(self) -> list[FlowVersion]:
        """Every compiled version still referenced (serving, or held by a call in flight)."""
        return list(self._alive)

    # ---------------------------------------------------------------------- rescanning

    async def rescan(self, reason: str) -> ReloadReport:
        """List, hash, compile what changed, and swap the registry if anything did.

        A change is acted on once it was seen twice, ``settle`` seconds apart, with the
        same bytes (or the file still gone): a file caught in the middle of a write, or an
        editor's save caught between its rename and its write, is not taken for an edit.
        A file gone or empty must stay so for ``grace``. Everything but the swap runs in a
        worker thread. Never raises for a problem in a flow file; the report says what
        happened.
        """
        seen: tuple[object, ...] | None = None
        rounds = 0
        # However a file keeps changing, a rescan ends: the grace plus the settle rounds.
        give_up = time.monotonic() + self.grace + _SETTLE_ROUNDS * self.settle
        while True:
            problems, changes, gone, pending = await self._in_thread(self._look)
            if not changes and not gone and not pending:
                self._log_path_problems(problems)
                logger.debug("rescan (%s): nothing changed", reason)
                return ReloadReport(reason, self.registry)
            now = time.monotonic()
            waiting = max((self._pending_since[p] + self.grace - now for p in pending),
                          default=0.0)
            key = (tuple((c.path, c.sha256) for c in changes), tuple(gone), tuple(pending))
            rounds += 1
            if ((waiting <= 0 and (self.settle <= 0 or key == seen or rounds > _SETTLE_ROUNDS))
                    or now > give_up):
                # Still changing after all those rounds: take what is there now. An
                # incomplete file fails to compile, and the next rescan looks again.
                break
            seen = key
            await anyio.sleep(min(waiting, self.settle) if waiting > 0 and self.settle > 0
                              else max(waiting, self.settle))
        self._log_path_problems(problems)
        # Here no file is pending: one empty for all of the grace is compiled (and rejected
        # as empty), one gone for all of it is removed.
        compiled: list[tuple[_Change, FlowEntry | None, tuple[Diagnostic, ...]]] = []
        for change in changes:
            entry, diagnostics = await self._in_thread(self._compile, change)
            if entry is not None:
                self._alive.add(entry.flow)  # here, not in the thread: the loop reads it
            compiled.append((change, entry, diagnostics))
        # No await from here on: the states, the swap and the log lines are one step.
        return self._apply(reason, compiled, gone)

    async def _in_thread(self, func: Callable[..., _T], *args: object) -> _T:
        # Abandoned when the rescan is cancelled (the daemon stops): a compile never holds
        # up a drain, nor the process's exit (a daemon thread, unlike anyio's workers,
        # which the interpreter waits for at exit: up to the compile budget).
        async with self._worker:
            return await run_in_daemon_thread(func, *args)

    def _look(self) -> tuple[list[Diagnostic], list[_Change], list[str], list[str]]:
        """(path problems, changes, files gone, files gone or empty for less than the grace).

        A file gone or empty is not reported as gone or changed until it stayed so for the
        grace: it is in ``pending`` (and, if empty, also in ``changes``) meanwhile.
        """
        self._subflow_hashes = {}
        files, problems = flow_files(self.paths)
        changes, gone = self._diff(files)
        now = time.monotonic()
        waiting = {c.path for c in changes if not c.data and c.error is None} | set(gone)
        for path in list(self._pending_since):
            if path not in waiting:
                del self._pending_since[path]
        pending = []
        for path in sorted(waiting):
            since = self._pending_since.setdefault(path, now)
            if self.grace > 0 and now - since < self.grace:
                pending.append(path)
        gone = [path for path in gone if path not in pending]
        return problems, changes, gone, pending

    def _diff(self, files: list[str]) -> tuple[list[_Change], list[str]]:
        """The files whose bytes differ from the last ones compiled, and the files gone."""
        present: set[str] = set()
        changes: list[_Change] = []
        for path in sorted(set(files)):
            read = self._read(path)
            if read is None:
                continue
            present.add(path)
            change = _change(path, read)
            state = self._files.get(path)
            if (state is None or state.seen != change.sha256
                    or self._source_hashes(state) != state.source_hashes):
                changes.append(change)
        return changes, [path for path in self._files if path not in present]

    def _source_hashes(self, state: FileState) -> tuple[str, ...]:
        """The current sha256 of each subflow file the served version calls."""
        if state.entry is None or not state.entry.flow.sources:
            return ()
        hashes = []
        for source, _version in state.entry.flow.sources:
            digest = self._subflow_hashes.get(source)
            if digest is None:
                read = self._read(source)
                digest = "gone" if read is None else _change(source, read).sha256
                self._subflow_hashes[source] = digest
            hashes.append(digest)
        return tuple(hashes)

    @staticmethod
    def _read(path: str) -> tuple[bytes, str | None] | None:
        """(bytes, None), or (b"", why) for an unreadable file, or None once it is gone.

        Only a regular file within the size limit is read (a FIFO or a device is refused,
        not opened and waited on)."""
        try:
            return read_flow_file(path), None
        except FileNotFoundError:
            return None  # deleted since it was listed: treated as gone
        except UnreadableFile as exc:
            # Unreadable (permissions, a FIFO, too large…): reported like a rejected edit.
            return b"", str(exc)

    def _compile(self, change: _Change) -> tuple[FlowEntry | None, tuple[Diagnostic, ...]]:
        if change.error is not None:
            return None, (Diagnostic(change.path, None, None, "error", change.error),)
        result = compile_flow(change.data, change.path, budget=self.budget)
        if result.version is None:
            return None, result.diagnostics
        try:
            runtime = FlowRuntime(result.version)
        except Exception as exc:  # a bug, not the flow's fault; never take the daemon down
            logger.exception("%s: building the flow's machine failed", change.path)
            return None, (*result.diagnostics, Diagnostic(
                change.path, None, None, "error", f"internal error building the flow: {exc!r}"))
        entry = FlowEntry(result.version, runtime, time.time())
        # Read its subflows' hashes here, in the worker thread, for _apply.
        self._source_hashes(FileState(change.path, change.sha256, entry))
        return entry, result.diagnostics

    def _apply(self, reason: str,
               compiled: list[tuple[_Change, FlowEntry | None, tuple[Diagnostic, ...]]],
               gone: list[str]) -> ReloadReport:
        old_registry = self.registry
        now = time.time()
        loaded: list[FlowEntry] = []
        updated: list[tuple[FlowEntry, FlowEntry]] = []
        removed: list[FlowEntry] = []
        rejected: list[tuple[str, RejectedEdit, FileState]] = []

        for path in gone:
            gone_state = self._files.pop(path)
            if gone_state.entry is not None:
                removed.append(gone_state.entry)
        # Names held by files that keep what they serve, then the new versions in path order:
        # a flow name is unique among the flows one daemon serves.
        # A file whose edit failed keeps its old version, and so its name, like an unchanged one.
        replaced = {change.path for change, entry, _ in compiled if entry is not None}
        owner = {state.entry.name: path for path, state in self._files.items()
                 if state.entry is not None and path not in replaced}
        for change, entry, diagnostics in compiled:
            state = self._files.get(change.path)
            if entry is not None and owner.get(entry.name, change.path) != change.path:
                diagnostics = (*diagnostics, _name_taken(change, entry.name, owner[entry.name]))
                entry = None
            if entry is None:
                if state is None:
                    state = self._files[change.path] = FileState(change.path, change.sha256)
                state.seen = change.sha256
                # Only what made it fail: its warnings would be noise next to the errors.
                shown = [d for d in diagnostics if d.is_error] or list(diagnostics)
                edit = RejectedEdit(now, change.sha256, tuple(map(str, shown)),
                                    tuple(d.location for d in shown))
                state.rejected = edit
                rejected.append((change.path, edit, state))
                if state.entry is not None:
                    if owner.get(state.entry.name, change.path) != change.path:
                        # Its old name went to another file meanwhile: it cannot keep it.
                        removed.append(state.entry)
                        state.entry = None
                    else:
                        owner[state.entry.name] = change.path
                # The subflows as they are now: a broken subflow is reported once, not at
                # every rescan, and the next edit of one of them is noticed.
                state.source_hashes = self._source_hashes(state)
                continue
            owner[entry.name] = change.path
            if state is None:
                state = self._files[change.path] = FileState(change.path, change.sha256, entry)
                loaded.append(entry)
            else:
                state.seen, state.rejected = change.sha256, None
                if state.entry is None:
                    loaded.append(entry)
                elif state.entry.name != entry.name:
                    removed.append(state.entry)
                    loaded.append(entry)
                else:
                    updated.append((state.entry, entry))
                state.entry = entry
            state.source_hashes = self._source_hashes(state)
            for warning in diagnostics:
                logger.warning("%s", warning, extra={"file": change.path, "flow": entry.name})

        if loaded or updated or removed:
            self.registry = Registry(s.entry for s in self._files.values() if s.entry is not None)
        report = ReloadReport(
            reason, self.registry, tuple(loaded), tuple(updated), tuple(removed),
            tuple((path, edit) for path, edit, _ in rejected),
            self.registry.contexts - old_registry.contexts,
            old_registry.contexts - self.registry.contexts)
        self._log(report, rejected)
        return report

    # -------------------------------------------------------------------------- logging

    def _log(self, report: ReloadReport,
             rejected: list[tuple[str, RejectedEdit, FileState]]) -> None:
        why = f" ({report.reason})"
        for entry in report.loaded:
            logger.info("loaded flow %s@%s from %s: contexts %s, %s%s", entry.name,
                        entry.flow.short_version, entry.flow.file, ", ".join(entry.flow.contexts),
                        entry.describe_match(), why, extra=_extra(entry, "loaded"))
        for old, new in report.updated:
            in_flight = self._calls_on(old.flow)
            logger.info("reloaded flow %s from %s: %s -> %s; new calls get %s%s%s", new.name,
                        new.flow.file, old.flow.short_version, new.flow.short_version,
                        new.flow.short_version,
                        f", {in_flight} call(s) in flight stay on {old.flow.short_version}"
                        if in_flight else "", why, extra=_extra(new, "reloaded"))
        for entry in report.removed:
            in_flight = self._calls_on(entry.flow)
            logger.info("flow %s@%s removed (%s is gone or no longer defines it): it takes no "
                        "new calls%s%s", entry.name, entry.flow.short_version, entry.flow.file,
                        f"; {in_flight} call(s) in flight finish on it" if in_flight else "",
                        why, extra=_extra(entry, "removed"))
        for path, edit, state in rejected:
            keeps = (f"flow {state.entry.name} keeps serving {state.entry.flow.short_version}"
                     if state.entry is not None else "nothing loaded from it")
            logger.error("%s: edit rejected (%d error%s); %s%s", path, len(edit.errors),
                         "" if len(edit.errors) == 1 else "s", keeps, why,
                         extra={"event": "rejected", "file": path, "errors": list(edit.errors),
                                "sha256": edit.sha256})
            for line in edit.errors:
                logger.error("%s", line, extra={"event": "rejected", "file": path})
        if report.contexts_added or report.contexts_removed:
            changes = [f"+{c}" for c in sorted(report.contexts_added)]
            changes += [f"-{c}" for c in sorted(report.contexts_removed)]
            logger.info("contexts now: %s (%s)", ", ".join(sorted(report.registry.contexts))
                        or "none", ", ".join(changes), extra={"event": "contexts"})
        if report.swapped:
            for context, winner, loser in self._ties.new(report.registry):
                logger.warning("flows %s and %s take the same calls on context %s (%s): %s "
                               "wins, %s never gets them", winner.name, loser.name, context,
                               winner.describe_match(), winner.name, loser.name,
                               extra={"event": "tie"})

    def _log_path_problems(self, problems: list[Diagnostic]) -> None:
        # Only when they change: the periodic rescan must not repeat them every 10 s.
        current = frozenset(str(p) for p in problems)
        for problem in sorted(current - self._path_problems):
            logger.warning("%s", problem, extra={"event": "path"})
        self._path_problems = current


def _extra(entry: FlowEntry, event: str) -> dict[str, object]:
    return {"event": event, "flow": entry.name, "flow_version": entry.flow.version,
            "file": entry.flow.file}


_NAME_LINE = re.compile(rb"^name\s*:", re.MULTILINE)


def _name_taken(change: _Change, name: str, other: str) -> Diagnostic:
    """The cross-file check of ``flowengine check``: two files, one flow name."""
    found = _NAME_LINE.search(change.data)
    line = change.data.count(b"\n", 0, found.start()) + 1 if found else None
    return Diagnostic(change.path, line, 1 if line else None, "error",
                      f"flow name '{name}' is also used by {other}",
                      hint="flow names must be unique among the flows one daemon serves")
