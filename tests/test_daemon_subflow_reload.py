"""An edit of a subflow alone reloads the flows that call it (and only once)."""

from __future__ import annotations

import pytest

from flowengine.daemon.reload import FlowLoader

pytestmark = pytest.mark.anyio

MAIN = """
name: main
context: office
steps:
  greet:
    answer: {}
  ask:
    call:
      flow: lib/greeting.yaml
      params: {who: "{{ call.from }}"}
  bye:
    log: "said {{ steps.ask.said }}"
"""

SUB = """
name: greeting
params:
  who: nobody
steps:
  hello:
    log: "hello {{ params.who }}"
  done:
    return: {said: "%s"}
"""


async def test_editing_a_subflow_reloads_the_flow_that_calls_it(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "main.yaml").write_text(MAIN)
    sub = tmp_path / "lib" / "greeting.yaml"
    sub.write_text(SUB % "hi")
    loader = FlowLoader([str(tmp_path)], settle=0)

    first = await loader.rescan("startup")
    [entry] = first.loaded
    assert entry.flow.name == "main" and loader.registry.candidates("office") == (entry,)
    v1 = entry.flow.version
    quiet = await loader.rescan("poll")  # nothing changed: nothing recompiled
    assert not quiet.swapped and not quiet.rejected

    sub.write_text(SUB % "hello there")
    second = await loader.rescan("watch")
    [(old, new)] = second.updated
    assert old.flow.version == v1 and new.flow.version != v1
    assert loader.registry.candidates("office") == (new,)
    assert not (await loader.rescan("poll")).swapped

    # A broken subflow is rejected once, naming the subflow; the last good version serves on.
    sub.write_text("name: greeting\nsteps:\n  hello:\n    plya: []\n")
    third = await loader.rescan("watch")
    assert not third.updated and third.rejected
    [(path, edit)] = third.rejected
    assert path.endswith("main.yaml")
    assert any("greeting.yaml" in error and "plya" in error for error in edit.errors)
    assert loader.files[str(tmp_path / "main.yaml")].entry.flow.version == new.flow.version
    assert not (await loader.rescan("poll")).rejected  # not reported again and again
