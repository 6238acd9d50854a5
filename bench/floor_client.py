"""(c) The floor: the smallest websockets + JSON client doing the voicemail exchange.

One task, no per-call task, no request bookkeeping beyond counting failed replies: the
reader ACKs each event (one ``send()`` per frame, as RELAY clients do) and answers the
events of each call with its next command, keyed on a small per-call state:

    calling.call.receive        → calling.answer
    call.state answered         → calling.play   (the greeting)
    call.play finished          → calling.record (after the greeting)
    call.record finished        → calling.play   (thanks, with the length)
    call.play finished          → calling.end    (after the thanks)
    call.state ended            → forget the call

Usage: ``python bench/floor_client.py ws://HOST:PORT CONTEXT``; SIGTERM/SIGINT stop it.
This is what Python on this machine costs for the exchange, not a usable client: it does
not reconnect, resume, time requests out or survive a malformed frame.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sys

from websockets.asyncio.client import connect

GREETING = [{"type": "tts",
             "params": {"text": "Hi. You reached sales. Leave a message after the beep."}}]
RECORD = {"audio": {"beep": True, "end_silence_timeout": 3, "terminators": "#",
                    "format": "mp3"}}
GREET, RECORDING, THANKS = 1, 2, 3


async def run(url: str, context: str) -> None:
    ids = itertools.count(1)
    calls: dict[str, int] = {}
    failed = 0
    dumps, loads = json.dumps, json.loads
    async with connect(url, compression=None, ping_interval=None,
                       max_size=10 * 1024 * 1024) as ws:

        async def command(method: str, call_id: str, node_id: str, **params: object) -> None:
            await ws.send(dumps({"jsonrpc": "2.0", "id": str(next(ids)), "method": method,
                                 "params": {"node_id": node_id, "call_id": call_id,
                                            **params}}))

        await ws.send(dumps({"jsonrpc": "2.0", "id": "connect", "method": "signalwire.connect",
                             "params": {"version": {"major": 2, "minor": 0, "revision": 0},
                                        "authentication": {"project": "sim-project",
                                                           "token": "sim-token"},
                                        "contexts": [context]}}))
        async for raw in ws:
            msg = loads(raw)
            if msg.get("method") != "signalwire.event":
                result = msg.get("result")
                if "error" in msg or (result and str(result.get("code", "200"))[0] != "2"):
                    failed += 1
                    print(f"failed: {raw}", file=sys.stderr)
                continue
            await ws.send(f'{{"jsonrpc":"2.0","id":{dumps(msg["id"])},"result":{{}}}}')
            envelope = msg["params"]
            kind, p = envelope["event_type"], envelope["params"]
            call_id = p.get("call_id")
            if kind == "calling.call.receive":
                calls[call_id] = 0
                await command("calling.answer", call_id, p["node_id"])
            elif kind == "calling.call.state":
                state = p["call_state"]
                if state == "answered" and calls.get(call_id) == 0:
                    calls[call_id] = GREET
                    await command("calling.play", call_id, p["node_id"], control_id="g",
                                  play=GREETING)
                elif state == "ended":
                    calls.pop(call_id, None)
            elif kind == "calling.call.play" and p["state"] == "finished":
                if calls.get(call_id) == GREET:
                    calls[call_id] = RECORDING
                    await command("calling.record", call_id, p["node_id"], control_id="r",
                                  record=RECORD)
                elif calls.get(call_id) == THANKS:
                    await command("calling.end", call_id, p["node_id"], reason="hangup")
            elif (kind == "calling.call.record" and p["state"] in ("finished", "no_input")
                    and calls.get(call_id) == RECORDING):
                calls[call_id] = THANKS
                duration = float(p.get("duration") or 0)
                if p["state"] != "finished":
                    text = "We did not hear anything. Goodbye."
                elif duration >= 2:
                    text = f"Thanks. We got {round(duration)} seconds."
                else:
                    text = "That was very short, but we kept it."
                await command("calling.play", call_id, p["node_id"], control_id="t",
                              play=[{"type": "tts", "params": {"text": text}}])


def main() -> None:
    url, context = sys.argv[1], sys.argv[2]

    async def guarded() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await run(url, context)
        except asyncio.CancelledError:
            pass

    asyncio.run(guarded())


if __name__ == "__main__":
    main()
