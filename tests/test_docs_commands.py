"""Every ``flowengine …`` command that README.md and docs/guide.md show in a code block runs,
as shown, in a copy of the project — and prints what the docs say it prints.

Commands are taken from the ``sh`` blocks (the part after ``&&``, before a ``|`` or a
``#`` comment). Each runs in-process through :func:`flowengine.cli.main` on the embedded
simulator, ``--time-scale 0.01`` added where the command has none. Those that need a
SignalWire space are listed in :data:`SKIPPED` with the reason; the long-running ones run
with the simulator flags that make them end (``serve --sim-calls``, a ``simulator`` whose
calls a ``run`` takes). Where a doc shows a command's output in the next block, the lines
shown must appear (numbers, ids and URLs masked: they differ on every run).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from flowengine.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs/guide.md")

#: Commands that cannot run here, with the reason (matched on the command's text).
SKIPPED = {
    "flowengine run flows/voicemail.yaml --count 5":
        "needs a SignalWire space (the credentials exported just before it)",
    "flowengine serve flows/ --metrics-port 9464":
        "needs RELAY credentials; the --simulate line after it runs the same daemon",
}


@dataclass(frozen=True)
class Shown:
    """One command in a doc, and the output block that follows it (if any)."""

    doc: str
    line: int
    command: str
    output: str | None

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.command}"


def shown_commands() -> list[Shown]:
    found: list[Shown] = []
    for doc in DOCS:
        text = (ROOT / doc).read_text(encoding="utf-8")
        for block in re.finditer(r"^```(sh|bash)\n(.*?)^```\n", text, re.DOTALL | re.MULTILINE):
            after = text[block.end():]
            # The output shown for a block: a plain ``` block right after it, or after a
            # short paragraph that ends with a colon ("Each step prints as it ends:").
            output = re.match(r"((?:(?!```)[^\n]*\n){0,8}?)\n?```\n(.*?)^```\n", after,
                              re.DOTALL | re.MULTILINE)
            if output and output[1].strip() and not output[1].strip().endswith(":"):
                output = None
            first = text.count("\n", 0, block.start(2)) + 1
            in_block: list[tuple[int, str]] = []
            for offset, raw in enumerate(block[2].splitlines()):
                line = re.sub(r"\s+#.*$", "", raw).strip()
                for part in line.split("&&"):
                    part = part.split("|")[0].strip()
                    if part.startswith("flowengine "):
                        in_block.append((first + offset, part))
            for i, (number, command) in enumerate(in_block):
                # The output shown after a block is that of its last command.
                last = i == len(in_block) - 1
                found.append(Shown(doc, number, command, output[2] if output and last else None))
    return found


COMMANDS = shown_commands()


def mask(text: str) -> list[str]:
    """Lines with what differs between runs (timings, ids, ports) masked, spaces collapsed;
    everything else — line:col, counts, names — must be as shown."""
    text = re.sub(r"https?://127\.0\.0\.1:\d+/\S+", "URL", text)
    text = re.sub(r"ws://127\.0\.0\.1:\d+", "WS", text)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", text)
    text = re.sub(r"@[0-9a-f]{12}\b", "@VERSION", text)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "TIME", text)
    text = re.sub(r"\b\d+\.\d{3}s\b", "T", text)  # when a step ended: 0.045s
    text = re.sub(r"\b\d+ ms\b", "N ms", text)  # how long it took
    text = re.sub(r"\bsize=\d+", "size=N", text)  # an mp3's size varies with its timing
    return [re.sub(r"\s+", " ", line).strip() for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project with what the docs have the reader add: the guide's hello flow
    and its scenarios, and README's flows/broken.yaml (voicemail.yaml with a typo)."""
    copy = tmp_path_factory.mktemp("docs") / "project"
    shutil.copytree(ROOT / "flows", copy / "flows")
    shutil.copytree(ROOT / "schemas", copy / "schemas")
    guide = (ROOT / "docs" / "guide.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", guide, re.DOTALL)
    (copy / "flows" / "hello.yaml").write_text(blocks[0], encoding="utf-8")
    scenarios = next(b for b in blocks if "\nflow: ../hello.yaml\n" in b)
    (copy / "flows" / "tests" / "hello.test.yaml").write_text(scenarios, encoding="utf-8")
    return copy


def without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SIGNALWIRE_PROJECT_ID", "SIGNALWIRE_API_TOKEN", "SIGNALWIRE_JWT_TOKEN",
                 "SIGNALWIRE_SPACE", "FLOWENGINE_RELAY_URL"):
        monkeypatch.delenv(name, raising=False)


def run_in(project: Path, argv: list[str], capsys: pytest.CaptureFixture[str],
           monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    monkeypatch.chdir(project)
    if argv[0] == "trace":  # its run() binds sys.stdout when imported: a process of its own
        done = subprocess.run([sys.executable, "-m", "flowengine.cli", *argv], cwd=project,
                              capture_output=True, text=True, timeout=60, check=False,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        return done.returncode, done.stdout, done.stderr
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_docs_show_the_commands_this_test_knows():
    texts = [c.command for c in COMMANDS]
    assert len(texts) >= 12
    for skipped in SKIPPED:  # a skip reason for a command the docs no longer show is stale
        assert skipped in texts, skipped
    assert any(c.startswith("flowengine simulator ") for c in texts)
    assert any(c.startswith("flowengine serve ") and "--simulate" in c for c in texts)


@pytest.mark.parametrize("shown", [c for c in COMMANDS if c.command not in SKIPPED
                                   and c.command.split()[1] not in ("simulator", "serve")],
                         ids=str)
def test_a_command_the_docs_show_runs_and_prints_what_they_show(
        shown: Shown, project: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch):
    without_credentials(monkeypatch)
    argv = shown.command.split()[1:]
    if argv[0] == "run" and "--time-scale" not in argv:
        argv += ["--time-scale", "0.01"]
    if argv[0] == "check" and shown.output and "broken.yaml" in shown.output:
        text = (project / "flows" / "voicemail.yaml").read_text(encoding="utf-8")
        (project / "flows" / "broken.yaml").write_text(
            text.replace("end_silence_timeout", "end_silence_timout"), encoding="utf-8")
        try:
            code, out, err = run_in(project, argv, capsys, monkeypatch)
        finally:
            (project / "flows" / "broken.yaml").unlink()
        assert code == 1
    else:
        if argv[0] == "trace" and not (project / argv[1]).exists():
            # The guide writes the trace with the run just before it.
            main(["run", "flows/voicemail.yaml", "--time-scale", "0.01", "--trace", argv[1]])
            capsys.readouterr()
        code, out, err = run_in(project, argv, capsys, monkeypatch)
        assert code == 0, f"{shown}\n{out}\n{err}"
    if argv[0] == "graph" and "--format" in argv:
        assert out.startswith("digraph")
    if shown.output and argv[0] not in ("graph",):
        if "error:" in shown.output and argv[0] == "check" and "broken.yaml" not in shown.output:
            return  # the guide's check output is for a flow with typos: test_scenario_guide
        missing = [line for line in mask(shown.output) if line not in mask(out + err)]
        assert not missing, f"{shown}: shown but not printed:\n" + "\n".join(missing) + \
            f"\n--- printed:\n{out}{err}"


def test_serve_simulate_as_shown_serves_simulated_calls(project: Path):
    [shown] = [c for c in COMMANDS if c.command.startswith("flowengine serve ")
               and "--simulate" in c.command]
    from flowengine.flow import load_flow

    # hello too; flows for calls we place (outbound:) are offered no inbound call.
    flows = sorted(p.stem for p in (project / "flows").glob("*.yaml")
                   if load_flow(p).outbound is None)
    assert "voicemail" in flows and "reminder" not in flows
    # One simulated call per flow, one flow after another: each flow must take its call.
    argv = [*shown.command.split()[1:], "--sim-calls", str(len(flows)), "--no-watch"]
    run = subprocess.run([sys.executable, "-m", "flowengine.cli", *argv], cwd=project,
                         capture_output=True, text=True, timeout=60, check=False,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "take the same calls" not in run.stderr
    served = sorted(set(re.findall(r" (\w+)@[0-9a-f]{12}\] call ended: completed", run.stderr)))
    assert served == flows, run.stderr[-3000:]


def test_the_simulator_as_shown_prints_the_lines_shown_and_a_run_takes_its_calls(
        project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    without_credentials(monkeypatch)
    [shown] = [c for c in COMMANDS if c.doc == "README.md"
               and c.command.startswith("flowengine simulator ")]
    argv = shown.command.split()[1:]
    port = argv.index("--port") + 1
    assert argv[port] == "8765"
    argv[port] = "0"
    sim = subprocess.Popen([sys.executable, "-m", "flowengine.cli", *argv, "--time-scale", "0.01"],
                           cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert sim.stdout is not None and sim.stderr is not None
        url = sim.stdout.readline().strip()
        assert shown.output is not None
        expected = shown.output.replace("ws://127.0.0.1:8765", url).splitlines()
        got = [url] + [sim.stderr.readline().rstrip("\n") for _ in expected[1:]]
        assert got == expected
        # README: "flowengine run flows/voicemail.yaml --relay-url … --count 10 … takes its
        # ten calls".
        code, out, err = run_in(project, ["run", "flows/voicemail.yaml", "--relay-url", url,
                                          "--count", "10"], capsys, monkeypatch)
        assert code == 0, out + err
        assert sim.wait(timeout=30) == 0
    finally:
        sim.kill()
        sim.communicate(timeout=30)
