"""Call traces: `run --trace FILE` writes one JSON line per step; `flowengine trace` reads them."""

from __future__ import annotations

import json

from flowengine.engine.trace import REDACTED, redact
from tests.test_cli_run import run_cli


def test_run_writes_one_json_line_per_step_and_trace_prints_the_timeline(tmp_path):
    trace = tmp_path / "calls.jsonl"
    proc = run_cli("run", "flows/voicemail.yaml", "--time-scale", "0.01", "-q",
                   "--count", "2", "--trace", str(trace))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(records) == 14  # 7 steps, 2 calls
    assert len({r["call"] for r in records}) == 2
    record = next(r for r in records if r["step"] == "take_message")
    assert record["method"] == "calling.record" and record["control_id"]
    assert record["params"]["terminators"] == "#" and record["params"]["beep"] is True
    assert record["outcome"] == "finished" and record["result"]["url"].startswith("http://")
    assert record["flow"] == "voicemail" and len(record["version"]) == 64
    prompt = next(r for r in records if r["step"] == "prompt")
    # Parameters are the rendered ones: the template was filled in for this call.
    assert prompt["params"]["media"][0]["say"].startswith("Hi. You reached sales.")

    shown = run_cli("trace", str(trace), "--call", records[0]["call"][:8])
    assert shown.returncode == 0
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"call {records[0]['call']} — flow voicemail @")
    assert [line.split()[1] for line in lines[1:] if line.startswith("  +")] == [
        "greet", "prompt", "take_message", "check_length", "thanks", "bye", "end"]
    assert "recording: http://" in shown.stdout


def test_trace_skips_lines_that_are_not_records_and_says_so(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"call": "c1", "step": "greet", "action": "answer", "outcome": "answered"}\n'
                     "garbage\n")
    shown = run_cli("trace", str(trace))
    assert shown.returncode == 0
    assert "greet" in shown.stdout
    assert f"{trace}:2: not JSON" in shown.stderr


def test_secrets_are_redacted_at_any_depth():
    params = {"url": "https://hooks.example/x", "headers": {"Authorization": "Bearer abc",
              "X-Api-Key": "k", "Accept": "json"}, "body": [{"password": "p", "user": "u"}]}
    clean = redact(params)
    assert clean["headers"] == {"Authorization": REDACTED, "X-Api-Key": REDACTED,
                                "Accept": "json"}
    assert clean["body"] == [{"password": REDACTED, "user": "u"}]
    assert clean["url"] == "https://hooks.example/x"
    assert params["headers"]["Authorization"] == "Bearer abc"  # the original is untouched
