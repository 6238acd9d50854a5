"""The call API in ``serve`` (``--api-port``): the ledger, the dispatcher, the webhooks and
the HTTP server, wired to the daemon's flows, RELAY client and metrics (docs/api.md)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from flowengine.api.app import MAX_BODY, build_app
from flowengine.api.dialer import RelayDialer, check_call
from flowengine.api.dispatch import Dispatcher, FlowRef
from flowengine.api.errors import ApiError
from flowengine.api.server import ApiServer
from flowengine.api.webhooks import WebhookSender
from flowengine.store import Store
from flowengine.store.sqlite import SQLiteStore

from .durable import default_state_dir

if TYPE_CHECKING:
    from flowengine.relay import RelayClient

    from .server import Daemon

__all__ = ["ApiOptions", "ApiService", "default_state_dir"]

logger = logging.getLogger("flowengine.daemon")


@dataclass(frozen=True)
class ApiOptions:
    """How the call API is served. ``token`` and ``webhook_secret`` never show in a repr."""

    port: int
    host: str = "127.0.0.1"
    token: str | None = field(default=None, repr=False)
    webhook_secret: bytes | None = field(default=None, repr=False)
    state_dir: str = field(default_factory=default_state_dir)
    max_outbound: int = 100
    max_body: int = MAX_BODY
    default_from: str | None = None
    #: Seconds before a webhook's second try (doubled after each); tests shorten it.
    webhook_backoff: float = 1.0
    #: Seconds one webhook try may take.
    webhook_timeout: float = 5.0
    #: Seconds the last webhook events get to go out when the daemon stops.
    webhook_flush: float = 5.0


class ApiService:
    """The call API of one daemon."""

    def __init__(self, daemon: Daemon, options: ApiOptions) -> None:
        self.daemon = daemon
        self.options = options
        self.store: Store = SQLiteStore(options.state_dir)
        self.webhooks = WebhookSender(options.webhook_secret, backoff=options.webhook_backoff,
                                      timeout=options.webhook_timeout,
                                      on_result=daemon.metrics.webhook)
        self.dispatcher = Dispatcher(
            self.store, self._flow, RelayDialer(lambda: daemon.relay,
                                                time_scale=daemon.time_scale,
                                                on_step=daemon.metrics.step,
                                                default_from=options.default_from,
                                                clock=daemon.clock),
            max_outbound=options.max_outbound, time_scale=daemon.time_scale,
            webhooks=self.webhooks, observer=daemon.metrics,
            drain_timeout=daemon.drain_timeout)
        daemon.metrics.outbound_in_flight.set_function(lambda: self.dispatcher.in_flight)
        app = build_app(self.dispatcher, known_flow=lambda name: name in daemon.registry.flows,
                        check_vars=self._check, token=options.token,
                        max_body=options.max_body)
        self.server = ApiServer(app, options.host, options.port)
        self._stopped = anyio.Event()
        #: Set once :meth:`run` has returned (the outbound calls settled, the ledger closed).
        self.finished = anyio.Event()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`open`)."""
        return self.server.port

    def _check(self, name: str, values: Mapping[str, Any], to: str, from_: str | None
               ) -> dict[str, Any]:
        entry = self.daemon.registry.flows.get(name)
        if entry is None:  # unloaded since the request named it
            raise ApiError(422, "unknown_flow", f"no flow named {name[:80]!r} is served", "flow")
        if from_ is None and (entry.flow.outbound is None or entry.flow.outbound.from_ is None):
            from_ = self.options.default_from
        return check_call(entry.flow, values, to, from_)

    def _flow(self, name: str) -> FlowRef | None:
        entry = self.daemon.registry.flows.get(name)
        return None if entry is None else FlowRef(entry.flow, entry.runtime)

    async def open(self) -> None:
        """Open the ledger and bind the port (StoreError, OSError)."""
        await self.store.open()
        try:
            self.server.bind()
        except BaseException:
            await self.store.close()
            raise

    async def run(self, relay: RelayClient, *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`stop`; ``started`` once requests are taken."""
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self.webhooks.run)
                await tg.start(self.dispatcher.run)
                await tg.start(self.server.serve)
                if self.options.token is None:
                    logger.warning("call API on http://%s:%d/v1/ without authentication "
                                   "(FLOWENGINE_API_TOKEN is not set): loopback only",
                                   self.options.host, self.port)
                else:
                    logger.info("call API on http://%s:%d/v1/ (bearer token required)",
                                self.options.host, self.port)
                if self.options.webhook_secret is None:
                    logger.info("status webhooks are not signed (FLOWENGINE_WEBHOOK_SECRET "
                                "is not set)")
                task_status.started()
                await self._stopped.wait()
                # The server stays up while the calls drain: GETs still answer.
                await self.dispatcher.stop()
                self.server.stop()
                # The last events (the calls just settled) get a few seconds to go out.
                self.webhooks.close()
                tg.cancel_scope.deadline = anyio.current_time() + self.options.webhook_flush
        finally:
            with anyio.CancelScope(shield=True):
                await self.store.close()
            self.finished.set()

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` shows of the call API (never the token)."""
        return {"url": f"http://{self.options.host}:{self.port}/v1/",
                "authenticated": self.options.token is not None,
                "accepting": self.dispatcher.accepting,
                "outbound_in_flight": self.dispatcher.in_flight,
                "webhooks": dict(self.webhooks.counts),
                "state_dir": self.options.state_dir}

    def stop(self) -> None:
        """Stop dialling (the calls in flight get the drain timeout), then serving."""
        self._stopped.set()
