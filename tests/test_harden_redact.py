"""Credentials never reach what flowengine prints, logs or traces (flowengine.redact): a
`request` step's URL and headers in the serve log (ours and httpx's lines), --trace and
`run`'s output; a RELAY server that echoes the token in a malformed frame; a token in a
--relay-url query string; secret-looking vars in `run`'s summary."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.server import ServerConnection, serve

from flowengine.relay import RelayClient, RelayConfig
from flowengine.scenario.receiver import Receiver
from tests.flowtools import FLOWS, ROOT

FLOWENGINE = [sys.executable, "-m", "flowengine.cli"]

PASSWORD = "hunter2-pw"
API_KEY = "qk-abc123456"
BEARER = "bt-zz9-secret"
X_API_KEY = "xk-77-secret"
AUTH_KEY = "ak-31-secret"
SECRETS = (PASSWORD, API_KEY, BEARER, X_API_KEY, AUTH_KEY)

HOOK_FLOW = """\
name: hook
context: office
steps:
  greet:
    answer: {{}}
  notify:
    request:
      url: "http://bob:{password}@{host}/voicemail?api_key={api_key}&kind=vm"
      headers:
        Authorization: "Bearer {bearer}"
        X-Api-Key: "{x_api_key}"
        X-Auth-Key: "{auth_key}"
        Accept: text/plain
    on:
      ok: bye
      http_error: bye
      timeout: bye
      error: bye
  bye:
    hangup: {{}}
"""


def _env(**extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIGNALWIRE_", "FLOWENGINE_"))}
    env.update(extra)
    return env


def hook_flow(directory: Path, url: str) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / "hook.yaml"
    path.write_text(HOOK_FLOW.format(password=PASSWORD, host=url.removeprefix("http://"),
                                     api_key=API_KEY, bearer=BEARER, x_api_key=X_API_KEY,
                                     auth_key=AUTH_KEY))
    return path


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets or SECRETS:
        assert secret not in text, f"{secret!r} shown in:\n{text}"


async def run_process(*args: str, **env: str) -> tuple[int, str, str]:
    with anyio.fail_after(60):
        proc = await anyio.run_process([*FLOWENGINE, *args], cwd=ROOT, check=False,
                                       env=_env(**env))
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@pytest.mark.anyio
@pytest.mark.parametrize("level", [None, "debug"])
async def test_serve_log_and_trace_keep_a_request_steps_credentials_out(
        tmp_path: Path, level: str | None) -> None:
    trace = tmp_path / "trace.jsonl"
    async with Receiver() as hook:
        hook_flow(tmp_path / "flows", hook.url)
        code, _, err = await run_process(
            "serve", str(tmp_path / "flows"), "--simulate", "--sim-calls", "1",
            "--time-scale", "0.01", "--no-watch", "--rescan-interval", "0",
            "--trace", str(trace), *(["--log-level", level] if level else []))
        received = hook.received
    assert code == 0, err
    # The request was made, with its credentials: only what is shown of it is masked.
    assert received and API_KEY in received[0].path
    assert "call ended: completed" in err
    assert_no_secret(err)
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    notify = next(r for r in records if r["step"] == "notify")
    assert notify["outcome"] == "ok"
    # docs/flow-language.md: any header name with a `key` part is secret.
    assert notify["params"]["headers"] == {"Authorization": "[redacted]",
                                           "X-Api-Key": "[redacted]",
                                           "X-Auth-Key": "[redacted]", "Accept": "text/plain"}
    assert notify["params"]["url"].endswith("/voicemail?api_key=[redacted]&kind=vm")
    assert_no_secret(trace.read_text())


@pytest.mark.anyio
async def test_run_output_keeps_a_request_steps_credentials_out(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    async with Receiver() as hook:
        flow = hook_flow(tmp_path / "flows", hook.url)
        code, out, err = await run_process("run", str(flow), "--time-scale", "0.01",
                                           "--log-level", "debug", "--trace", str(trace))
        assert hook.received
    assert code == 0, out + err
    assert "notify" in out
    assert_no_secret(out + err)
    assert_no_secret(trace.read_text())


@pytest.mark.anyio
async def test_runs_summary_masks_secret_looking_vars(tmp_path: Path) -> None:
    flow = tmp_path / "vars.yaml"
    flow.write_text("""\
name: vars
context: office
vars:
  mailbox: Sales
  webhook_token: vt-very-secret-99
steps:
  greet:
    answer: {}
  say:
    log: "using {{ vars.webhook_token }} for {{ vars.mailbox }}"
""")
    code, out, err = await run_process("run", str(flow), "--time-scale", "0.01")
    assert code == 0, out + err
    assert "mailbox='Sales'" in out
    assert "webhook_token='[redacted]'" in out
    assert_no_secret(out + err, "vt-very-secret-99")


# ------------------------------------------------------------------ a RELAY that echoes


class Tap(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.anyio
async def test_a_malformed_frame_that_echoes_the_token_is_logged_without_it() -> None:
    token = "echoed-tok-" + "9" * 20
    sent = anyio.Event()

    async def relay(ws: ServerConnection) -> None:
        async for message in ws:
            request: dict[str, Any] = json.loads(message)
            if request.get("method") == "signalwire.connect":
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": {
                    "identity": "p@n", "protocol": "signalwire_echo", "sessionid": "s",
                    "nodeid": "n", "master_nodeid": "m", "session_restored": False,
                    "authorization": {"project": "proj-echo", "scopes": ["calling"]}}}))
                # Not JSON, with the token where a 200-character excerpt cuts it in two.
                await ws.send("x" * 180 + f" you sent {token} " + "y" * 50)
                sent.set()
            elif "id" in request and "method" in request:
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": request["id"],
                                          "result": {"code": "200", "message": "OK"}}))

    tap = Tap()
    relay_logger = logging.getLogger("flowengine.relay")
    relay_logger.addHandler(tap)
    level = relay_logger.level
    relay_logger.setLevel(logging.DEBUG)
    try:
        async with serve(relay, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            config = RelayConfig(url=f"ws://127.0.0.1:{port}", project="proj-echo",
                                 token=token, reconnect_delay=0.1)
            async with RelayClient(config, ["office"]):
                with anyio.fail_after(10):
                    await sent.wait()
                    while not any("dropped a frame" in m for m in tap.messages):
                        await anyio.sleep(0.01)
    finally:
        relay_logger.removeHandler(tap)
        relay_logger.setLevel(level)
    warning = next(m for m in tap.messages if "dropped a frame" in m)
    assert "you sent [redacted]" in warning
    for message in tap.messages:
        assert token[:8] not in message, message


# ------------------------------------------------------------------ --relay-url ?token=


@pytest.mark.anyio
async def test_a_token_in_the_relay_url_query_is_never_printed(tmp_path: Path) -> None:
    query_token = "qs-token-5551234"
    with anyio.fail_after(60):
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            # A port nobody answers on: the error quotes the URL.
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
        url = f"ws://127.0.0.1:{port}/?token={query_token}"
        env = {"SIGNALWIRE_PROJECT_ID": "proj-q", "SIGNALWIRE_API_TOKEN": "tok-q-123456"}
        run = await run_process("run", str(FLOWS / "voicemail.yaml"), "--relay-url", url,
                                "--log-level", "debug", **env)
        serve_ = await run_process("serve", str(FLOWS / "voicemail.yaml"), "--relay-url",
                                   url, "--log-level", "debug", "--no-watch", **env)
    for code, out, err in (run, serve_):
        assert code != 0
        assert "127.0.0.1" in out + err  # the URL is shown, its token is not
        assert query_token not in out + err and "tok-q-123456" not in out + err, out + err
