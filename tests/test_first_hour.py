"""What a new user meets in the first hour: each problem found by trying the README and the
guide from a clean clone, kept fixed here (issue "The first hour")."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from flowengine.cli import main

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "docs" / "guide.md").read_text(encoding="utf-8")


def flowengine(*args: str, cwd: Path = ROOT, stdout: int | None = subprocess.PIPE,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``flowengine ARGS`` as a user runs it, in its own process."""
    return subprocess.run([sys.executable, "-m", "flowengine.cli", *args], cwd=cwd,
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=timeout,
                          check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})


def guide_files() -> tuple[str, str]:
    """The guide's flows/hello.yaml and flows/tests/hello.test.yaml, as it shows them."""
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE, re.DOTALL)
    flow = blocks[0]
    scenarios = next(b for b in blocks if "\nflow: ../hello.yaml\n" in b)
    assert flow.startswith("# yaml-language-server") and "name: hello" in flow
    return flow, scenarios


# -- 2. a bad --caller is a clean error --------------------------------------------------

def test_run_with_a_bad_caller_script_says_so_and_exits_2(capsys: pytest.CaptureFixture[str]):
    code = main(["run", str(ROOT / "flows" / "voicemail.yaml"), "--caller", "speak:x"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith("error: --caller: unknown caller clause 'speak:x'")
    assert len(err.splitlines()) == 1


# -- 9. a reader that goes away (`| dot` with no dot, `| head`) ---------------------------

@pytest.mark.parametrize("args", [
    ("graph", "flows/voicemail.yaml", "--format", "dot"),
    ("check", "flows/", "--format", "json"),
    ("run", "flows/voicemail.yaml", "--time-scale", "0.01"),
], ids=lambda a: a[0])
def test_a_closed_pipe_ends_the_command_quietly(args: tuple[str, ...]):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: every write fails
    try:
        run = flowengine(*args, stdout=write_end)
    finally:
        os.close(write_end)
    assert run.stderr == ""
    assert run.returncode == 141  # what a shell reports for a process ended by SIGPIPE


# -- 1. following the guide must not break the project's own tests ------------------------

def project_copy(tmp_path: Path) -> Path:
    """A copy of the project's flows and tests (flowengine itself is imported from ROOT)."""
    copy = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("flows", "tests", "schemas"):
        shutil.copytree(ROOT / part, copy / part, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_the_guides_flow_and_scenarios_leave_the_suites_coverage_checks_passing(tmp_path):
    copy = project_copy(tmp_path)
    flow, scenarios = guide_files()
    (copy / "flows" / "hello.yaml").write_text(flow, encoding="utf-8")
    (copy / "flows" / "tests" / "hello.test.yaml").write_text(scenarios, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_scenarios.py", "tests/test_scenario_cli.py", "-k",
         "every_example_flow or take_every_edge or default_path_is_flows"],
        cwd=copy, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.search(r"\b3 passed\b", run.stdout), run.stdout[-2000:]


# -- 4. the shipped flows (and the guide's) each get calls; a tie is warned about once ----

def tie_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "tie"]


@pytest.mark.anyio
async def test_the_shipped_flows_and_the_guides_do_not_shadow_each_other(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    from flowengine.daemon import FlowLoader

    shutil.copytree(ROOT / "flows", tmp_path / "flows",
                    ignore=shutil.ignore_patterns("tests"))
    (tmp_path / "flows" / "hello.yaml").write_text(guide_files()[0], encoding="utf-8")
    caplog.set_level("INFO", logger="flowengine")
    loader = FlowLoader([str(tmp_path / "flows")], settle=0)
    report = await loader.rescan("start")
    # Every shipped flow, and the guide's hello.
    assert report.ok_count == len(list((ROOT / "flows").glob("*.yaml"))) + 1
    assert tie_warnings(caplog) == []
    assert loader.registry.ties() == []


def small_flow(name: str, say: str = "hi", match: str = "") -> str:
    return (f"name: {name}\ncontext: office\n{match}steps:\n  greet:\n    answer: {{}}\n"
            f"  hello:\n    play: [{{say: \"{say}\"}}]\n")


@pytest.mark.anyio
async def test_a_tie_is_warned_about_once_not_on_every_reload(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    from flowengine.daemon import FlowLoader

    caplog.set_level("INFO", logger="flowengine")
    (tmp_path / "a.yaml").write_text(small_flow("a_flow"))
    (tmp_path / "b.yaml").write_text(small_flow("b_flow"))
    loader = FlowLoader([str(tmp_path)], settle=0)
    await loader.rescan("start")
    assert len(tie_warnings(caplog)) == 1
    assert "a_flow wins, b_flow never gets them" in tie_warnings(caplog)[0]

    # Edits that keep the tie (a new version of one of the two, another flow) say nothing.
    (tmp_path / "b.yaml").write_text(small_flow("b_flow", say="hello again"))
    (tmp_path / "c.yaml").write_text(small_flow("c_flow", match='match: {to: "+15550000001"}\n'))
    assert (await loader.rescan("edit")).swapped
    assert len(tie_warnings(caplog)) == 1

    # The tie ends, then comes back: that is a change, and it is warned about again.
    (tmp_path / "b.yaml").write_text(small_flow("b_flow", match='match: {to: "+15550000002"}\n'))
    assert (await loader.rescan("edit")).swapped
    assert len(tie_warnings(caplog)) == 1
    (tmp_path / "b.yaml").write_text(small_flow("b_flow"))
    assert (await loader.rescan("edit")).swapped
    assert len(tie_warnings(caplog)) == 2


# -- 3. a simulator started as the README shows: its first lines say how to use it ---------

class SimulatorProcess:
    """``flowengine simulator ARGS`` in its own process; the URL and the lines after it."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowengine.cli", "simulator", "--port", "0", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert self.process.stdout is not None and self.process.stderr is not None
        self.url = self.process.stdout.readline().strip()
        # A reader thread, so that a simulator printing fewer lines fails the test, not hangs it.
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.process.stderr],
                         daemon=True).start()
        self.hint: list[str] = []
        for _ in range(5):
            try:
                self.hint.append(lines.get(timeout=10).rstrip("\n"))
            except queue.Empty:
                break

    def stop(self) -> None:
        self.process.terminate()
        self.process.communicate(timeout=30)


def without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SIGNALWIRE_PROJECT_ID", "SIGNALWIRE_API_TOKEN", "SIGNALWIRE_JWT_TOKEN",
                 "SIGNALWIRE_SPACE", "FLOWENGINE_RELAY_URL"):
        monkeypatch.delenv(name, raising=False)


def test_the_simulators_first_lines_give_a_run_command_that_works(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    without_credentials(monkeypatch)
    sim = SimulatorProcess("--context", "office", "--calls", "1", "--time-scale", "0.01")
    try:
        assert sim.url.startswith("ws://127.0.0.1:")
        assert sim.hint[0] == (f"RELAY simulator at {sim.url}: offers 1 call(s) on context "
                               "'office' once a client subscribes to it")
        command = next(line.strip() for line in sim.hint if line.strip().startswith(
            "flowengine run "))
        assert command == f"flowengine run FLOW.yaml --relay-url {sim.url}"
        args = command.replace("FLOW.yaml", str(ROOT / "flows" / "voicemail.yaml")).split()
        code = main(args[1:])
        out = capsys.readouterr()
        assert code == 0, out.out + out.err
        assert "flow completed" in out.out
        assert sim.process.wait(timeout=30) == 0  # its one call ended: it exits by itself
    finally:
        sim.stop()


def test_a_simulator_given_credentials_checks_them_and_says_which_to_set(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    without_credentials(monkeypatch)
    sim = SimulatorProcess("--context", "office", "--project", "p-1", "--token", "t-secret")
    try:
        assert "SIGNALWIRE_PROJECT_ID=<your --project> SIGNALWIRE_API_TOKEN=<your --token> " \
               f"flowengine run FLOW.yaml --relay-url {sim.url}" in "\n".join(sim.hint)
        assert not any("t-secret" in line for line in sim.hint)
        code = main(["run", str(ROOT / "flows" / "voicemail.yaml"), "--relay-url", sim.url])
        assert code == 1
        assert "rejected the credentials" in capsys.readouterr().err
    finally:
        sim.stop()


# -- 5. what the docs say is what flowengine does -----------------------------------------

def test_every_action_the_reference_offers_empty_braces_for_accepts_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    reference = (ROOT / "docs" / "actions.md").read_text(encoding="utf-8")
    sections = re.split(r"^## ", reference, flags=re.MULTILINE)[1:]
    offered = [s.split("\n", 1)[0].strip() for s in sections
               if re.search(r"^A mapping \(`\{\}`.*for the defaults\):$", s, re.MULTILINE)]
    assert "record" in offered and "answer" in offered
    for action in offered:
        flow = tmp_path / f"{action}.yaml"
        flow.write_text(f"name: t_{action}\ncontext: office\nsteps:\n  greet:\n    answer: {{}}\n"
                        f"  it:\n    {action}: {{}}\n", encoding="utf-8")
        code = main(["check", str(flow)])
        assert code == 0, f"{action}: {{}} is offered, but check says {capsys.readouterr().out}"


def test_the_guide_and_testing_md_describe_what_exists():
    testing = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    assert "not built yet" not in GUIDE and "flowengine serve flows/" in GUIDE
    assert "hang up\nonly after the answer" not in testing
    assert "`caller: hangup@ring`" in testing
    # ... and what testing.md says a scenario can do, one does: hangup@ring takes the hangup
    # edge of the answer step.
    scenarios = (ROOT / "flows" / "tests" / "voicemail.test.yaml").read_text(encoding="utf-8")
    assert "caller: hangup@ring" in scenarios


# -- 7. YAML mistakes: plain words, the line and column of the mistake, a hint -------------

HEAD = "name: t\ncontext: office\nsteps:\n  greet:\n    answer: {}\n"  # lines 1-5


@pytest.mark.parametrize(("body", "expected"), [
    # An unquoted ": " inside a say.
    ("  hello:\n    play:\n      - say: Hello: you reached us\n",
     "t.yaml:8:19: error: a ': ' inside a value: YAML reads it as the start of a mapping; "
     'quote the value: - say: "Hello: you reached us"'),
    # A key without its colon: libyaml notices it on the next line.
    ("  bye\n    hangup: {}\n",
     "t.yaml:6:6: error: 'bye' has no ':' after it; write 'bye:' to start a mapping"),
    # A [ never closed: noticed on the next line, written on this one.
    ("  hello:\n    play: [{say: \"x\"}\n  bye:\n    hangup: {}\n",
     "t.yaml:7:11: error: this [ … ] list is not closed, or two of its items have no ',' "
     "between them; end it with ']' and separate its items with ','"),
    # A quote never closed: noticed at the end of the file.
    ("  hello:\n    play:\n      - say: \"Hello\n  bye:\n    hangup: {}\n",
     "t.yaml:8:14: error: this quoted text is never closed; end it with \" "
     "(write \\\" for a \" inside it)"),
    # play: {say: …} — a mapping where the list of media items belongs.
    ("  hello:\n    play: {say: \"Hello\"}\n",
     "t.yaml:7:11: error: play takes a list of media items, not one mapping; write each item "
     "on its own line starting with '- ' ('- say: …'), or [{say: …}]"),
    # The same for every list of media items the specs name (a prompt's re-prompt here).
    ("  ask:\n    prompt:\n      play: [{say: \"Pick one\"}]\n      digits: {}\n"
     "      max_attempts: 2\n      no_input_play: {say: \"Again?\"}\n",
     "t.yaml:11:22: error: no_input_play takes a list of media items, not one mapping; write "
     "each item on its own line starting with '- ' ('- say: …'), or [{say: …}]"),
], ids=["colon-in-say", "missing-colon", "unclosed-list", "unclosed-quote", "play-mapping",
        "reprompt-mapping"])
def test_a_yaml_mistake_gets_one_clear_error_where_it_was_made(
        body: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):
    monkeypatch.chdir(tmp_path)
    Path("t.yaml").write_text(HEAD + body, encoding="utf-8")
    assert main(["check", "t.yaml"]) == 1
    assert capsys.readouterr().out.splitlines() == [expected]


# -- 8. one rule for numbers: the loader reads what editors read, and the schema judges ----

@pytest.mark.parametrize(("line", "written"), [
    ("match:\n  to: +15559870000\n", "+15559870000"),
    ("steps:\n  greet:\n    connect: {to: +15559870000}\n", "+15559870000"),
    ("steps:\n  greet:\n    send_digits: 0123\n", "0123"),
], ids=["match.to", "connect.to", "send_digits"])
def test_an_unquoted_number_where_text_is_required_is_refused_with_quote_it(
        line: str, written: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):
    import jsonschema

    from flowengine.flow.loader import load_yaml
    from flowengine.flow.schema import flow_schema

    text = "name: t\ncontext: office\n" + line
    if not line.startswith("steps:"):
        text += "steps:\n  greet:\n    answer: {}\n"
    monkeypatch.chdir(tmp_path)
    Path("t.yaml").write_text(text, encoding="utf-8")
    assert main(["check", "t.yaml"]) == 1
    out = capsys.readouterr().out
    assert re.search(f'must be text( or a mapping)?, not the number {re.escape(written)}; '
                     f'quote it: "{re.escape(written)}"', out), out
    # What an editor does — YAML 1.2 core, then the JSON Schema — refuses it too; quoted,
    # both accept it.
    data = load_yaml(text, "t.yaml").data
    assert not jsonschema.Draft7Validator(flow_schema()).is_valid(data)
    quoted = load_yaml(text.replace(written, f'"{written}"'), "t.yaml").data
    assert jsonschema.Draft7Validator(flow_schema()).is_valid(quoted)
    Path("t.yaml").write_text(text.replace(written, f'"{written}"'), encoding="utf-8")
    assert main(["check", "t.yaml"]) == 0


def test_a_number_kept_with_its_text_copies_and_runs_like_a_number(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    import copy
    import pickle

    from flowengine.flow.loader import load_yaml

    data = load_yaml("a: +15551230000\nb: 0123\nc: .5\n", "t.yaml").data
    assert data == {"a": 15551230000, "b": 123, "c": 0.5}
    for again in (copy.deepcopy(data), pickle.loads(pickle.dumps(data))):
        assert again == data and again["a"].written == "+15551230000"
    # A flow with such numbers in vars runs (the engine copies vars for every call).
    monkeypatch.chdir(tmp_path)
    Path("v.yaml").write_text("name: v\ncontext: office\nvars: {pin: 0123, x: +5}\nsteps:\n"
                              "  greet:\n    answer: {}\n"
                              "  say:\n    log: \"{{ vars.pin + vars.x }}\"\n",
                              encoding="utf-8")
    assert main(["run", "v.yaml", "--time-scale", "0.01"]) == 0
    assert "128" in capsys.readouterr().out
