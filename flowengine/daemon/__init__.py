"""``flowengine serve``: route every inbound call to its flow, hot-reload flows, drain, metrics.

::

    from flowengine.daemon import Daemon

    daemon = Daemon(["flows/"], RelayConfig.from_env(), metrics_port=9464)
    exit_code = await daemon.run()        # until daemon.request_drain() (SIGTERM)

See ``docs/daemon.md`` for the user's guide.
"""

from .reload import FileState, FlowLoader, RejectedEdit, ReloadReport
from .routing import FlowEntry, Registry, is_glob, number_matches, specificity
from .server import Daemon

__all__ = [
    "Daemon", "FileState", "FlowEntry", "FlowLoader", "Registry", "RejectedEdit",
    "ReloadReport", "is_glob", "number_matches", "specificity",
]
