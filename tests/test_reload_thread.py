"""A compile still running when the daemon stops holds up neither the drain nor the
process's exit: serve compiles in a thread the interpreter does not wait for."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from flowengine.daemon.reload import run_in_daemon_thread

pytestmark = pytest.mark.anyio


async def test_the_result_and_the_error_of_the_thread_reach_the_caller() -> None:
    assert await run_in_daemon_thread(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        await run_in_daemon_thread(divmod, 1, 0)


def test_a_process_whose_compile_never_ends_still_exits_once_cancelled() -> None:
    # A stand-in for a compile that takes its whole budget: a function that never returns.
    # With anyio's worker threads (not daemon threads) this process never exited.
    script = textwrap.dedent("""
        import threading, anyio
        from flowengine.daemon.reload import run_in_daemon_thread

        async def main():
            with anyio.move_on_after(0.2):
                await run_in_daemon_thread(threading.Event().wait)
            print("cancelled")

        anyio.run(main, backend="asyncio")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "cancelled"), done.stderr

