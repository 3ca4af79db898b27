"""No orphans: stages and installs die with handoff, however it ends (real processes).

Each test starts real ``handoff`` processes whose commands leave their process group
(``setsid``, coreutils ``timeout``) and then looks for the leftovers in ``/proc`` by a
marker unique to the test (an odd ``sleep`` duration).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")

HANDOFF = str(Path(sys.executable).with_name("handoff"))


def marker() -> str:
    """A ``sleep`` argument no other process uses (``sleep 300.<random>``)."""
    return f"300.{uuid.uuid4().int % 10**9:09d}"


def processes_with(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry))
    return found


def wait_for(predicate, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def write_project(tmp_path: Path, yml: str) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "project.yml").write_text(yml)
    return project


def test_a_timeout_reaches_stages_that_left_the_process_group(tmp_path: Path) -> None:
    """Finding: a stage run through ``timeout`` or ``setsid`` kept a 2 s task running 41 s."""
    a, b, c = marker(), marker(), marker()
    yml = (
        "tasks:\n  - name: t\n    timeout: 1\n    pipeline:\n"
        f"      - {{command: timeout, args: '200 sleep {a}'}}\n"
        f"      - {{command: setsid, args: 'sleep {b}'}}\n"
        f"      - {{command: sh, args: \"-c 'setsid sleep {c} & wait'\"}}\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [HANDOFF, "run", "-w", str(tmp_path / "ws"), "-p", str(write_project(tmp_path, yml))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "task 't' timed out after 1 s" in done.stderr.splitlines()[-1]
    assert time.monotonic() - started < 15
    assert wait_for(lambda: not processes_with(a) + processes_with(b) + processes_with(c), 5)


@pytest.mark.parametrize("verb", ["run", "install"])
def test_sigkill_of_handoff_leaves_no_process_running(tmp_path: Path, verb: str) -> None:
    """Finding: SIGKILL of ``handoff run`` (OOM killer, Airflow) left every stage running
    under PID 1; SIGKILL of ``handoff workspace install`` left pip/uv running."""
    inner, escaped = marker(), marker()
    args = f"-c 'setsid sleep {escaped} & sleep {inner}'"
    if verb == "run":
        yml = f'commands:\n  - command: sh\n    args: "{args}"\n'
        argv = ["run"]
    else:
        yml = f'installs:\n  - venv: v\n    command: "sh {args}"\ncommands: [{{command: echo}}]\n'
        argv = ["workspace", "install"]
    env = {**os.environ, "HANDOFF_VENV_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [HANDOFF, *argv, "-w", str(tmp_path / "ws"), "-p", str(write_project(tmp_path, yml))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert wait_for(lambda: processes_with(inner) and processes_with(escaped), 60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert wait_for(lambda: not processes_with(inner) and not processes_with(escaped), 10), (
        "everything the stage started died with handoff"
    )
