"""The listeners survive resource exhaustion: a flood of idle connections to the metrics
port or to the simulator's port, or a process out of descriptors, sheds connections and
never takes the daemon, or its calls, down.

The daemon runs as a user runs it (``flowengine serve --simulate``) in a subprocess whose
descriptor limit is lowered the way systemd's default (1,024) lowers it.
"""

from __future__ import annotations

import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from flowengine.daemon import http
from flowengine.daemon.http import bound_port, open_http, serve_http

ROOT = Path(__file__).resolve().parent.parent
FLOW = ROOT / "flows" / "ivr.yaml"
#: A generous bound to tell "still going" from "hung": never a timing assertion.
BOUND = 30.0


LOWER_LIMIT_AND_EXEC = """
import os, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


@pytest.fixture(autouse=True)
def enough_descriptors() -> Iterator[None]:
    """This process holds its end of every idle connection: let it have enough."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096
    if soft >= wanted:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the descriptor hard limit ({hard}) is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Daemon:
    """``flowengine serve --simulate`` in a subprocess with a descriptor limit; its log
    lines as they come."""

    def __init__(self, nofile: int) -> None:
        # The child lowers its own limit, then execs the daemon (preexec_fn is unsafe in a
        # process with threads).
        command = [sys.executable, "-c", LOWER_LIMIT_AND_EXEC, str(nofile),
                   "-m", "flowengine.cli", "serve", str(FLOW), "--simulate",
                   "--sim-rate", "20", "--time-scale", "0.01", "--metrics-port", "0",
                   "--no-watch", "--drain-timeout", "5"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.metrics_port = int(self.wait_for(r"metrics on http://127\.0\.0\.1:(\d+)")[1])
        self.sim_port = int(self.wait_for(r"simulator listening on ws://127\.0\.0\.1:(\d+)")[1])

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for(self, pattern: str, start: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            for line in self.lines[start:]:
                if match := re.search(pattern, line):
                    return match
            assert self.process.poll() is None, "".join(self.lines[-40:])
            time.sleep(0.02)
        raise AssertionError(f"no log line matches {pattern!r}")

    def calls_ended(self) -> int:
        return sum("call ended:" in line for line in self.lines)

    def wait_calls_ended(self, more: int) -> None:
        """Wait until ``more`` calls end that had not ended when called."""
        target = self.calls_ended() + more
        deadline = time.monotonic() + BOUND
        while self.calls_ended() < target:
            assert self.process.poll() is None, "".join(self.lines[-40:])
            assert time.monotonic() < deadline, f"calls stopped ending: {self.calls_ended()}"
            time.sleep(0.02)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(BOUND)
        self._reader.join(BOUND)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def daemon(nofile: int) -> Iterator[Daemon]:
    running = Daemon(nofile)
    try:
        yield running
    finally:
        running.kill()


@contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` TCP connections to ``port`` that never send a byte."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=BOUND))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def http_get(port: int, path: str) -> bytes:
    """The raw response to one GET (HTTP/1.0, so the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_1100_idle_connections_to_the_metrics_port_under_1024_descriptors() -> None:
    with daemon(nofile=1024) as served:
        served.wait_calls_ended(3)
        with idle_connections(served.metrics_port, 1100):
            # Before the fix the 1,0xxth accept() raised EMFILE and the daemon exited 1.
            served.wait_calls_ended(20)
            assert served.process.poll() is None
        served.wait_calls_ended(3)
        health = http_get(served.metrics_port, "/healthz")
        assert health.startswith(b"HTTP/1.1 200 OK") and b'"status": "serving"' in health
        assert served.terminate() == 0
    log = "".join(served.lines)
    assert "Traceback" not in log
    assert "closing the oldest idle ones" in log  # the shedding said so, once


def test_out_of_descriptors_both_listeners_shed_and_the_calls_go_on() -> None:
    # 64 descriptors: the idle connections to both ports use them all up, so accept()
    # fails with EMFILE on the metrics port and on the simulator's port alike.
    with daemon(nofile=64) as served:
        served.wait_calls_ended(3)
        start = len(served.lines)
        # The simulator's first: its kernel backlog is 100, the metrics port's 4,096.
        with idle_connections(served.sim_port, 100), \
                idle_connections(served.metrics_port, 300):
            served.wait_for(r"HTTP endpoint: accept\(\) failed for want of resources", start)
            served.wait_for(r"simulator listener: accept\(\) failed", start)
            served.wait_calls_ended(20)
        served.wait_calls_ended(3)
        health = http_get(served.metrics_port, "/healthz")
        assert health.startswith(b"HTTP/1.1 200 OK")
        # The simulator's port still answers too (a recording that does not exist).
        missing = http_get(served.sim_port, "/recordings/" + "0" * 32 + ".wav")
        assert missing.startswith(b"HTTP/1.1 404")
        assert served.terminate() == 0
    log = "".join(served.lines)
    assert "Traceback" not in log and "ERROR" not in log
    # Rate-limited: a handful of warnings, not one per failed accept().
    warnings = [line for line in served.lines if "WARNING" in line and "accept()" in line]
    assert 2 <= len(warnings) <= 12, warnings


# ----------------------------------------------------------- the HTTP server in-process


async def _open(port: int) -> anyio.abc.SocketStream:
    return await anyio.connect_tcp("127.0.0.1", port)


async def _closed_by_server(stream: anyio.abc.SocketStream) -> bool:
    """True when the server closed ``stream`` (EOF or reset) within the bound."""
    with anyio.fail_after(BOUND):
        try:
            while await stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
            return True
    return False


async def _get(port: int, path: str = "/healthz") -> bytes:
    async with await _open(port) as stream:
        await stream.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        chunks = []
        with anyio.fail_after(BOUND):
            try:
                while True:
                    chunks.append(await stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    return b"".join(chunks)


@contextmanager
def _patched(name: str, value: float) -> Iterator[None]:
    old = getattr(http, name)
    setattr(http, name, value)
    try:
        yield
    finally:
        setattr(http, name, old)


async def _serving(test: Callable[[int], object], max_connections: int) -> None:
    listener = await open_http("127.0.0.1", 0)
    port = bound_port(listener)
    routes = {"/healthz": lambda: (200, "text/plain", b"ok\n")}
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve_http(listener, routes, max_connections=max_connections))
        await test(port)  # type: ignore[misc]
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_past_the_connection_bound_the_oldest_idle_ones_are_closed() -> None:
    async def test(port: int) -> None:
        idle = [await _open(port) for _ in range(12)]
        # 4 open at most: the 8 oldest were closed, the newest 4 are still open.
        for stream in idle[:8]:
            assert await _closed_by_server(stream)
        # A real request still gets its answer (it sheds one more idle connection).
        assert (await _get(port)).endswith(b"\r\n\r\nok\n")
        for stream in idle:
            await stream.aclose()

    await _serving(test, max_connections=4)


@pytest.mark.anyio
async def test_a_connection_that_says_nothing_is_closed_after_the_request_deadline() -> None:
    async def test(port: int) -> None:
        async with await _open(port) as silent, await _open(port) as slow:
            await slow.send(b"GET /hea")  # slowloris: a head that never ends
            assert await _closed_by_server(silent)
            assert await _closed_by_server(slow)
        assert (await _get(port)).endswith(b"ok\n")

    with _patched("REQUEST_DEADLINE", 0.2):
        await _serving(test, max_connections=16)
