"""The daemon: one RELAY session, every inbound call routed to its flow, flows hot-reloaded.

Structure::

    Daemon.run
      RelayClient                        reader, keepalive, reconnect (its own task group)
      service task group                 reloader, watcher, periodic rescan, subscriptions,
                                         /metrics + /healthz, offers refused while draining
        calls task group                 declines, and the drain's hang-ups
        _CallTasks                       one bare asyncio task per call running
                                         Session(entry.runtime, call).run() itself;
                                         its end (books, metrics, log) in a callback

A call is routed once, when it is offered, with the registry of that moment; the task
holds that registry's entry (FlowVersion + FlowRuntime) until the call ends, so a reload
never changes a call in progress, and an old version is freed once its last call is over.

Drain (SIGTERM/SIGINT, :meth:`Daemon.request_drain`): stop taking offers and unsubscribe
every context (RELAY then offers new calls to the other daemons; any offer that still
arrives is passed on with ``calling.pass``), wait up to ``drain_timeout`` for the calls in
flight, then hang up the rest (each flow's ``on_hangup`` runs), wait up to
``hangup_grace`` for those flows to end, cancel whatever is left, and return 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.abc import Listener, SocketStream, TaskGroup, TaskStatus

from flowengine.engine import FlowRuntime, Session, SessionReport, TraceEntry
from flowengine.flow import FlowVersion
from flowengine.flow.schedules import WALL_CLOCK, Clock
from flowengine.relay import SESSION_LOST, Call, CallEnded, RelayClient, RelayConfig, RelayError
from flowengine.store import StoreError

from .api import ApiOptions, ApiService
from .durable import Durable
from .http import Response, bound_port, open_http, serve_http
from .metrics import CONTENT_TYPE, Metrics
from .reload import FlowLoader, RejectedEdit
from .routing import FlowEntry, Registry

__all__ = ["EXIT_INVALID", "EXIT_OK", "EXIT_RELAY", "Daemon"]

logger = logging.getLogger("flowengine.daemon")

EXIT_OK, EXIT_RELAY, EXIT_INVALID = 0, 1, 2
#: A call's log line names at most this many steps of its path (a goto loop can run
#: thousands); it says how many more ran.
PATH_SHOWN = 50


@dataclass(slots=True, eq=False)
class _Running:
    """One call in flight."""

    call: Call
    entry: FlowEntry
    started: float = field(default_factory=time.monotonic)
    #: True once the drain hung it up.
    drained: bool = False
    #: The steps it ran, in order, for its log line (None when INFO lines are off).
    path: list[str] | None = None


class _CallTasks:
    """The calls' tasks: one bare asyncio task per call, not a child of an anyio task group.

    An anyio 4 task-group child costs ~3 KB per call in flight on top of the asyncio task (a
    task handle with its own cancel scope, an ``Event`` with its deque, a wrapper coroutine,
    a weak-keyed task state): a third of what a call in flight held (docs/benchmarks.md).
    A call's task runs its session's ``run()`` itself, with no wrapper coroutine; what
    happens when it ends (the books, the log line, a crash) is ``on_done(running, task)``,
    called from the task's done callback. What a task group gave is kept: :meth:`cancel`,
    and :meth:`wait` for them all. The anyio cancel scopes a call enters inside its task
    (step timeouts, the shielded hang-up at its end) work as in any task; a cancel from
    here is a plain ``Task.cancel()``, delivered once.
    """

    __slots__ = ("_done_callback", "_on_done", "_tasks")

    def __init__(self, on_done: Callable[[_Running, asyncio.Task[Any]], None]) -> None:
        self._tasks: dict[asyncio.Task[Any], _Running | None] = {}
        self._on_done = on_done
        self._done_callback = self._done  # one bound method, not one per call

    def start(self, coro: Coroutine[Any, Any, Any], name: str,
              running: _Running | None = None) -> None:
        """Run ``coro`` in a task of its own; ``on_done(running, task)`` when it ends (with
        ``running``; without, an exception is logged)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks[task] = running
        task.add_done_callback(self._done_callback)

    def _done(self, task: asyncio.Task[Any]) -> None:
        running = self._tasks.pop(task, None)
        if running is not None:
            self._on_done(running, task)
        elif not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("%s failed", task.get_name(), exc_info=exc)

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def wait(self) -> None:
        """Wait until every task has ended. If this wait is cancelled, the tasks are
        cancelled and waited for (shielded) before the cancellation goes on."""
        try:
            while self._tasks:
                await asyncio.wait(list(self._tasks))
        except BaseException:
            self.cancel()
            with anyio.CancelScope(shield=True):
                while self._tasks:
                    await asyncio.wait(list(self._tasks))
            raise


class Daemon:
    """``flowengine serve``: runs every inbound call of the flows' contexts through its flow.

    Args:
        paths: flow directories and files.
        config: where RELAY is, and the credentials.
        time_scale: the flows' own clocks (step timeouts, max_duration) run this much
            faster; only for simulators.
        drain_timeout: seconds the calls in flight get to finish after a drain request.
        hangup_grace: seconds the flows of calls hung up by the drain get for their
            ``on_hangup`` steps.
        watch: watch the flow directories for changes (otherwise SIGHUP and the periodic
            rescan only).
        force_polling: poll instead of inotify (network file systems).
        rescan_interval: seconds between rescans by hash (0: never).
        settle: seconds a changed file must hold still before it is compiled.
        metrics_host, metrics_port: where ``/metrics`` and ``/healthz`` are served
            (``metrics_port=None``: not at all; 0: any free port, see :attr:`metrics_port`).
        on_step: called with every step of every call (the ``--trace`` writer).
        api: serve the call API (``--api-port``, docs/api.md); None: not at all.
        clock: where the calls' templates read the time (``now()``, ``is_open()``): the
            wall clock, or with ``--simulate --at`` a set one.
        durable: the state store (checkpoints, resume after a restart), or None.

    Create it inside the event loop (it makes anyio events and streams), then ``await
    daemon.run()``.

    Attributes:
        loader: the flow files and the registry being served.
        metrics: the Prometheus metrics.
        relay: the RELAY client while running.
        state: ``starting``, ``serving``, ``draining`` or ``stopped``.
        metrics_port: the bound port of the HTTP endpoint, once running.
    """

    def __init__(self, paths: Sequence[str], config: RelayConfig, *, time_scale: float = 1.0,
                 drain_timeout: float = 30.0, hangup_grace: float = 10.0, watch: bool = True,
                 force_polling: bool = False, rescan_interval: float = 10.0,
                 settle: float = 0.1, metrics_host: str = "127.0.0.1",
                 metrics_port: int | None = None,
                 on_step: Callable[[TraceEntry], None] | None = None,
                 clock: Clock = WALL_CLOCK,
                 api: ApiOptions | None = None,
                 durable: Durable | None = None) -> None:
        self.paths = tuple(paths)
        #: The state store's side (--state-dir/--store), or None: calls do not outlive
        #: the process (daemon/durable.py).
        self.durable = durable
        self.clock = clock
        self.config = config
        self.time_scale = time_scale
        self.drain_timeout = drain_timeout
        self.hangup_grace = hangup_grace
        self.watch = watch
        self.force_polling = force_polling
        self.rescan_interval = rescan_interval
        self.metrics_host = metrics_host
        self.metrics_port = metrics_port
        self._want_http = metrics_port is not None
        self._on_step_hook = on_step
        self.loader = FlowLoader(self.paths, settle=settle, calls_on=self._calls_on)
        self.metrics = Metrics()
        if durable is not None:  # durable: resumed and lost calls on /metrics
            self.metrics.registry.register(durable.collector)
        self.relay: RelayClient | None = None
        self.state = "starting"
        self._running: dict[str, _Running] = {}
        self._call_tasks = _CallTasks(self._call_ended)
        #: (flow name, version) → calls in flight on it.
        self._in_flight: Counter[tuple[str, str]] = Counter()
        self._idle = anyio.Event()
        self._idle.set()
        self._reload_send, self._reload_recv = anyio.create_memory_object_stream[str](1)
        self._subscriptions_changed = anyio.Event()
        self._drain_requested = anyio.Event()
        self._hurry = anyio.Event()
        self._watch_stop = anyio.Event()
        self._serving = anyio.Event()
        self._started_at = time.time()
        self.api_options = api
        #: The call API while running (its port: ``api.port``).
        self.api: ApiService | None = None

    # ------------------------------------------------------------------ control

    @property
    def registry(self) -> Registry:
        """The flows taking new calls now (an immutable snapshot)."""
        return self.loader.registry

    @property
    def calls_in_flight(self) -> int:
        """How many calls are running."""
        return len(self._running)

    async def wait_serving(self) -> None:
        """Wait until calls are being taken (forever if the daemon never gets there)."""
        await self._serving.wait()

    def request_reload(self, reason: str = "requested") -> None:
        """Rescan the flow files soon (SIGHUP). Requests made during a rescan coalesce
        into one more rescan."""
        try:
            self._reload_send.send_nowait(reason)
        except anyio.WouldBlock:
            pass  # one is pending already; it will see this change too
        except anyio.ClosedResourceError:
            pass  # stopped

    def request_drain(self) -> None:
        """Stop taking calls and shut down (SIGTERM/SIGINT). A second request skips the
        rest of the wait and hangs up the calls still in flight."""
        if self._drain_requested.is_set():
            if not self._hurry.is_set():
                logger.warning("second stop request: hanging up the %d call(s) still in flight",
                               len(self._running))
            self._hurry.set()
        self._drain_requested.set()

    # ------------------------------------------------------------------- running

    async def run(self, *, task_status: TaskStatus[Daemon] = anyio.TASK_STATUS_IGNORED) -> int:
        """Load the flows, connect, serve until a drain request, and return the exit code.

        ``task_status.started(self)`` is called once calls are being taken.

        Returns:
            0 after a drain; 1 when RELAY could not be reached or refused the credentials,
            or the metrics port could not be bound; 2 when no flow could be loaded.
        """
        await self._reload("startup")
        if not self.registry.flows:
            logger.error("no valid flow to serve in %s", ", ".join(self.paths))
            return EXIT_INVALID
        if self.durable is not None:  # durable: the versions' text, before any call
            await self.durable.store_versions(self.registry)
        listener = None
        if self._want_http:
            # Bound before connecting: a taken port is a configuration error, reported at once.
            try:
                listener = await open_http(self.metrics_host, self.metrics_port or 0)
            except OSError as exc:
                logger.error("cannot serve /metrics on %s:%s: %s", self.metrics_host,
                             self.metrics_port, exc)
                return EXIT_RELAY
            self.metrics_port = bound_port(listener)
        if self.api_options is not None:
            api = ApiService(self, self.api_options)
            try:
                await api.open()
            except (OSError, StoreError) as exc:
                logger.error("cannot serve the call API on %s:%s: %s", self.api_options.host,
                             self.api_options.port, exc)
                if listener is not None:
                    await listener.aclose()
                return EXIT_RELAY
            self.api = api
        contexts = sorted(self.registry.contexts)
        logger.info("connecting to %s (contexts %s)", self.config.url, ", ".join(contexts))
        try:
            client = RelayClient(self.config, contexts)
            if self.durable is not None:  # durable: resume the previous session, if any
                self.durable.attach(client)
            async with client as relay:
                self.relay = relay
                self.metrics.watch_relay(relay)
                return await self._serve(relay, listener, task_status)
        except RelayError as exc:
            logger.error("cannot connect to RELAY: %s", exc)
            return EXIT_RELAY
        finally:
            self.state = "stopped"
            self._reload_send.close()
            if listener is not None:
                with anyio.CancelScope(shield=True):
                    await listener.aclose()

    async def _serve(self, relay: RelayClient, listener: Listener[SocketStream] | None,
                     task_status: TaskStatus[Daemon]) -> int:
        async with anyio.create_task_group() as service:
            try:
                if listener is not None:
                    service.start_soon(serve_http, listener, {
                        "/metrics": self._metrics_response, "/healthz": self._health_response},
                        name="metrics endpoint")
                    logger.info("metrics on http://%s:%d/metrics, health on /healthz",
                                self.metrics_host, self.metrics_port)
                if self.durable is not None:  # durable: batcher, heartbeat, resumed calls
                    await service.start(self.durable.run, name="state store")
                    await self.durable.resume(
                        relay, self.registry, self._start_resumed, on_step=self._on_step,
                        time_scale=self.time_scale, keep_trace=False, clock=self.clock,
                        resolver=self._resolve_flow)
                service.start_soon(self._reloader, name="flow reloader")
                if self.watch:
                    service.start_soon(self._watcher, name="flow watcher")
                if self.rescan_interval > 0:
                    service.start_soon(self._periodic_rescan, name="periodic rescan")
                service.start_soon(self._subscriber, relay, name="context subscriptions")
                if self.api is not None:
                    await service.start(self.api.run, relay, name="call API")
                async with anyio.create_task_group() as calls:
                    try:
                        self.state = "serving"
                        logger.info("serving %d flow(s): %s", len(self.registry.flows),
                                    ", ".join(f"{e.name}@{e.flow.short_version}"
                                              for e in self.registry.flows.values()))
                        self._serving.set()
                        task_status.started(self)
                        await self._take_calls(relay, calls)
                        await self._drain(relay, calls, service)
                        if self.api is not None:
                            await self.api.finished.wait()
                    finally:
                        # Cancelled (the daemon's caller gave up): cancel the calls too.
                        await self._call_tasks.wait()
            finally:
                # awatch's thread only notices its stop event: set it before the group waits.
                self._watch_stop.set()
                service.cancel_scope.cancel()
        logger.info("stopped")
        return EXIT_OK

    async def _take_calls(self, relay: RelayClient, calls: TaskGroup) -> None:
        """Route every offered call until a drain is requested."""
        async with anyio.create_task_group() as tg:

            async def stop_on_drain() -> None:
                await self._drain_requested.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(stop_on_drain)
            async for call in relay.incoming_calls():
                self._dispatch(call, calls)
            tg.cancel_scope.cancel()  # the client closed

    def _book_call(self, call: Call, entry: FlowEntry) -> _Running:
        """A call starts on ``entry`` (new, or resumed after a restart): it counts as in
        flight on its version, keeps the daemon from being idle, and shows in the metrics."""
        running = _Running(call, entry)
        if logger.isEnabledFor(logging.INFO):
            running.path = []
        self._running[call.call_id] = running
        self._in_flight[(entry.name, entry.flow.version)] += 1
        if self._idle.is_set():
            self._idle = anyio.Event()
        self.metrics.call_started(entry.name, entry.flow.short_version)
        return running

    def _dispatch(self, call: Call, calls: TaskGroup) -> None:
        # One read of the registry reference: this call's flow is decided here, for good.
        registry = self.registry
        entry = registry.route(call.context, call.from_number, call.to_number)
        if entry is None:
            calls.start_soon(self._decline, call, _why_unmatched(call, registry),
                             name=f"decline {call.call_id}")
            return
        running = self._book_call(call, entry)
        if logger.isEnabledFor(logging.DEBUG):
            # At INFO a call has one line, when it ends (_call_ended).
            logger.debug("call from %s to %s on context %s", call.from_number or "?",
                        call.to_number or "?", call.context, extra={
                            **_call_extra(call, entry.flow), "event": "call_started",
                            "context": call.context, "from": call.from_number,
                            "to": call.to_number})
        try:
            # The steps go to the metrics, the log and --trace as they run; none is kept.
            session = Session(entry.runtime, call, on_step=self._on_step,
                              time_scale=self.time_scale, keep_trace=False,
                              resolver=self._resolve_flow, clock=self.clock)
            if self.durable is not None:  # durable: checkpointed from now on
                self.durable.call_started(call, entry, session)
            run = session.run()
        except Exception as exc:  # a bug: the call crashes as if run() raised
            run = _raise(exc)
        # The task runs the session itself: no wrapper coroutine held per call in flight.
        self._call_tasks.start(run, f"call {call.call_id}", running)

    async def _resolve_flow(self, name: str) -> FlowRuntime:
        """A ``transfer`` step's flow: the version of it served now (the routing table of
        this moment); the call keeps that version to its end."""
        entry = self.registry.flows.get(name)
        if entry is None:
            raise LookupError(f"no flow named {name!r} is being served")
        return entry.runtime

    # durable: a call of the previous process, resumed from its checkpoint
    def _start_resumed(self, call: Call, entry: FlowEntry, session: Session) -> None:
        running = self._book_call(call, entry)
        if self.durable is not None:
            self.durable.call_started(call, entry, session)
        self._call_tasks.start(session.run(), f"call {call.call_id}", running)

    def _call_ended(self, running: _Running, task: asyncio.Task[SessionReport]) -> None:
        """A call's task ended: the books, the metrics and its log line."""
        call, flow = running.call, running.entry.flow
        if self.durable is not None:  # durable: its checkpoint goes
            self.durable.call_ended(call.call_id)
        report: SessionReport | None = None
        crash: BaseException | None = None
        if not task.cancelled():
            crash = task.exception()
            if crash is None:
                report = task.result()
        ended = "failed" if crash is not None else _how_it_ended(report, running.drained)
        self._running.pop(call.call_id, None)
        key = (flow.name, flow.version)
        self._in_flight[key] -= 1
        last = self._in_flight[key] <= 0
        if last:
            del self._in_flight[key]
        current = self.registry.flows.get(flow.name)
        retired = current is None or current.flow is not flow
        self.metrics.call_ended(flow.name, flow.short_version, ended, last=last and retired)
        if not self._running:
            self._idle.set()
        took = time.monotonic() - running.started
        if crash is not None:
            # A bug in the engine, not the flow: this call fails, the daemon and the other
            # calls go on; the call is hung up if it is still there.
            logger.error("call crashed", exc_info=crash, extra=_call_extra(call, flow))
            if not call.ended:
                self._call_tasks.start(self._hang_up(call, "error"), f"hang up {call.call_id}")
        elif report is None:
            logger.warning("call cancelled after %.2f s (shutdown)", took,
                           extra={**_call_extra(call, flow), "event": "call_ended",
                                  "ended": ended})
        elif logger.isEnabledFor(logging.INFO):
            # The call's one line at INFO: how it ended, the steps it took, how long.
            path = running.path or []
            more = report.steps_run - len(path)
            shown = " > ".join(path) + (f" > … (+{more})" if more > 0 else "")
            if len(report.flows) > 1:
                shown += f" (transferred: {' > '.join(report.flows)})"
            logger.info("call ended: %s after %d step(s) (%s), from %s to %s: %s", ended,
                        report.steps_run, report.end_reason or "no end reason",
                        call.from_number or "?", call.to_number or "?",
                        shown or "no step", extra={
                            **_call_extra(call, flow), "event": "call_ended", "ended": ended,
                            "status": report.status, "end_reason": report.end_reason,
                            "error": report.error, "path": path, "steps": report.steps_run,
                            "from": call.from_number, "to": call.to_number,
                            "context": call.context, "duration": took,
                            "flows": list(report.flows)})

    def _on_step(self, entry: TraceEntry) -> None:
        if self.durable is not None:  # durable: a step boundary
            self.durable.step(entry.call_id)
        self.metrics.step(entry)
        running = self._running.get(entry.call_id)
        if running is not None and running.path is not None and len(running.path) < PATH_SHOWN:
            running.path.append(f"{entry.within}/{entry.step}" if entry.within else entry.step)
        if self._on_step_hook is not None:
            self._on_step_hook(entry)

    async def _decline(self, call: Call, why: str) -> None:
        logger.warning("call %s declined: %s", call.call_id, why, extra={
            "call_id": call.call_id, "event": "declined", "context": call.context,
            "from": call.from_number, "to": call.to_number, "reason": "no_flow"})
        self.metrics.declined.labels(call.context, "no_flow").inc()
        try:
            await call.hangup("decline")
        except RelayError as exc:
            logger.warning("call %s: declining failed: %s", call.call_id, exc,
                           extra={"call_id": call.call_id})

    # --------------------------------------------------------------------- drain

    async def _drain(self, relay: RelayClient, calls: TaskGroup, service: TaskGroup) -> None:
        self.state = "draining"
        if self.api is not None:
            # Outbound calls drain on their own clock (the same timeout), beside these.
            self.api.stop()
        self._subscriptions_changed.set()  # unsubscribe everything: offers go elsewhere
        service.start_soon(self._refuse_offers, relay, service, name="refuse offers")
        logger.info("draining: %d call(s) in flight get up to %g s to finish; no new calls",
                    len(self._running), self.drain_timeout, extra={"event": "drain"})
        if not await self._wait_idle(self.drain_timeout):
            left = list(self._running.values())
            logger.warning("drain: hanging up %d call(s) still in flight (their on_hangup runs)",
                           len(left), extra={"event": "drain"})
            for running in left:
                running.drained = True
                calls.start_soon(self._hang_up, running.call)
            if not await self._wait_idle(self.hangup_grace, hurry=False):
                logger.warning("drain: %d call(s) did not end within %g s: cancelled",
                               len(self._running), self.hangup_grace, extra={"event": "drain"})
                self._call_tasks.cancel()
                calls.cancel_scope.cancel()
        logger.info("drained", extra={"event": "drain"})

    async def _wait_idle(self, timeout: float, *, hurry: bool = True) -> bool:
        """Wait until no call is in flight; False if ``timeout`` (or a hurry request) came first."""
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as tg:
                if hurry:

                    async def on_hurry() -> None:
                        await self._hurry.wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(on_hurry)
                while self._running:
                    await self._idle.wait()
                tg.cancel_scope.cancel()
        return not self._running

    async def _hang_up(self, call: Call, reason: str = "hangup") -> None:
        try:
            await call.hangup(reason)
        except RelayError as exc:
            logger.warning("call %s: hanging up failed: %s", call.call_id, exc,
                           extra={"call_id": call.call_id})

    async def _refuse_offers(self, relay: RelayClient, service: TaskGroup) -> None:
        """While draining, hand every offered call back to RELAY for another daemon."""
        async for call in relay.incoming_calls():
            service.start_soon(self._pass_on, call)

    async def _pass_on(self, call: Call) -> None:
        self.metrics.declined.labels(call.context, "draining").inc()
        try:
            await call.execute("pass")
            logger.info("call %s offered while draining: passed on to another session",
                        call.call_id, extra={"call_id": call.call_id, "event": "passed"})
        except CallEnded:
            pass
        except RelayError as exc:
            logger.warning("call %s offered while draining: could not pass it on (%s): declined",
                           call.call_id, exc, extra={"call_id": call.call_id})
            with contextlib.suppress(RelayError):
                await call.hangup("decline")

    # ----------------------------------------------------------------- reloading

    async def _reloader(self) -> None:
        """The only task that rescans: rescans never overlap."""
        async for reason in self._reload_recv:
            # In a function of its own: its frame, which holds the replaced registry, is
            # gone when it returns, so nothing here keeps an old version alive.
            await self._reload(reason)

    async def _reload(self, reason: str) -> None:
        previous = self.registry
        try:
            report = await self.loader.rescan(reason)
        except Exception:  # a bug in a rescan must not stop the calls
            logger.exception("rescan (%s) failed; the flows being served are unchanged", reason)
            self.metrics.reloads.labels("failed").inc()
            return
        self.metrics.reloaded(report, previous, self._calls_on)
        if self.durable is not None:  # durable: the new versions' text
            await self.durable.store_versions(self.registry)
        if report.contexts_added or report.contexts_removed:
            self._subscriptions_changed.set()

    async def _watcher(self) -> None:
        """Rescan on any change in the watched directories (never acting on event types)."""
        from watchfiles import DefaultFilter, awatch

        directories = sorted({p if os.path.isdir(p) else os.path.dirname(p) or "."
                              for p in self.paths})
        while not self._watch_stop.is_set():
            try:
                # Recursive: subflows (flows/lib/) live below the flow directories, and an
                # edit of one must reload the flows that call it. Other changes below cost
                # a rescan that finds nothing new.
                async for changes in awatch(*directories, watch_filter=DefaultFilter(),
                                            recursive=True, stop_event=self._watch_stop,
                                            force_polling=self.force_polling or None):
                    names = sorted({os.path.basename(path) for _, path in changes})
                    self.request_reload(f"changed: {', '.join(names)}")
            except Exception as exc:  # see below
                # A watched directory vanished, inotify ran out of watches…: the periodic
                # rescan still sees every change; try watching again later.
                logger.warning("watching %s failed (%s); retrying in %g s", ", ".join(directories),
                               exc, max(self.rescan_interval, 1.0))
                await anyio.sleep(max(self.rescan_interval, 1.0))

    async def _periodic_rescan(self) -> None:
        while True:
            await anyio.sleep(self.rescan_interval)
            self.request_reload("periodic rescan")

    async def _subscriber(self, relay: RelayClient) -> None:
        """Keep the RELAY subscriptions equal to the served contexts (none while draining)."""
        while True:
            await self._subscriptions_changed.wait()
            self._subscriptions_changed = anyio.Event()
            want = set() if self.state == "draining" else set(self.registry.contexts)
            have = set(relay.contexts)
            try:
                if want - have:
                    await relay.receive(sorted(want - have))
                    logger.info("now receiving calls on context(s) %s",
                                ", ".join(sorted(want - have)), extra={"event": "receive"})
                if have - want:
                    await relay.unreceive(sorted(have - want))
                    logger.info("no longer receiving calls on context(s) %s",
                                ", ".join(sorted(have - want)), extra={"event": "unreceive"})
            except RelayError as exc:
                logger.warning("updating the RELAY subscriptions failed (%s); retrying", exc)
                await anyio.sleep(1.0)
                self._subscriptions_changed.set()

    # ------------------------------------------------------------ observability

    def _calls_on(self, flow: FlowVersion) -> int:
        return self._in_flight.get((flow.name, flow.version), 0)

    def _metrics_response(self) -> Response:
        return 200, CONTENT_TYPE, self.metrics.render()

    def _health_response(self) -> Response:
        health = self.health()
        status = 200 if health["status"] == "serving" else 503
        return status, "application/json", (json.dumps(health, indent=2) + "\n").encode()

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` shows: the state, RELAY, and per flow its version, file,
        loaded-at, calls and last reload error. Never any credential."""
        relay = self.relay
        connected = relay is not None and relay.connected
        status = self.state if self.state != "serving" or connected else "disconnected"
        per_version: dict[str, dict[str, int]] = {}
        for (name, version), count in self._in_flight.items():
            per_version.setdefault(name, {})[version[:12]] = count
        files = self.loader.files
        flows: dict[str, Any] = {}
        for name, entry in self.registry.flows.items():
            state = files.get(entry.flow.file)
            rejected = state.rejected if state is not None else None
            flows[name] = {
                "version": entry.flow.version,
                "short_version": entry.flow.short_version,
                "file": entry.flow.file,
                "contexts": list(entry.flow.contexts),
                "match": dict(entry.flow.match),
                "loaded_at": _iso(entry.loaded_at),
                "calls_in_flight": per_version.get(name, {}),
                "last_reload_error": None if rejected is None else _rejected(rejected),
            }
        invalid = {path: _rejected(s.rejected)
                   for path, s in files.items() if s.entry is None and s.rejected is not None}
        return {
            "status": status,
            "started_at": _iso(self._started_at),
            "relay": {
                "url": self.config.shown_url,
                "connected": connected,
                "reconnects": relay.reconnects if relay is not None else 0,
                "contexts": sorted(relay.contexts) if relay is not None else [],
            },
            "calls_in_flight": len(self._running),
            "flows": flows,
            "invalid_files": invalid,
            "versions_in_memory": len(self.loader.versions_in_memory()),
            **({} if self.api is None else {"api": self.api.health()}),
        }


async def _raise(exc: Exception) -> SessionReport:
    raise exc


def _call_extra(call: Call, flow: FlowVersion) -> dict[str, Any]:
    return {"call_id": call.call_id, "flow": flow.name, "flow_version": flow.version}


def _why_unmatched(call: Call, registry: Registry) -> str:
    """The reason a declined call's log line gives."""
    candidates = registry.candidates(call.context)
    if not candidates:
        return f"no flow takes context {call.context!r}"
    tried = "; ".join(f"{e.name} ({e.describe_match()})" for e in candidates)
    return (f"no flow on context {call.context!r} matches from {call.from_number} "
            f"to {call.to_number} (flows there: {tried})")


def _how_it_ended(report: SessionReport | None, drained: bool) -> str:
    """The ``ended`` label of a finished call."""
    if report is None or drained:
        return "drained"
    if report.end_reason == SESSION_LOST:
        # Not the caller: the RELAY session went, and the call with it (its actions
        # ended "hangup" locally, which would otherwise read as the caller's doing).
        return "session_lost"
    if report.status != "completed":
        return "failed"
    if report.note:
        return "max_duration"
    return "caller_hangup" if report.caller_hung_up else "completed"


def _rejected(edit: RejectedEdit) -> dict[str, Any]:
    """A rejected edit as ``/healthz`` shows it: when, which bytes, how many errors and
    where — never the messages, which quote the file (the health endpoint has no auth)."""
    return {"at": _iso(edit.at), "sha256": edit.sha256, "error_count": len(edit.errors),
            "locations": list(edit.locations)}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds")
