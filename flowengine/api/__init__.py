"""The call API of ``flowengine serve --api-port`` (docs/api.md).

``requests`` checks what comes in, ``dispatch`` keeps the ledger and paces the dials,
``dialer`` places one call and runs its flow, ``webhooks`` sends the status events,
``app`` is the HTTP side (Starlette), ``server`` runs it (uvicorn) inside serve's loop.
It sits on ``flow``, ``engine``, ``relay`` and ``store``; the daemon wires it. Submodules
are imported where used, so importing the package costs nothing.
"""

from __future__ import annotations

__all__: list[str] = []
