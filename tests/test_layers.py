"""The packages are layers: importing a lower one never pulls in a higher one.

Each package is imported alone — with every module in it, so a lazily imported ``cli`` or
runner counts too — in a fresh interpreter, and the ``flowengine.*`` packages that ended up
in ``sys.modules`` are compared with what it may use:

* ``flow`` (the language: loader, schema, checker, action specs) uses nothing of ours;
* ``relay`` (the RELAY client) uses nothing of ours;
* ``sim`` (the RELAY simulator) may use ``relay`` — it shares the wire layer
  (``relay.connection``'s transport) — and nothing else;
* ``actions`` (the runners) may use ``flow`` and ``relay`` (and the leaf module
  ``flowengine.redact``); never ``engine`` — the engine runs them, they are handed a
  session — ``sim``, ``daemon`` or ``scenario``;
* ``engine`` may use ``flow``, ``relay`` and ``actions``; never ``sim``, ``daemon`` or
  ``scenario``;
* ``api`` (the call API of ``serve``) may use ``flow``, ``engine``, ``relay``, ``store``
  (and what they use); never ``sim``, ``daemon`` or ``scenario`` — the daemon wires it.
* ``testing`` (virtual time, the simulator in memory) may use ``relay`` and ``sim`` only:
  the scenario runner and users' tests sit on it, the engine never does.
* ``importers`` (Studio and SWML to flows) may use ``flow`` only: converting a file needs
  no engine, no RELAY and no simulator.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PACKAGES = ("flow", "relay", "sim", "actions", "engine", "scenario", "daemon", "importers",
            "testing", "api")

#: package → the packages of ours it must not pull in.
FORBIDDEN: dict[str, set[str]] = {
    "flow": {"actions", "engine", "relay", "sim", "daemon", "scenario"},
    "relay": {"flow", "actions", "engine", "sim", "daemon", "scenario"},
    "sim": {"flow", "actions", "engine", "daemon", "scenario"},
    "actions": {"engine", "sim", "daemon", "scenario"},
    "engine": {"sim", "daemon", "scenario", "testing"},
    "importers": {"actions", "engine", "relay", "sim", "daemon", "scenario"},
    "testing": {"flow", "actions", "engine", "daemon", "scenario"},
    "api": {"sim", "daemon", "scenario", "testing"},
}

_PROBE = """
import importlib, json, pkgutil, sys
name = "flowengine." + sys.argv[1]
package = importlib.import_module(name)
for info in pkgutil.walk_packages(package.__path__, name + "."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
print(json.dumps(sorted({m.split(".")[1] for m in sys.modules
                         if m.startswith("flowengine.") and m.count(".") >= 1})))
"""


def _pulled_in(package: str) -> set[str]:
    run = subprocess.run([sys.executable, "-c", _PROBE, package], capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    return set(json.loads(run.stdout)) - {package}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_lower_layer_pulls_in_no_higher_one(package: str) -> None:
    assert _pulled_in(package) & FORBIDDEN[package] == set()


def test_the_flow_layer_is_self_contained() -> None:
    # The checker, the schema generator and the specs need nothing but flow itself.
    assert _pulled_in("flow") == set()


def test_the_probe_sees_what_a_package_imports() -> None:
    # The engine runs actions over relay: if the probe did not see these, the test above
    # could not fail.
    assert {"actions", "flow", "relay"} <= _pulled_in("engine")


def test_every_spec_names_a_runner_that_exists() -> None:
    # The flow layer names runners by string only; the engine imports them. A typo in a
    # spec's runner would otherwise surface only when a flow using the action is run.
    import importlib
    import inspect

    from flowengine.flow.actions import ACTIONS

    for name, spec in ACTIONS.items():
        module, _, function = spec.runner.partition(":")
        assert module.startswith("flowengine.actions."), name
        runner = getattr(importlib.import_module(module), function, None)
        assert inspect.iscoroutinefunction(runner), f"{name}: {spec.runner}"
