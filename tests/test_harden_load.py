"""``flowengine check`` on hostile flow files: bounded, confined, and telling where.

A subflow that is a FIFO, ``/dev/zero`` or a 2 GiB file is refused at once; ``call:``
reads nothing outside the flow directory and never shows a file's contents; a 10,000-step
flow checks in linear time and memory; NUL characters, link loops and huge values get
short, positioned messages.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowengine.flow import check_paths, compile_flow

FLOWENGINE = str(Path(sys.executable).parent / "flowengine")


def calling(path: Path, target: str, name: str | None = None) -> Path:
    """A flow whose one step calls the subflow ``target``, as written."""
    path.write_text(f"name: {name or path.stem}\nsteps:\n  sub:\n    call: {target}\n")
    return path


def check(*paths: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``flowengine check`` as a command: a hang is a timeout, not a stuck test run."""
    return subprocess.run([FLOWENGINE, "check", *map(str, paths)], capture_output=True,
                          text=True, timeout=timeout, cwd=paths[0].parent, check=False)


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    (tmp_path / "flows" / "lib").mkdir(parents=True)
    return tmp_path / "flows"


# ------------------------------------------------------------------ bounded reading

def test_a_fifo_subflow_is_refused_without_waiting_for_a_writer(flows: Path) -> None:
    os.mkfifo(flows / "lib" / "pipe.yaml")
    main = calling(flows / "main.yaml", "lib/pipe.yaml")
    done = check(main)
    assert done.returncode == 1
    assert (f"{main}:4:11: error: cannot read the subflow lib/pipe.yaml: it is a FIFO "
            "(named pipe), not a regular file") in done.stdout


def test_a_fifo_named_on_the_command_line_is_refused(flows: Path) -> None:
    os.mkfifo(flows / "pipe.yaml")
    done = check(flows / "pipe.yaml")
    assert done.returncode == 1
    assert "pipe.yaml: error: cannot read the file: it is a FIFO" in done.stdout


def test_a_fifo_in_a_checked_directory_is_reported_not_skipped(flows: Path) -> None:
    os.mkfifo(flows / "pipe.yaml")
    (flows / "good.yaml").write_text("name: good\nsteps:\n  a:\n    log: x\n")
    assert [str(d) for d in check_paths([flows])] == [
        (f"{flows}/pipe.yaml: error: cannot read the file: it is a FIFO (named pipe), not a "
         "regular file")]


def test_dev_zero_as_a_subflow_is_never_read(flows: Path) -> None:
    (flows / "lib" / "zero.yaml").symlink_to("/dev/zero")
    direct = calling(flows / "direct.yaml", "/dev/zero")
    linked = calling(flows / "linked.yaml", "lib/zero.yaml")
    done = check(direct, linked)
    assert done.returncode == 1
    assert f"{direct}:4:11: error: the subflow path /dev/zero is absolute" in done.stdout
    assert (f"{linked}:4:11: error: the subflow lib/zero.yaml is a symbolic link to outside "
            "the flow directory") in done.stdout


def test_a_device_is_refused_by_its_type(tmp_path: Path) -> None:
    # Named directly, /dev/zero is opened and fstat'ed, never read.
    done = check(Path("/dev/zero"))
    assert done.returncode == 1
    assert ("/dev/zero: error: cannot read the file: it is a device, not a regular file"
            in done.stdout)


def test_a_2_gib_file_is_refused_by_its_size_before_it_is_read(flows: Path) -> None:
    big = flows / "lib" / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(2 << 30)  # sparse: no disk used
    main = calling(flows / "main.yaml", "lib/big.yaml")
    done = check(main, big)
    assert done.returncode == 1
    assert (f"{main}:4:11: error: cannot read the subflow lib/big.yaml: the file is too large "
            "(2147483648 bytes; at most 1048576)") in done.stdout
    assert f"{big}: error: the file is too large (2147483648 bytes" in done.stdout


def long_flow(steps: int) -> str:
    """A valid flow of ``steps`` steps with few templates (the graph checks, not Jinja, are
    what grew with the square of the size): logs, a branch every 10 steps, a set and a
    template reading an earlier step every 50."""
    lines = ["name: long", "vars:", "  n: 0", "steps:"]
    for i in range(steps):
        lines.append(f"  s{i}:")
        if i == steps - 1:
            lines.append("    hangup: {}")
        elif i % 10 == 5:
            lines += ["    branch:", f"      - when: vars.n > {i}", f"        goto: s{i + 2}",
                      f"      - goto: s{i + 1}"]
        elif i % 50 == 7:
            lines.append(f'    log: "after {{{{ steps.s{i - 3} }}}}"')
        elif i % 50 == 9:
            lines += ["    set:", f"      n: {i}"]
        else:
            lines.append(f"    log: step {i}")
    return "\n".join(lines) + "\n"


def test_a_10000_step_flow_checks_within_bounds_of_time_and_memory(tmp_path: Path) -> None:
    # A hang and memory detector, not a timing: when quadratic this took over 100 s and
    # 5 GiB; it takes seconds and under 100 MiB now.
    path = tmp_path / "long.yaml"
    path.write_text(long_flow(10_000))
    child = subprocess.Popen([FLOWENGINE, "check", str(path)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            child.kill()
            child.wait()
            pytest.fail("flowengine check of 10,000 steps did not finish in 120 s")
        time.sleep(0.05)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    assert child.returncode == 0
    # ru_maxrss is in KiB.
    assert usage.ru_maxrss < 1024 * 1024, f"peak {usage.ru_maxrss // 1024} MiB"


# ------------------------------------------------------------------ confined call:

def test_call_of_an_absolute_path_is_refused_without_reading_it(flows: Path) -> None:
    main = calling(flows / "main.yaml", "/etc/passwd")
    done = check(main)
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == (
        f"{main}:4:11: error: the subflow path /etc/passwd is absolute; write it relative to "
        "this file; subflows live in the flow's directory or below it (lib/)")
    assert "root:" not in done.stdout and "/bin/" not in done.stdout


def test_call_out_of_the_flow_directory_is_refused_and_its_keys_never_shown(tmp_path: Path,
                                                                           flows: Path) -> None:
    (tmp_path / "outside.yaml").write_text(
        "name: outside\nsteps:\n  a:\n    log: x\nsecret_key_7f3a: hunter2\n")
    main = calling(flows / "main.yaml", "../outside.yaml")
    deeper = calling(flows / "lib" / "deeper.yaml", "../../outside.yaml", "deeper")
    done = check(main, deeper)
    assert done.returncode == 1
    assert (f"{main}:4:11: error: the subflow ../outside.yaml is outside the flow "
            "directory") in done.stdout
    assert (f"{deeper}:4:11: error: the subflow ../../outside.yaml is outside the flow "
            "directory") in done.stdout
    assert "secret_key_7f3a" not in done.stdout and "hunter2" not in done.stdout


def test_a_link_out_of_the_flow_directory_is_refused(tmp_path: Path, flows: Path) -> None:
    (tmp_path / "outside.yaml").write_text("name: o\nsteps:\n  a:\n    log: x\nsecret_7f3a: 1\n")
    (flows / "lib" / "out.yaml").symlink_to(tmp_path / "outside.yaml")
    main = calling(flows / "main.yaml", "lib/out.yaml")
    diagnostics = [str(d) for d in check_paths([main])]
    assert diagnostics == [(f"{main}:4:11: error: the subflow lib/out.yaml is a symbolic link "
                            "to outside the flow directory; subflows live in the flow's "
                            "directory or below it (lib/)")]


def test_a_subflow_inside_the_directory_and_a_link_within_it_still_load(flows: Path) -> None:
    (flows / "lib" / "greet.yaml").write_text("name: greet\nsteps:\n  hi:\n    log: hi\n")
    (flows / "lib" / "alias.yaml").symlink_to(flows / "lib" / "greet.yaml")
    (flows / "lib" / "up.yaml").write_text("name: up\nsteps:\n  a:\n    call: ../main2.yaml\n")
    (flows / "main2.yaml").write_text("name: main2\nsteps:\n  a:\n    log: x\n")
    main = calling(flows / "main.yaml", "lib/alias.yaml")
    uses_up = calling(flows / "uses_up.yaml", "lib/up.yaml")
    assert [d for d in check_paths([main, uses_up]) if d.is_error] == []


def test_a_yaml_file_that_is_not_a_flow_is_not_listed_back(flows: Path) -> None:
    (flows / "lib" / "settings.yaml").write_text("db_password: hunter2\napi_key: abc\n")
    main = calling(flows / "main.yaml", "lib/settings.yaml")
    found = [str(d) for d in check_paths([main])]
    assert f"{flows}/lib/settings.yaml:1:1: error: this is not a flow file: a flow is a " \
           "mapping with name, steps, …; a flow file has name: and steps: at the top" in found
    assert not any("db_password" in line or "api_key" in line for line in found)


def test_a_subflow_that_is_not_a_yaml_file_is_refused(flows: Path) -> None:
    (flows / "lib" / "notes.txt").write_text("name: x\nsteps:\n  a:\n    log: x\n")
    main = calling(flows / "main.yaml", "lib/notes.txt")
    assert [str(d) for d in check_paths([main])] == [
        (f"{main}:4:11: error: the subflow lib/notes.txt is not a flow file (*.yaml or *.yml); "
         "subflows live in the flow's directory or below it (lib/)")]


# ------------------------------------------------------------------ positioned, short messages

def test_a_nul_character_is_reported_at_its_line_and_column() -> None:
    result = compile_flow(b"name: x\nsteps:\n  a:\n    log: hi\x00there\n", "t.yaml")
    assert [str(d) for d in result.diagnostics] == [
        ("t.yaml:4:12: error: a NUL character is not allowed in a flow file; a flow file is "
         "YAML text; is this a binary file?")]


def test_a_control_character_is_reported_at_its_line_and_column() -> None:
    result = compile_flow("name: x\nsteps:\n  a:\n    log: \x1b[31mred\n", "t.yaml")
    assert [(d.line, d.col, d.message) for d in result.diagnostics] == [
        (4, 10, "the control character U+001B is not allowed in a flow file")]


def test_a_symlink_loop_is_called_a_loop(flows: Path) -> None:
    (flows / "loop.yaml").symlink_to(flows / "loop.yaml")
    message = ("error: cannot read the file: it is a symbolic link loop (the link leads back "
               "to itself, directly or through other links)")
    assert [str(d) for d in check_paths([flows])] == [f"{flows}/loop.yaml: {message}"]
    assert [str(d) for d in check_paths([flows / "loop.yaml"])] == [
        f"{flows}/loop.yaml: {message}"]
    main = calling(flows / "main.yaml", "loop.yaml")
    assert [d.message for d in check_paths([main])] == [
        ("cannot read the subflow loop.yaml: it is a symbolic link loop (the link leads back to "
         "itself, directly or through other links)")]


def test_a_huge_number_is_not_echoed_whole() -> None:
    digits = "7" * 100_000
    result = compile_flow(f"name: x\nsteps:\n  a:\n    sleep: {digits}\n", "t.yaml")
    assert result.version is None
    for d in result.diagnostics:
        assert len(str(d)) < 300, str(d)[:200]
    assert any("7" * 40 + "…" in d.message for d in result.diagnostics)


def test_a_huge_key_is_not_echoed_whole() -> None:
    key = "k" * 1000  # YAML's longest simple key is 1024 characters
    result = compile_flow(f"name: x\nsteps:\n  a:\n    log: x\n    {key}: 1\n", "t.yaml")
    assert [len(str(d)) < 300 for d in result.diagnostics] == [True]
    assert "k" * 60 + "…" in result.diagnostics[0].message
