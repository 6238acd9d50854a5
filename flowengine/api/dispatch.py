"""The dispatcher: takes queued calls and campaign contacts off the ledger and places them.

Structure::

    Dispatcher.run                        one loop: claim what is due, start it, sleep until
      task group                          the next thing is due (or something wakes it)
        one task per call in flight       Dialer.place(...), then the ledger and webhooks

Pacing: a daemon-wide cap (``max_outbound``) on calls in flight, and per campaign
``max_concurrent`` and ``calls_per_second`` — consecutive starts of a campaign are at least
``1 / calls_per_second`` apart (no bursts, so any one-second window holds at most
``calls_per_second`` starts, plus one where a window's edges catch two ends). Quiet hours
defer a campaign's dialling until they end. All of it counts in simulated seconds on a
simulator (``time_scale``), like the flows' own clocks.

The ledger: an entry is claimed in the store (state ``claimed``, an attempt counted)
before its dial is sent, and finished after; so after a crash the entries still
``claimed`` are exactly the dials that were in flight. :meth:`Dispatcher.run` settles
those first: outcome ``interrupted``, retried per the campaign's ``retry.interrupted``
(default: once more, at once). A stop (SIGTERM) waits for the calls in flight; those still
up when it gives up are hung up and settled the same way.

How a call is placed is a :class:`Dialer`'s business (a seam: the outbound engine plugs
in there); this module only decides when, and keeps the books.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import anyio
from anyio.abc import TaskGroup, TaskStatus

from flowengine.engine import FlowRuntime
from flowengine.engine.pacing import Pacer
from flowengine.flow import FlowVersion
from flowengine.store import CampaignRecord, LedgerEntry, NewEntry, Store

from .errors import ApiError
from .requests import DEFAULT_RETRY, CallRequest, CampaignRequest, RetryRule
from .webhooks import WebhookSender

__all__ = ["SINGLE", "DialReport", "Dialer", "Dispatcher", "FlowRef", "Observer"]

logger = logging.getLogger("flowengine.api")

#: The ledger's campaign for calls placed one by one (``POST /v1/calls``).
SINGLE = ""
#: The API's states of a call, and which are final.
STATES = ("queued", "dialing", "in_progress", "completed", "failed", "canceled")
FINAL = frozenset({"completed", "failed", "canceled"})


@dataclass(frozen=True)
class FlowRef:
    """The flow version a call runs (pinned when it is dialled) and its runtime."""

    version: FlowVersion
    runtime: FlowRuntime


@dataclass
class DialReport:
    """How one placed call went.

    ``outcome``: the dial's — ``answered``, ``machine``, ``busy``, ``no_answer``,
    ``failed``; ``status``: the flow's — ``completed`` or ``failed``; ``path``: the steps
    run, in order; ``steps``: their results; times are wall-clock seconds."""

    outcome: str
    status: str = "completed"
    path: list[str] = field(default_factory=list)
    steps: dict[str, Any] = field(default_factory=dict)
    call_id: str | None = None
    reason: str | None = None
    error: str | None = None
    answered_at: float | None = None
    ended_at: float = 0.0


class Dialer(Protocol):
    """Places one call for one flow and runs the flow on it, to the end; a cancel hangs up."""

    async def place(self, flow: FlowRef, *, to: str, from_: str | None,
                    vars: Mapping[str, Any],
                    on_answered: Callable[[str | None], None]) -> DialReport:
        """Dial ``to``, run the flow, return how it went; ``on_answered(call_id)`` as soon
        as the callee answers."""
        ...


class Observer(Protocol):
    """What the dispatcher reports (the daemon's metrics)."""

    def attempt_ended(self, flow: str, outcome: str, dial_to_answer: float | None) -> None:
        """A dial attempt ended with ``outcome``; answered ``dial_to_answer`` seconds after
        the dial (None: not answered)."""

    def campaign_progress(self, campaign: str, counts: Mapping[str, int] | None) -> None:
        """A campaign's contacts by state (None: the campaign is over, forget it)."""

    def webhook(self, result: str) -> None:
        """A webhook event was ``delivered``, ``failed`` or ``dropped``."""


class _Quiet:
    def attempt_ended(self, flow: str, outcome: str, dial_to_answer: float | None) -> None:
        pass

    def campaign_progress(self, campaign: str, counts: Mapping[str, int] | None) -> None:
        pass

    def webhook(self, result: str) -> None:
        pass


@dataclass(eq=False)
class _Live:
    """A call in flight."""

    entry: LedgerEntry
    campaign: CampaignRecord | None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    #: Why it was cut short: "canceled" (DELETE), "interrupted" (the daemon stopping).
    cut: str | None = None
    #: Held while the ledger row is written: "answered" never lands after the end.
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    settled: bool = False


def public_call_id(entry_id: int) -> str:
    """The API's id of a ledger entry."""
    return f"call_{entry_id}"


def entry_id_of(text: str) -> int | None:
    """The ledger id behind a public call id, or None when it is not one."""
    head, _, digits = text.partition("_")
    if head != "call" or not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)


def final_state(outcome: str, status: str) -> str:
    """A finished call's API state: ``failed`` when the dial could not be placed or the flow
    failed, else ``completed`` (busy and no answer included: the outcome says which)."""
    if outcome in ("failed", "interrupted") or status == "failed":
        return "failed"
    if outcome == "canceled":
        return "canceled"
    return "completed"


def in_quiet_hours(spec: Mapping[str, Any] | None, now: float) -> float:
    """Seconds until the quiet hours in ``spec`` end (0 when not in them now)."""
    if not spec:
        return 0.0
    zone = ZoneInfo(spec["timezone"])
    local = datetime.fromtimestamp(now, zone)
    minutes = local.hour * 60 + local.minute + local.second / 60
    start = _minutes(spec["start"])
    end = _minutes(spec["end"])
    inside = start <= minutes < end if start < end else (minutes >= start or minutes < end)
    if not inside:
        return 0.0
    return ((end - minutes) % (24 * 60)) * 60


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


class Dispatcher:
    """Places the ledger's calls: see the module docstring.

    Args:
        store: the open ledger.
        flows: flow name → the version served now (None: not served).
        dialer: places one call.
        max_outbound: calls in flight at once across the daemon.
        time_scale: simulated seconds per real second (pacing, retry delays): simulators only.
        webhooks: the status-event sender (None: no webhooks).
        observer: the metrics.
        drain_timeout: on :meth:`stop`, seconds the calls in flight get before they are cut.
    """

    def __init__(self, store: Store, flows: Callable[[str], FlowRef | None], dialer: Dialer, *,
                 max_outbound: int = 100, time_scale: float = 1.0,
                 webhooks: WebhookSender | None = None, observer: Observer | None = None,
                 drain_timeout: float = 30.0) -> None:
        self.store = store
        self.flows = flows
        self.dialer = dialer
        self.max_outbound = max_outbound
        self.time_scale = time_scale
        self.webhooks = webhooks
        self.observer: Observer = observer or _Quiet()
        self.drain_timeout = drain_timeout
        self.owner = f"api-{uuid.uuid4().hex[:12]}"
        self.accepting = False
        self._live: dict[int, _Live] = {}
        self._per_campaign: Counter[str] = Counter()
        self._campaigns: dict[str, CampaignRecord] = {}
        #: Every campaign seen by this process, over or not (their status URLs).
        self._known: dict[str, CampaignRecord] = {}
        self._next_start: dict[str, float] = {}
        self._pacers: dict[str, Pacer] = {}
        #: Lane (campaign id, SINGLE) → when to ask the ledger again (its last claim came
        #: back short).
        self._idle_until: dict[str, float] = {}
        self._wake = anyio.Event()
        self._stopping = False
        self._stopped = anyio.Event()
        self._tg: TaskGroup | None = None
        self._progress_at = 0.0
        #: How often the loop looks for due retries when nothing else wakes it (real s).
        self.poll_interval = max(0.02, min(1.0, time_scale))

    # ------------------------------------------------------------------ the API's side

    @property
    def in_flight(self) -> int:
        """Calls being placed or talking now."""
        return len(self._live)

    def wake(self, lane: str | None = None) -> None:
        """Look at the ledger again now (something was queued in ``lane`` or resumed)."""
        if lane is not None:
            self._idle_until.pop(lane, None)
        self._wake.set()

    async def submit(self, request: CallRequest) -> LedgerEntry:
        """Queue one call; it is placed as soon as the daemon-wide cap allows."""
        self._check_accepting()
        payload = {"vars": request.vars, "status_url": request.status_url}
        entry_id = await self.store.enqueue(SINGLE, request.to, from_number=request.from_,
                                            flow=request.flow, payload=payload)
        self.wake(SINGLE)
        entry = await self.store.get_entry(entry_id)
        assert entry is not None
        return entry

    async def create_campaign(self, request: CampaignRequest) -> CampaignRecord:
        """Create a campaign and queue its contacts, in one transaction."""
        self._check_accepting()
        record = CampaignRecord(id=f"cmp_{uuid.uuid4().hex[:16]}", flow=request.flow,
                                spec=request.spec(), state="running", created_at=time.time())
        entries = [NewEntry(to_number=c.to, from_number=request.from_, flow=request.flow,
                            payload={"vars": c.vars}) for c in request.contacts]
        await self.store.put_campaign(record, entries)
        self._campaigns[record.id] = record
        self._known[record.id] = record
        self.wake()
        return record

    async def cancel_call(self, entry_id: int) -> LedgerEntry:
        """Cancel a queued call, or hang up one in flight; ApiError 404/409 otherwise."""
        live = self._live.get(entry_id)
        if live is None and await self.store.cancel_queued(entry_id=entry_id):
            entry = await self.store.get_entry(entry_id)
            assert entry is not None
            self._send_event(entry, "completed", {})
            return entry
        live = live or self._live.get(entry_id)
        if live is not None:
            live.cut = "canceled"
            live.scope.cancel()
            with anyio.move_on_after(30):
                await live.done.wait()
        entry = await self.store.get_entry(entry_id)
        if entry is None:
            raise ApiError(404, "not_found", f"no call {public_call_id(entry_id)}")
        if live is None and entry.state != "done":
            raise ApiError(409, "conflict", "the call is being dialled by another process; "
                                            "try again")
        if live is None:
            raise ApiError(409, "already_ended",
                           f"the call has already ended ({entry.phase})")
        return entry

    async def set_campaign(self, campaign_id: str, action: str) -> CampaignRecord:
        """``pause``, ``resume`` or ``cancel`` a campaign; ApiError 404/409 when it cannot."""
        record = await self.store.get_campaign(campaign_id)
        if record is None:
            raise ApiError(404, "not_found", f"no campaign {campaign_id[:80]!r}")
        wanted, allowed = {"pause": ("paused", ("running",)),
                           "resume": ("running", ("paused",)),
                           "cancel": ("canceled", ("running", "paused"))}[action]
        if record.state == wanted:
            return record  # idempotent: pausing a paused campaign is no error
        if not await self.store.set_campaign_state(campaign_id, wanted, only_from=allowed):
            done = {"pause": "paused", "resume": "resumed", "cancel": "canceled"}[action]
            raise ApiError(409, "conflict",
                           f"the campaign is {record.state}: it cannot be {done}")
        if action == "cancel":
            await self.store.cancel_queued(campaign=campaign_id)
            self._campaigns.pop(campaign_id, None)
            self.observer.campaign_progress(campaign_id, None)
        updated = await self.store.get_campaign(campaign_id)
        assert updated is not None
        if action != "cancel":
            self._campaigns[campaign_id] = updated
        self.wake(campaign_id)
        return updated

    def _check_accepting(self) -> None:
        if not self.accepting:
            raise ApiError(503, "unavailable", "the daemon is stopping (or not yet serving): "
                                               "nothing is queued")

    # ------------------------------------------------------------------ the loop

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Settle what a previous process left in flight, then place calls until
        :meth:`stop` (or cancelled)."""
        try:
            for record in await self.store.list_campaigns(["running", "paused"]):
                self._campaigns[record.id] = record
                self._known[record.id] = record
            await self._recover()
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self.accepting = True
                task_status.started()
                while not self._stopping:
                    delay = await self._dispatch_once(tg)
                    with anyio.move_on_after(delay):
                        await self._wake.wait()
                    self._wake = anyio.Event()
                await self._drain()
        finally:
            self.accepting = False
            self._stopped.set()

    async def stop(self) -> None:
        """Stop dialling; wait up to ``drain_timeout`` for the calls in flight, hang up the
        rest (settled as interrupted: retried by policy on the next start)."""
        self.accepting = False
        self._stopping = True
        self.wake()
        await self._stopped.wait()

    async def _drain(self) -> None:
        if self._live:
            logger.info("outbound: waiting up to %g s for %d call(s) in flight",
                        self.drain_timeout, len(self._live))
        with anyio.move_on_after(self.drain_timeout):
            while self._live:
                await next(iter(self._live.values())).done.wait()
        for live in list(self._live.values()):
            live.cut = "interrupted"
            live.scope.cancel()

    async def _dispatch_once(self, tg: TaskGroup) -> float:
        """Start what may start now; the real seconds until something else may.

        A lane (the single calls, each campaign) whose claim came back short has nothing
        more due: it is not asked again before the next poll (retries come due in the
        ledger) unless something wakes it — one transaction per poll, not per loop turn."""
        waits = [self.poll_interval]
        free = self.max_outbound - len(self._live)
        now = anyio.current_time()
        if free > 0 and now >= self._idle_until.get(SINGLE, 0.0):
            entries = await self.store.claim_due(time.time(), free, self.owner,
                                                 campaign=SINGLE, phase="dialing")
            for entry in entries:
                self._start(tg, entry, None)
            if len(entries) < free:
                self._idle_until[SINGLE] = now + self.poll_interval
            free -= len(entries)
        for record in list(self._campaigns.values()):
            if free <= 0:
                break
            if record.state != "running":
                continue
            quiet = in_quiet_hours(record.spec.get("quiet_hours"), time.time())
            if quiet > 0:
                waits.append(min(quiet, 60.0))
                continue
            slots = int(record.spec.get("max_concurrent", 1)) - self._per_campaign[record.id]
            if slots <= 0:
                continue
            idle = self._idle_until.get(record.id, 0.0)
            if now < idle:
                waits.append(idle - now)
                continue
            interval = self.time_scale / float(record.spec.get("calls_per_second", 1.0))
            next_start = self._next_start.get(record.id, 0.0)
            if now < next_start:
                waits.append(next_start - now)
                continue
            # What can start within the next 100 ms at the campaign's rate: the Pacer
            # spaces them; a claim is a dial about to be sent (the crash rule).
            batch = min(slots, free, 1 + int(0.1 / interval))
            entries = await self.store.claim_due(time.time(), batch, self.owner,
                                                 campaign=record.id, phase="dialing")
            if len(entries) < batch:
                self._idle_until[record.id] = now + self.poll_interval
            if not entries:
                if self._per_campaign[record.id] == 0:
                    await self._maybe_completed(record)
                continue
            for entry in entries:
                self._start(tg, entry, record)
            free -= len(entries)
            # On schedule when the loop woke a little late (the Pacer keeps the dials
            # themselves apart); from now when it was late by a whole slot or more, so a
            # late loop never makes a burst.
            self._next_start[record.id] = (next_start if now - next_start < interval
                                           else now) + interval * len(entries)
            waits.append(interval * len(entries))
        if anyio.current_time() - self._progress_at >= 1.0:
            self._progress_at = anyio.current_time()
            for record in list(self._campaigns.values()):
                self.observer.campaign_progress(record.id, campaign_summary(
                    await self.store.entry_counts(record.id))["counts"])
        return max(0.0, min(waits))

    async def _maybe_completed(self, record: CampaignRecord) -> None:
        counts = await self.store.entry_counts(record.id)
        if any(phase not in FINAL for phase, _ in counts):
            return  # retries waiting for their time
        if await self.store.set_campaign_state(record.id, "completed", only_from=["running"]):
            logger.info("campaign %s completed: %s", record.id,
                        campaign_summary(counts)["counts"])
            self._campaigns.pop(record.id, None)
            self.observer.campaign_progress(record.id, None)

    def _start(self, tg: TaskGroup, entry: LedgerEntry, record: CampaignRecord | None) -> None:
        live = _Live(entry, record)
        self._live[entry.id] = live
        self._per_campaign[entry.campaign] += 1
        tg.start_soon(self._place, live, name=f"outbound {entry.id}")

    # ------------------------------------------------------------------ one call

    async def _place(self, live: _Live) -> None:
        entry = live.entry
        result: dict[str, Any] = dict(entry.result)
        attempts: list[dict[str, Any]] = list(result.get("attempts", []))
        attempt: dict[str, Any] = {"n": entry.attempts, "started_at": time.time()}
        report: DialReport | None = None
        try:
            ref = self.flows(entry.flow or "")
            if ref is None:
                report = DialReport(outcome="failed", status="failed",
                                    error=f"flow {entry.flow!r} is no longer served",
                                    ended_at=time.time())
            else:
                # The version is pinned here: a reload during the call changes nothing.
                result["flow_version"] = ref.version.version
                result.setdefault("created_at", entry.created_at)
                result["attempts"] = [*attempts, attempt]
                result["state"] = "dialing"  # the claim set the phase; no write here
                sent = [time.monotonic()]

                def answered(call_id: str | None) -> None:
                    attempt["answered_at"] = time.time()
                    attempt["call_id"] = call_id
                    attempt["dial_to_answer"] = (time.monotonic() - sent[0]) / self.time_scale
                    if self._tg is not None:
                        self._tg.start_soon(self._mark_answered, live, call_id)

                with live.scope:
                    if live.campaign is None:
                        report = await self.dialer.place(
                            ref, to=entry.to_number, from_=entry.from_number,
                            vars=entry.payload.get("vars") or {}, on_answered=answered)
                    else:
                        # The campaign's dials go out through its Pacer, spaced 1/rate
                        # apart at the moment they are sent: the store's worker-thread
                        # hops between the claim and the send vary, and must not let two
                        # dials bunch. (Its slots never bind: claims are capped first.)
                        async with self._pacer(live.campaign):
                            sent[0] = time.monotonic()
                            report = await self.dialer.place(
                                ref, to=entry.to_number, from_=entry.from_number,
                                vars=entry.payload.get("vars") or {}, on_answered=answered)
        except Exception as exc:  # a dialer's bug: this call fails, the others go on
            logger.exception("outbound call %s failed", public_call_id(entry.id))
            report = DialReport(outcome="failed", status="failed", error=str(exc),
                                ended_at=time.time())
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    async with live.lock:
                        live.settled = True
                        await self._settle(live, report, result, attempts, attempt)
                except Exception:
                    logger.exception("outbound call %s: the ledger could not be updated",
                                     public_call_id(entry.id))
                finally:
                    self._live.pop(entry.id, None)
                    self._per_campaign[entry.campaign] -= 1
                    live.done.set()
                    self.wake()

    def _pacer(self, record: CampaignRecord) -> Pacer:
        pacer = self._pacers.get(record.id)
        if pacer is None:
            rate = float(record.spec.get("calls_per_second", 1.0)) / self.time_scale
            pacer = Pacer(int(record.spec.get("max_concurrent", 1)), rate)
            self._pacers[record.id] = pacer
        return pacer

    async def _mark_answered(self, live: _Live, call_id: str | None) -> None:
        async with live.lock:
            if live.settled:
                return
            await self.store.update_entry(live.entry.id, phase="in_progress")
        self._send_event(live.entry, "answered", {"call_sid": call_id,
                                                  "answered_at": _iso(time.time())})

    async def _settle(self, live: _Live, report: DialReport | None, result: dict[str, Any],
                      attempts: list[dict[str, Any]], attempt: dict[str, Any]) -> None:
        entry = live.entry
        if report is None or live.cut is not None:
            outcome = live.cut or "interrupted"
            report = DialReport(outcome=outcome, status="failed" if outcome != "canceled"
                                else "completed", ended_at=time.time(),
                                answered_at=attempt.get("answered_at"),
                                call_id=attempt.get("call_id"),
                                path=list(report.path) if report is not None else [],
                                steps=dict(report.steps) if report is not None else {})
        attempt.update(outcome=report.outcome, ended_at=report.ended_at or time.time(),
                       reason=report.reason)
        result["attempts"] = [*attempts, attempt]
        result.update(outcome=report.outcome, status=report.status, path=report.path,
                      steps=report.steps, error=report.error,
                      answered_at=attempt.get("answered_at"), ended_at=attempt["ended_at"],
                      call_sid=report.call_id or attempt.get("call_id"))
        self.observer.attempt_ended(entry.flow or "", report.outcome,
                                    attempt.get("dial_to_answer"))
        retry = self._retry_rule(live.campaign, report.outcome)
        retries: dict[str, int] = dict(result.get("retries") or {})
        if retry is not None and report.outcome != "canceled" \
                and retries.get(report.outcome, 0) < retry.count:
            retries[report.outcome] = retries.get(report.outcome, 0) + 1
            result["retries"] = retries
            result["state"] = "queued"
            await self.store.finish(entry.id, report.outcome,
                                    retry_at=time.time() + retry.delay * self.time_scale,
                                    phase="queued", result=result)
            logger.info("outbound call %s to %s: %s; retry %d of %d in %g s",
                        public_call_id(entry.id), entry.to_number, report.outcome,
                        retries[report.outcome], retry.count, retry.delay)
            return
        state = final_state(report.outcome, report.status)
        result["state"] = state
        await self.store.finish(entry.id, report.outcome, phase=state, result=result)
        logger.info("outbound call %s to %s: %s, %s (%d step(s))", public_call_id(entry.id),
                    entry.to_number, report.outcome, state, len(report.path),
                    extra={"event": "outbound_ended", "flow": entry.flow,
                           "outcome": report.outcome, "state": state})
        if self._status_url(entry) is not None:
            done = await self.store.get_entry(entry.id)
            if done is not None:
                self._send_event(done, "completed", {})

    def _retry_rule(self, record: CampaignRecord | None, outcome: str) -> RetryRule | None:
        if record is not None and record.id not in self._campaigns:
            return None  # canceled meanwhile: nothing more is dialled for it
        if record is None:
            rule = DEFAULT_RETRY.get(outcome)
            return None if rule is None else RetryRule(*rule)
        spec = (record.spec.get("retry") or {}).get(outcome)
        return None if spec is None else RetryRule(int(spec["count"]), float(spec["delay"]))

    async def _recover(self) -> None:
        """Settle the dials a previous process left in flight (see the module docstring)."""
        left = await self.store.claimed_entries()
        if not left:
            return
        logger.warning("outbound: %d call(s) were in flight when the last process stopped: "
                       "settled as interrupted (retried per their campaign's "
                       "retry.interrupted)", len(left))
        campaigns: dict[str, CampaignRecord | None] = {}
        for entry in left:
            if entry.campaign not in campaigns:
                campaigns[entry.campaign] = (None if entry.campaign == SINGLE
                                             else await self.store.get_campaign(entry.campaign))
            live = _Live(entry, campaigns[entry.campaign], cut="interrupted")
            result = dict(entry.result)
            attempts = list(result.get("attempts", []))
            # The attempt the dead process recorded as started, if it got that far.
            attempt = attempts.pop() if attempts and attempts[-1].get("n") == entry.attempts \
                else {"n": entry.attempts, "started_at": entry.updated_at}
            await self._settle(live, None, result, attempts, attempt)

    # ------------------------------------------------------------------ events

    def _status_url(self, entry: LedgerEntry) -> str | None:
        if self.webhooks is None:
            return None
        url = entry.payload.get("status_url")
        record = self._known.get(entry.campaign)
        if url is None and record is not None:
            url = record.spec.get("status_url")
        return str(url) if url else None

    def _send_event(self, entry: LedgerEntry, event: str, extra: Mapping[str, Any]) -> None:
        url = self._status_url(entry)
        if url is None or self.webhooks is None:
            return
        body = {"event": event, "sent_at": time.time(), **call_view(entry), **extra}
        if event == "answered":
            body["state"] = "in_progress"
        self.webhooks.send(url, body)


def call_view(entry: LedgerEntry) -> dict[str, Any]:
    """A ledger entry as the API shows a call."""
    result = entry.result
    return {
        "id": public_call_id(entry.id),
        "campaign": entry.campaign or None,
        "flow": entry.flow,
        "flow_version": result.get("flow_version"),
        "to": entry.to_number,
        "from": entry.from_number,
        "vars": entry.payload.get("vars") or {},
        "state": entry.phase,
        "outcome": result.get("outcome") if entry.phase in FINAL
        or entry.phase == "queued" else None,
        "status": result.get("status"),
        "path": result.get("path") or [],
        "steps": result.get("steps") or {},
        "error": result.get("error"),
        "call_sid": result.get("call_sid"),
        "attempts": max(entry.attempts, len(result.get("attempts") or [])),
        "attempt_log": result.get("attempts") or [],
        "created_at": _iso(entry.created_at),
        "answered_at": _iso(result.get("answered_at")),
        "ended_at": _iso(result.get("ended_at")) if entry.phase in FINAL else None,
        "updated_at": _iso(entry.updated_at),
        "next_attempt_at": _iso(entry.next_attempt) if entry.state == "queued" else None,
        "status_url": entry.payload.get("status_url"),
    }


def campaign_summary(counts: Mapping[tuple[str, str | None], int]) -> dict[str, Any]:
    """``entry_counts`` as the API shows a campaign's progress."""
    states: Counter[str] = Counter()
    done: Counter[str] = Counter()
    for (phase, outcome), n in counts.items():
        states[phase] += n
        if phase in FINAL:
            done[outcome or phase] += n
    return {"total": sum(counts.values()),
            "counts": {"queued": states["queued"], "dialing": states["dialing"],
                       "in_progress": states["in_progress"],
                       "done": sum(done.values())},
            "done_by_outcome": dict(sorted(done.items())),
            "by_state": {s: states[s] for s in STATES if states[s]}}


def _iso(epoch: Any) -> str | None:
    if not isinstance(epoch, (int, float)) or epoch <= 0:
        return None
    from datetime import UTC
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds")
