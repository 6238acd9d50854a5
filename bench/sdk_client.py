"""(b) The voicemail flow hand-written on the official SDK (signalwire-sdk 3.7.5).

The same exchange as ``flows/voicemail.yaml``: answer, the greeting, a recording (beep,
``#`` ends it), a thank-you that says how long the message was (or the short / nothing-heard
variants), a log line, hang up, wait for the end. The SDK is used as shipped, through
``client.run()``; the only change is the URL rewrite of docs/relay-protocol.md §8 A, because
the SDK always builds ``wss://``. The driver raises ``RELAY_MAX_ACTIVE_CALLS`` (default
1,000) so that 5,000 calls in flight are not dropped on arrival.

Usage: ``python bench/sdk_client.py HOST:PORT CONTEXT`` (credentials sim-project / sim-token);
SIGINT stops it.
"""

from __future__ import annotations

import logging
import sys
import types

import signalwire.relay.client as _relay_client_mod
import websockets

_real_connect = websockets.connect


def _connect_plain(uri, *args, **kwargs):  # type: ignore[no-untyped-def]
    kwargs.pop("ssl", None)  # the SDK passes ssl=None
    return _real_connect(uri.replace("wss://", "ws://", 1), *args, **kwargs)


_relay_client_mod.websockets = types.SimpleNamespace(  # type: ignore[attr-defined]
    connect=_connect_plain, exceptions=websockets.exceptions)

from signalwire.relay import RelayClient  # noqa: E402

logger = logging.getLogger("voicemail")
MAILBOX = "sales"
RECORD = {"beep": True, "end_silence_timeout": 3, "terminators": "#", "format": "mp3"}


def tts(text: str) -> list[dict]:
    return [{"type": "tts", "params": {"text": text}}]


def main() -> None:
    host, context = sys.argv[1], sys.argv[2]
    client = RelayClient(project="sim-project", token="sim-token", host=host,
                         contexts=[context])

    @client.on_call
    async def voicemail(call) -> None:  # type: ignore[no-untyped-def]
        await call.answer()
        greeting = await call.play(
            tts(f"Hi. You reached {MAILBOX}. Leave a message after the beep."))
        await greeting.wait()
        recording = await call.record(audio=RECORD)
        event = await recording.wait()
        if event.state == "finished":
            if event.duration >= 2:
                text = f"Thanks. We got {round(event.duration)} seconds."
            else:
                text = "That was very short, but we kept it."
        else:
            text = "We did not hear anything. Goodbye."
        thanks = await call.play(tts(text))
        await thanks.wait()
        logger.info("voicemail for %s: %s", MAILBOX, event.url)
        await call.hangup()
        await call.wait_for_ended()

    client.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    main()
