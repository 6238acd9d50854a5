"""``flowengine state``: what a state store holds — the daemons' sessions and leases, and
the calls in flight with their step (docs/store.md). Read-only: safe while ``serve`` runs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    parser.add_argument("--state-dir", nargs="?", const="", default=None, metavar="DIR",
                        help="the SQLite state directory serve --state-dir uses (without DIR: "
                             "$XDG_STATE_HOME/flowengine; the default)")
    parser.add_argument("--store", default=None, metavar="URL",
                        help="a PostgreSQL store (postgresql://user@host/db)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    """Print the store's sessions and calls; 2 when it cannot be read."""
    import os

    import anyio

    from flowengine.daemon.durable import default_state_dir
    from flowengine.store import StoreError

    if args.state_dir is not None and args.store is not None:
        print("flowengine state: --state-dir and --store name two stores: give one",
              file=sys.stderr)
        return 2
    target = args.store if args.store is not None else (args.state_dir or default_state_dir())
    if args.store is None and not os.path.exists(os.path.join(target, "flowengine.db")):
        # Opening would create an empty store: say there is none instead.
        print(f"flowengine state: no state store in {target}", file=sys.stderr)
        return 2
    try:
        report = anyio.run(_read, target)
    except StoreError as exc:
        print(f"flowengine state: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_text(report))
    return 0


async def _read(target: str) -> dict[str, Any]:
    from flowengine.store import store_for

    now = time.time()
    async with store_for(target) as store:
        daemons = []
        for d in await store.list_daemons():
            calls = []
            for cp in await store.load_checkpoints(d.daemon_id):
                pending = cp.pending
                calls.append({
                    "call_id": cp.call_id, "flow": cp.flow_name,
                    "version": cp.version_sha[:12], "step": cp.step,
                    "waiting_on": None if pending is None else {
                        "kind": pending.kind, "control_id": pending.control_id,
                        "for_seconds": round(now - pending.started_at, 1)},
                    "updated_seconds_ago": round(now - cp.updated_at, 1)})
            daemons.append({
                "daemon_id": d.daemon_id, "host": d.host, "status": d.status,
                "taken_by": d.taken_by, "protocol": d.protocol,
                "lease_expires_in": round(d.lease_expires - now, 1), "calls": calls})
        return {"store": store.where, "schema": await store.schema_version(),
                "daemons": daemons}


def _text(report: dict[str, Any]) -> str:
    lines = [f"store {report['store']} (schema {report['schema']}): "
             f"{len(report['daemons'])} daemon(s)"]
    for d in report["daemons"]:
        left = d["lease_expires_in"]
        lease = f"lease expires in {left:g} s" if left > 0 else f"lease expired {-left:g} s ago"
        status = d["status"] + (f" by {d['taken_by']}" if d["taken_by"] else "")
        lines.append(f"daemon {d['daemon_id']} on {d['host']}: {status}, {lease}, "
                     f"protocol {d['protocol'] or '-'}, {len(d['calls'])} call(s) in flight")
        for c in d["calls"]:
            waiting = c["waiting_on"]
            at = (f"waiting on {waiting['kind']} {waiting['control_id']} for "
                  f"{waiting['for_seconds']:g} s" if waiting else "at a step boundary")
            lines.append(f"  call {c['call_id']}  {c['flow']}@{c['version']}  step "
                         f"{c['step'] or '(ended)'}  {at}")
    return "\n".join(lines)
