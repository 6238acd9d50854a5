"""Where and how to reach RELAY: :class:`RelayConfig`, usually built from the environment."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..redact import redact_url, register

__all__ = ["DEFAULT_HOST", "RelayConfig"]

#: §1: the official SDK's host when neither ``host`` nor ``SIGNALWIRE_SPACE`` is given.
DEFAULT_HOST = "relay.signalwire.com"


def _normalize_url(value: str, source: str) -> str:
    """``example.signalwire.com``, ``host:port`` or ``ws(s)://host[:port]`` → a ws(s) URL.

    A bare host gets ``wss://`` (§1: RELAY is always wss).
    """
    value = value.strip()
    url = value if "://" in value else f"wss://{value}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"{source}: not a host or ws(s):// URL: {value!r} ({exc})") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{source}: expected a host, host:port or a ws(s):// URL, "
                         f"got {value!r}")
    if parts.username is not None or parts.password is not None:
        # Credentials belong in SIGNALWIRE_API_TOKEN, where they are kept out of logs.
        raise ValueError(f"{source}: the URL must not contain credentials")
    # §1: RELAY itself listens on the root path; a path given explicitly (a proxy) is kept.
    return url.rstrip("/") if parts.path in ("", "/") and not parts.query else url


@dataclass(frozen=True)
class RelayConfig:
    """How to reach and authenticate to RELAY.

    ``token`` and ``jwt_token`` never appear in ``repr()``, logs or exceptions: a config
    registers them and the project id with :mod:`flowengine.redact` when it is made, so
    every line flowengine prints, logs or traces masks them wherever they appear (a server
    that echoes the token in an error or a malformed frame).

    Attributes:
        url: ``ws://…`` or ``wss://…`` on the root path.
        project: the SignalWire project id.
        token: the API token (``SIGNALWIRE_API_TOKEN``).
        jwt_token: a JWT, used instead of project + token when set.
        ca_file: an extra CA bundle to trust on top of the system trust store.
        request_timeout: the deadline of every request, the connect included (§2.6).
        ping_interval: seconds between our own ``signalwire.ping`` (§2.5).
        reconnect_delay: the first delay before reconnecting a dropped link (§2.8).
        reconnect_max_delay: the cap of the doubling reconnect delay (§2.8).
        max_frame_size: the largest frame accepted from the server, in bytes (§1: the
            official SDK's 10 MiB). A larger one drops the link (websockets' close 1009).
    """

    url: str
    project: str = ""
    token: str = field(default="", repr=False)
    jwt_token: str = field(default="", repr=False)
    ca_file: str | None = None
    request_timeout: float = 10.0
    ping_interval: float = 30.0
    reconnect_delay: float = 1.0
    reconnect_max_delay: float = 30.0
    max_frame_size: int = 10 * 1024 * 1024

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", _normalize_url(self.url, "RelayConfig.url"))
        register(self.token, self.jwt_token, self.project)
        for name in ("request_timeout", "ping_interval", "reconnect_delay",
                     "reconnect_max_delay", "max_frame_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"RelayConfig.{name} must be > 0, got {getattr(self, name)!r}")

    @property
    def authentication(self) -> dict[str, str]:
        """The ``authentication`` object of ``signalwire.connect`` (§2.1)."""
        if self.jwt_token:
            return {"jwt_token": self.jwt_token}
        return {"project": self.project, "token": self.token}

    @property
    def shown_url(self) -> str:
        """``url`` as it may be printed: secret-looking query parameters (``?token=…``) and
        registered credentials masked."""
        return redact_url(self.url)

    @property
    def secret_values(self) -> tuple[str, ...]:
        """The values that must never be shown (used to scrub server messages)."""
        return tuple(s for s in (self.token, self.jwt_token) if s)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for a ``wss://`` URL, ``None`` for ``ws://``.

        It trusts the system store (``ssl.create_default_context()``) plus ``ca_file``
        when given. Unlike the official SDK, ``wss://`` works without a CA file (§1 BUG).

        Raises:
            ValueError: ``ca_file`` cannot be read as a CA bundle.
        """
        if not self.url.startswith("wss://"):
            return None
        context = ssl.create_default_context()
        if self.ca_file:
            try:
                context.load_verify_locations(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load the CA file {self.ca_file!r}: {exc}") from None
        return context

    @classmethod
    def from_env(
        cls, relay_url: str | None = None, environ: Mapping[str, str] = os.environ
    ) -> RelayConfig | None:
        """Build a config from the official SDK's environment variables (§8).

        - ``SIGNALWIRE_PROJECT_ID`` + ``SIGNALWIRE_API_TOKEN``, or ``SIGNALWIRE_JWT_TOKEN``;
        - ``SIGNALWIRE_SPACE``: a host, ``host:port`` or a ``ws(s)://`` URL; a bare host
          becomes ``wss://<space>``; ``relay.signalwire.com`` when unset;
        - ``FLOWENGINE_RELAY_URL``, then the ``relay_url`` argument, override the URL;
        - ``SIGNALWIRE_RELAY_CA_FILE``: an extra CA bundle.

        Returns:
            ``None`` when there are neither credentials nor a URL (the caller then starts
            the embedded simulator).

        Raises:
            ValueError: half the credentials (a project without a token, or the other
                way round), or a URL that is not a host or ws(s) URL.
        """
        def env(name: str) -> str:
            return environ.get(name, "").strip()

        project, token, jwt = env("SIGNALWIRE_PROJECT_ID"), env("SIGNALWIRE_API_TOKEN"), \
            env("SIGNALWIRE_JWT_TOKEN")
        if not jwt and bool(project) != bool(token):
            missing = "SIGNALWIRE_API_TOKEN" if project else "SIGNALWIRE_PROJECT_ID"
            given = "SIGNALWIRE_PROJECT_ID" if project else "SIGNALWIRE_API_TOKEN"
            raise ValueError(f"{given} is set but {missing} is not "
                             f"(or set SIGNALWIRE_JWT_TOKEN instead)")
        has_credentials = bool(jwt or token)

        if relay_url:
            url, source = relay_url, "--relay-url"
        elif env("FLOWENGINE_RELAY_URL"):
            url, source = env("FLOWENGINE_RELAY_URL"), "FLOWENGINE_RELAY_URL"
        elif env("SIGNALWIRE_SPACE"):
            url, source = env("SIGNALWIRE_SPACE"), "SIGNALWIRE_SPACE"
        elif has_credentials:
            url, source = DEFAULT_HOST, "default host"
        else:
            return None
        return cls(
            url=_normalize_url(url, source),
            project=project,
            token=token,
            jwt_token=jwt,
            ca_file=env("SIGNALWIRE_RELAY_CA_FILE") or None,
        )
