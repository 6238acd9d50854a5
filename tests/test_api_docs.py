"""docs/api.md's examples work as shown: its ``serve`` line runs (on a free port, a temporary
state directory, ten times faster), and every ``curl`` block after it runs against it, in
order, in one shell (the blocks share ``$CAMPAIGN``), each answer being the API's JSON."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tests.test_daemon_ops import Lines

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "api.md"


def _blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("jq") is None,
                    reason="the examples use curl and jq")
@pytest.mark.skipif(not (ROOT / "flows" / "reminder.yaml").exists(),
                    reason="the examples place calls for flows/reminder.yaml, the outbound "
                           "example flow, not in this checkout")
async def test_the_examples_of_docs_api_md_run(tmp_path: Path) -> None:
    blocks = _blocks()
    serve = blocks[0].strip()
    assert serve.startswith("flowengine serve flows/") and "--api-port 8081" in serve
    argv = serve.split()[1:]
    argv[argv.index("--api-port") + 1] = "0"
    argv[argv.index("--state-dir") + 1] = str(tmp_path / "state")
    # Ten times faster than shown, not more: the doc's campaign must still be running when
    # its pause, resume and cancel examples come (a reminder call lasts ~40 s, 4 s here).
    argv += ["--time-scale", "0.1", "--drain-timeout", "1"]
    env = {k: v for k, v in os.environ.items() if k != "FLOWENGINE_API_TOKEN"}
    command = [sys.executable, "-m", "flowengine.cli", *argv]
    async with await anyio.open_process(command, cwd=ROOT, env=env,
                                        stdout=subprocess.DEVNULL) as process, \
            anyio.create_task_group() as tg:
        assert process.stderr is not None
        lines = Lines(process.stderr)
        tg.start_soon(lines.read_all)
        line = await lines.wait_for("call API on http://", timeout=60)
        port = re.search(r"127\.0\.0\.1:([0-9]+)", line)
        assert port is not None and "loopback only" in line
        script = "set -eu\ncd " + str(tmp_path) + "\n" + "\n".join(
            # One answer a line: curl prints the body without a newline.
            b.replace("8081", port.group(1)).replace("curl -s ", "curl -s -w '\\n' ")
            for b in blocks[1:])
        done = await anyio.run_process(["bash", "-c", script], check=False, env=env)
        process.send_signal(15)
        assert await process.wait() == 0
        tg.cancel_scope.cancel()
    assert done.returncode == 0, done.stderr.decode()
    answers = [a for a in done.stdout.decode().splitlines() if a.strip()]
    ids = [a for a in answers if a.startswith("cmp_")]
    assert len(ids) == 1, answers
    campaign_id = ids[0]
    assert re.fullmatch(r"cmp_[0-9a-f]+", campaign_id)
    bodies = [json.loads(a) for a in answers if a != campaign_id]
    assert len(bodies) >= 12
    errors = [b["error"]["code"] for b in bodies if set(b) == {"error"}]
    # Only the cancel of a call that may have ended already is allowed to be refused.
    assert set(errors) <= {"already_ended"}, errors
    first = bodies[0]
    assert first["id"] == "call_1" and first["state"] == "queued"
