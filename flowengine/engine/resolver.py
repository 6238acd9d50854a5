"""Finding another flow by name, for ``transfer`` steps.

The engine does not know where flows come from: a session is given a
:data:`FlowResolver` — ``serve`` passes one that reads its routing table (the versions it
serves now), ``run`` and ``flowengine test`` get :class:`DirectoryResolver` over the
folder of the flow they run. A resolver returns the flow's runtime *of now*; the call
keeps that runtime to its end (pinned), whatever reloads happen meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable

from flowengine.engine.machine import FlowRuntime
from flowengine.flow import FlowVersion, compile_flow, flow_files
from flowengine.flow.loader import UnreadableFile, read_flow_file

#: ``await resolver(name)`` → the runtime of the flow named ``name`` as it is now.
#: Raises LookupError (with a message for the trace) when there is none.
FlowResolver = Callable[[str], Awaitable[FlowRuntime]]


class DirectoryResolver:
    """Flows by name among the flow files of one folder (not recursive), read when asked.

    Each lookup lists and reads the folder again (in a worker thread: never on the event
    loop), so an edited file is seen by the next transfer; compiled versions are kept by
    content hash, so an unchanged file is not compiled twice.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        self._versions: dict[str, FlowVersion | None] = {}
        self._runtimes: dict[str, FlowRuntime] = {}
        # One lookup at a time: the caches are not shared between threads.
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<DirectoryResolver {self.directory}>"

    async def __call__(self, name: str) -> FlowRuntime:
        # The loop's executor (not anyio's threads): a virtual clock (flowengine.testing)
        # sees the thread and does not jump over it.
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(None, self._find, name)

    def _find(self, name: str) -> FlowRuntime:
        files, _ = flow_files([self.directory])
        for file in files:
            try:
                source = read_flow_file(file)
            except (UnreadableFile, OSError):
                continue
            key = f"{file}\0{hashlib.sha256(source).hexdigest()}"
            if key not in self._versions:
                self._versions[key] = compile_flow(source, file).version
            version = self._versions[key]
            if version is not None and version.name == name:
                runtime = self._runtimes.get(version.version)
                if runtime is None:
                    runtime = self._runtimes[version.version] = FlowRuntime(version)
                return runtime
        raise LookupError(f"no flow named {name!r} in {self.directory} (a flow with errors "
                          "does not count)")


def directory_of(flow: FlowVersion) -> str:
    """The folder a flow's file is in (where its transfers look by default)."""
    return os.path.dirname(os.path.abspath(flow.file))
