"""The daemon's Prometheus metrics (``/metrics``), kept in a registry of its own.

Names and labels (documented in docs/daemon.md):

- ``flowengine_calls_active{flow,version}``: calls in flight;
- ``flowengine_calls_total{flow,version,ended}``: calls that ended, by how they ended
  (``completed``, ``caller_hangup``, ``max_duration``, ``failed``, ``drained``,
  ``session_lost``: RELAY started a new session and the call went with the old one);
- ``flowengine_calls_declined_total{context,reason}``: calls the daemon did not run
  (``no_flow``: nothing matched; ``draining``: offered while shutting down, passed on);
- ``flowengine_step_duration_seconds{flow,step,outcome}``: a histogram of step durations;
- ``flowengine_reloads_total{result}``: flow file changes applied (``ok``) or rejected
  (``failed``), the initial load included;
- ``flowengine_flow_info{flow,version,file}``: 1 for each version taking new calls;
- ``flowengine_relay_reconnects_total`` and ``flowengine_relay_connected``;
- ``flowengine_outbound_calls_total{flow,outcome}``: calls placed, by dial outcome
  (``answered``, ``machine``, ``busy``, ``no_answer``, ``failed``; through the call API
  also ``canceled`` and ``interrupted``);
- ``flowengine_dial_to_answer_seconds{flow}``: a histogram of the time from the dial to the
  answer (answered and machine calls);
- with the call API (``--api-port``): ``flowengine_outbound_in_flight``,
  ``flowengine_campaign_contacts{campaign,state}`` (``queued``, ``dialing``,
  ``in_progress``, ``done``; a campaign's series go when it is over) and
  ``flowengine_webhooks_total{result}`` (``delivered``, ``failed``, ``dropped``).
- ``flowengine_queue_size{queue}`` (callers waiting, as RELAY last told this daemon's
  calls), ``flowengine_queue_waiting{queue}`` (this daemon's callers waiting),
  ``flowengine_queue_expected_wait_seconds{queue}`` (the average of the latest waits that
  ended with an agent) and ``flowengine_queue_callers_total{queue,result}`` (``taken`` /
  ``left``): the queues of ``enqueue`` steps (§5.10).

``version`` labels carry the short version (12 hex digits), as the logs do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

import prometheus_client
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from flowengine.engine import TraceEntry
    from flowengine.engine.outbound import OutboundReport
    from flowengine.flow import FlowVersion
    from flowengine.relay import RelayClient

    from .reload import ReloadReport
    from .routing import Registry

__all__ = ["CONTENT_TYPE", "ENDED", "Metrics"]

#: The Content-Type of ``/metrics``, matching what ``generate_latest`` writes.
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: The values of the ``ended`` label.
ENDED = ("completed", "caller_hangup", "max_duration", "failed", "drained", "session_lost")
#: Callees answer after a few seconds of ringing; a ring timeout is rarely past a minute.
DIAL_BUCKETS = (1, 2.5, 5, 7.5, 10, 15, 20, 30, 45, 60, 120)
#: Steps range from a few ms (set, log) to minutes (a long recording).
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _RelayCollector(Collector):
    """Reads the RELAY client's own counters at scrape time."""

    def __init__(self) -> None:
        self.client: RelayClient | None = None

    def describe(self) -> Iterator[Metric]:
        # Describing without collecting: the client may not exist yet at registration.
        yield CounterMetricFamily("flowengine_relay_reconnects",
                                  "Times the RELAY link was re-established")
        yield GaugeMetricFamily("flowengine_relay_connected", "1 while the RELAY link is up")
        yield from self._queue_families()

    def _queue_families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily,
                                       CounterMetricFamily]:
        return (
            GaugeMetricFamily("flowengine_queue_size", "Callers waiting in the queue",
                              labels=["queue"]),
            GaugeMetricFamily("flowengine_queue_waiting",
                              "This daemon's callers waiting in the queue", labels=["queue"]),
            GaugeMetricFamily("flowengine_queue_expected_wait_seconds",
                              "Average of the latest waits that ended with an agent",
                              labels=["queue"]),
            CounterMetricFamily("flowengine_queue_callers",
                                "Callers who left the queue, by how", labels=["queue", "result"]),
        )

    def collect(self) -> Iterator[Metric]:
        client = self.client
        yield CounterMetricFamily("flowengine_relay_reconnects",
                                  "Times the RELAY link was re-established",
                                  value=client.reconnects if client is not None else 0)
        yield GaugeMetricFamily("flowengine_relay_connected", "1 while the RELAY link is up",
                                value=1 if client is not None and client.connected else 0)
        size, waiting, expected, callers = self._queue_families()
        board = client.queues.all() if client is not None else {}
        for name, figures in list(board.items()):
            size.add_metric([name], figures.size)
            waiting.add_metric([name], max(0, figures.waiting))
            expected.add_metric([name], figures.expected_wait or 0.0)
            callers.add_metric([name, "taken"], figures.taken)
            callers.add_metric([name, "left"], figures.left)
        yield from (size, waiting, expected, callers)


class Metrics:
    """Every metric of one daemon; several daemons in one process do not share them."""

    def __init__(self) -> None:
        # `_created` series double the output and nobody graphs them.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls_active = Gauge("flowengine_calls_active", "Calls in flight",
                                  ["flow", "version"], registry=r)
        self.calls = Counter("flowengine_calls", "Calls that ended, by how they ended",
                             ["flow", "version", "ended"], registry=r)
        self.declined = Counter("flowengine_calls_declined",
                                "Calls not run: no flow matched, or offered while draining",
                                ["context", "reason"], registry=r)
        self.step_duration = Histogram("flowengine_step_duration_seconds",
                                       "How long flow steps took", ["flow", "step", "outcome"],
                                       buckets=STEP_BUCKETS, registry=r)
        self.reloads = Counter("flowengine_reloads",
                               "Flow file changes applied (ok) or rejected (failed)",
                               ["result"], registry=r)
        self.flow_info = Gauge("flowengine_flow_info", "1 for each flow version taking new calls",
                               ["flow", "version", "file"], registry=r)
        for result in ("ok", "failed"):
            self.reloads.labels(result)  # shown as 0 before the first reload
        self.outbound_calls = Counter("flowengine_outbound_calls",
                                      "Calls placed, by dial outcome", ["flow", "outcome"],
                                      registry=r)
        self.dial_to_answer = Histogram("flowengine_dial_to_answer_seconds",
                                        "Time from the dial to the answer of calls placed",
                                        ["flow"], buckets=DIAL_BUCKETS, registry=r)
        self.outbound_in_flight = Gauge("flowengine_outbound_in_flight",
                                        "Outbound calls being dialled or talking", registry=r)
        self.campaign_contacts = Gauge("flowengine_campaign_contacts",
                                       "A running campaign's contacts by state",
                                       ["campaign", "state"], registry=r)
        self.webhooks = Counter("flowengine_webhooks", "Status webhook events by result",
                                ["result"], registry=r)
        self._relay = _RelayCollector()
        r.register(self._relay)

    # --- the call API's (flowengine.api.dispatch.Observer) -------------------------------

    def attempt_ended(self, flow: str, outcome: str, dial_to_answer: float | None) -> None:
        """A call-API dial attempt ended (its outcome may be ``canceled`` or
        ``interrupted``, which no ``OutboundReport`` has)."""
        self.outbound_calls.labels(flow, outcome).inc()
        if dial_to_answer is not None:
            self.dial_to_answer.labels(flow).observe(dial_to_answer)

    def campaign_progress(self, campaign: str, counts: Mapping[str, int] | None) -> None:
        """A campaign's contacts by state; None removes its series."""
        for state in ("queued", "dialing", "in_progress", "done"):
            if counts is None:
                _remove(self.campaign_contacts, campaign, state)
            else:
                self.campaign_contacts.labels(campaign, state).set(counts.get(state, 0))

    def webhook(self, result: str) -> None:
        """A status webhook event was delivered, failed or dropped."""
        self.webhooks.labels(result).inc()

    def watch_relay(self, client: RelayClient | None) -> None:
        """Report this client's reconnects and link state."""
        self._relay.client = client

    def step(self, entry: TraceEntry) -> None:
        """One step ended."""
        self.step_duration.labels(entry.flow, entry.step, entry.outcome).observe(entry.duration)

    def outbound_ended(self, flow: str, report: OutboundReport) -> None:
        """A call we placed is over (``run_outbound``'s report): its dial outcome, and
        how long the callee took to answer."""
        self.outbound_calls.labels(flow, report.outcome).inc()
        if report.dial_to_answer is not None:
            self.dial_to_answer.labels(flow).observe(report.dial_to_answer)

    def call_started(self, flow: str, version: str) -> None:
        """A call was routed to a flow version."""
        self.calls_active.labels(flow, version).inc()

    def call_ended(self, flow: str, version: str, ended: str, *, last: bool = False) -> None:
        """A call ended; ``ended`` is one of :data:`ENDED`.

        ``last``: it was the last call of a version that no longer takes calls, so its
        ``calls_active`` series goes away instead of staying at 0 forever.
        """
        self.calls.labels(flow, version, ended).inc()
        if last:
            _remove(self.calls_active, flow, version)
        else:
            self.calls_active.labels(flow, version).dec()

    def reloaded(self, report: ReloadReport, previous: Registry,
                 in_flight: Callable[[FlowVersion], int]) -> None:
        """Count a rescan's results and show which versions now take calls.

        A replaced version without calls loses its ``calls_active`` series (one with calls
        loses it when its last call ends, see :meth:`call_ended`).
        """
        if report.ok_count:
            self.reloads.labels("ok").inc(report.ok_count)
        if report.rejected:
            self.reloads.labels("failed").inc(len(report.rejected))
        if report.registry is not previous:
            serving = {id(entry.flow) for entry in report.registry.flows.values()}
            for entry in previous.flows.values():
                _remove(self.flow_info, entry.name, entry.flow.short_version, entry.flow.file)
                if id(entry.flow) not in serving and not in_flight(entry.flow):
                    _remove(self.calls_active, entry.name, entry.flow.short_version)
            for entry in report.registry.flows.values():
                self.flow_info.labels(entry.name, entry.flow.short_version, entry.flow.file).set(1)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def _remove(metric: Gauge, *labels: str) -> None:
    # Older prometheus-client versions raise KeyError for a series that does not exist.
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
