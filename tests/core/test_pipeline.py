"""run_pipeline: OS pipes, pipefail + SIGPIPE, process groups, timeouts, stderr pumps."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from handoff_provider.core.errors import StageError
from handoff_provider.core.run.pipeline import (
    PipelineControl,
    PipelineResult,
    StageSpec,
    run_pipeline,
)

try:
    from .helpers_runtime import read_pid, sh, stage, wait_dead
except ImportError:  # tests/core is not a package
    from helpers_runtime import read_pid, sh, stage, wait_dead


def _run_to_file(
    tmp_path: Path, stages: list[StageSpec], **kwargs: Any
) -> tuple[PipelineResult, str]:
    """``run_pipeline`` with the last stage's stdout in a file: (result, what it holds)."""
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        result = run_pipeline(stages, task="t", cwd=tmp_path, stdout=fd, **kwargs)
    finally:
        os.close(fd)
    return result, path.read_text()


def test_three_stages_flow_through_os_pipes(tmp_path: Path) -> None:
    result, out = _run_to_file(
        tmp_path, [stage("head", "-c", "1000000", "/dev/zero"), stage("cat"), stage("wc", "-c")]
    )
    assert result.ok, result.error
    assert out.strip() == "1000000"
    assert [s.returncode for s in result.stages] == [0, 0, 0]
    assert result.stages[-1].bytes_out == len(out)
    if Path("/proc/self/io").exists():
        # head and cat each wrote the megabyte into their pipe.
        assert result.stages[0].bytes_out == 1000000
        assert result.stages[1].bytes_out == 1000000


def test_adjacent_stages_share_one_kernel_pipe(tmp_path: Path) -> None:
    """Stage 1's stdout and stage 2's stdin are the same pipe: nothing goes via Python."""
    if not Path("/proc/self/fd").exists():
        pytest.skip("needs /proc")
    lines: list[tuple[int, str]] = []
    result = run_pipeline(
        [
            # (via $(...): `cmd >&2` makes dash juggle its own fd 1 while cmd runs)
            sh("fd=$(readlink /proc/$$/fd/1); echo $fd >&2; echo data"),
            sh("fd=$(readlink /proc/$$/fd/0); echo $fd >&2; cat >/dev/null"),
        ],
        task="t",
        cwd=tmp_path,
        on_stderr_line=lambda n, line: lines.append((n, line)),
    )
    assert result.ok, result.error
    got = dict(lines)
    assert got[1].startswith("pipe:[")
    assert got[1] == got[2]


def test_the_pipes_between_stages_hold_a_mebibyte(tmp_path: Path) -> None:
    """Each stage's stdout pipe is widened from Linux's 64 KiB to 1 MiB (fewer context
    switches on bulk data; bench/pipeline_throughput.py), as seen by the stages."""
    max_size = Path("/proc/sys/fs/pipe-max-size")
    if not max_size.exists():
        pytest.skip("needs Linux /proc")
    if int(max_size.read_text()) < 1 << 20 and os.geteuid() != 0:
        pytest.skip("this system's pipe-max-size is below 1 MiB")
    stdin_size = "import fcntl; print(fcntl.fcntl(0, 1032))"  # F_GETPIPE_SZ
    result, out = _run_to_file(
        tmp_path,
        [
            sh("echo data"),
            StageSpec([sys.executable, "-c", stdin_size], dict(os.environ), "stdin size"),
        ],
    )
    assert result.ok, result.error
    assert out.strip() == str(1 << 20)


def test_failing_middle_stage_fails_the_pipeline_and_is_named(tmp_path: Path) -> None:
    result = run_pipeline(
        [stage("echo", "x"), sh("cat >/dev/null; exit 3"), stage("wc", "-l")],
        task="default",
        cwd=tmp_path,
    )
    assert not result.ok
    error = result.error
    assert isinstance(error, StageError)
    assert str(error) == "task 'default' stage 2 exited with status 3: cat >/dev/null; exit 3"
    assert (error.task, error.stage_index, error.exit_code) == ("default", 2, 3)
    assert error.timed_out is False
    # The other stages succeeded: pipefail is about *any* stage.
    assert [s.returncode for s in result.stages] == [0, 3, 0]


def test_last_stage_failure_and_signal_death_are_reported(tmp_path: Path) -> None:
    result = run_pipeline([stage("echo", "x"), sh("kill -9 $$")], task="t", cwd=tmp_path)
    assert result.error is not None
    assert "stage 2 was killed by signal SIGKILL: kill -9 $$" in str(result.error)
    assert result.error.exit_code == 128 + signal.SIGKILL


def test_sigpipe_of_upstream_is_not_a_failure_when_reader_succeeds(tmp_path: Path) -> None:
    """`yes | head -n 1` ends at once: yes dies of SIGPIPE (default action restored in the
    child), the reader succeeded, so the pipeline succeeds."""
    started = time.monotonic()
    result, out = _run_to_file(tmp_path, [stage("yes"), stage("head", "-n", "1")], timeout=30)
    assert time.monotonic() - started < 10
    assert result.ok, result.error
    assert out == "y\n"
    assert result.stages[0].returncode == -signal.SIGPIPE
    assert result.stages[0].excused_sigpipe


def test_sigpipe_counts_when_the_reader_failed(tmp_path: Path) -> None:
    result = run_pipeline(
        [stage("yes"), sh("head -n 1 >/dev/null; exit 4")], task="t", cwd=tmp_path, timeout=30
    )
    assert result.error is not None
    message = str(result.error)
    assert message.startswith("task 't' stage 2 exited with status 4: head -n 1 >/dev/null; exit 4")
    assert "also stage 1 was killed by signal SIGPIPE: yes" in message
    assert result.error.stage_index == 2


def test_timeout_kills_the_whole_group_including_grandchildren(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_pipeline(
        [sh("sleep 1000 & echo $! > sleeper.pid; wait"), stage("cat")],
        task="slow",
        cwd=tmp_path,
        timeout=0.5,
        kill_grace=5,
    )
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert isinstance(result.error, StageError)
    assert result.error.timed_out
    assert "task 'slow' timed out after 0.5 s" in str(result.error)
    assert elapsed < 4, elapsed  # SIGTERM was enough: no wait for the grace period
    assert wait_dead(read_pid(tmp_path / "sleeper.pid"))


def test_timeout_escalates_to_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    # The stage and its grandchild ignore SIGTERM (ignored signals are inherited).
    script = "trap '' TERM; sleep 1000 & echo $! > sleeper.pid; while :; do sleep 0.05; done"
    started = time.monotonic()
    result = run_pipeline([sh(script)], task="t", cwd=tmp_path, timeout=0.3, kill_grace=0.4)
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert result.stages[0].returncode == -signal.SIGKILL
    assert 0.6 <= elapsed < 5, elapsed
    assert wait_dead(read_pid(tmp_path / "sleeper.pid"))


def test_terminate_from_another_thread_kills_everything(tmp_path: Path) -> None:
    control = PipelineControl()
    pid_file = tmp_path / "sleeper.pid"

    def stop() -> None:
        read_pid(pid_file)
        control.terminate("operator on_kill")
        control.terminate("second call is a no-op")

    stopper = threading.Thread(target=stop)
    stopper.start()
    result = run_pipeline(
        [stage("yes"), sh("sleep 1000 & echo $! > sleeper.pid; cat >/dev/null")],
        task="t",
        cwd=tmp_path,
        control=control,
        kill_grace=5,
    )
    stopper.join()
    assert result.terminated == "operator on_kill"
    assert result.error is not None and not result.error.timed_out
    assert "task 't' was terminated (operator on_kill)" in str(result.error)
    assert wait_dead(read_pid(pid_file))


def test_terminated_control_starts_nothing(tmp_path: Path) -> None:
    control = PipelineControl()
    control.terminate("early")
    result = run_pipeline([sh("touch ran")], task="t", cwd=tmp_path, control=control)
    assert result.error is not None
    assert not (tmp_path / "ran").exists()


def test_leftover_background_process_is_cleaned_up_after_success(tmp_path: Path) -> None:
    """A stage exits 0 but leaves a child holding its stderr: the run must neither hang
    nor leave the child behind."""
    started = time.monotonic()
    result = run_pipeline(
        [sh("sleep 1000 & echo $! > sleeper.pid; echo done")],
        task="t",
        cwd=tmp_path,
        kill_grace=5,
    )
    assert result.ok, result.error
    assert time.monotonic() - started < 4
    assert wait_dead(read_pid(tmp_path / "sleeper.pid"))


def test_stderr_is_streamed_in_order_with_stage_numbers_and_saved(tmp_path: Path) -> None:
    lines: list[tuple[int, str]] = []
    logs = [tmp_path / "s1.log", tmp_path / "s2.log"]
    result = run_pipeline(
        [
            sh("for i in 1 2 3; do echo a$i >&2; done; echo x"),
            sh("cat >/dev/null; printf 'b1\\nb2-no-newline' >&2"),
        ],
        task="t",
        cwd=tmp_path,
        stderr_logs=logs,
        on_stderr_line=lambda n, line: lines.append((n, line)),
    )
    assert result.ok, result.error
    assert [line for n, line in lines if n == 1] == ["a1", "a2", "a3"]
    assert [line for n, line in lines if n == 2] == ["b1", "b2-no-newline"]
    assert logs[0].read_text() == "a1\na2\na3\n"
    assert logs[1].read_text() == "b1\nb2-no-newline"


def test_stderr_is_delivered_live_while_the_stage_runs(tmp_path: Path) -> None:
    """The stage waits for a file the callback creates when it sees 'ready': it only
    finishes if the line reached us before the stage ended."""
    script = (
        "echo ready >&2; i=0; while [ ! -e go ]; do sleep 0.02; i=$((i+1)); "
        "[ $i -gt 500 ] && exit 9; done; echo finished >&2"
    )

    def on_line(_n: int, line: str) -> None:
        if line == "ready":
            (tmp_path / "go").touch()

    result = run_pipeline([sh(script)], task="t", cwd=tmp_path, on_stderr_line=on_line)
    assert result.ok, result.error


def test_lots_of_stderr_and_stdout_at_once_do_not_deadlock(tmp_path: Path) -> None:
    script = "head -c 3000000 /dev/zero | tr '\\0' 'e' | fold -w 100 >&2; head -c 2000000 /dev/zero"
    result, out = _run_to_file(
        tmp_path,
        [sh(script), stage("wc", "-c")],
        stderr_logs=[tmp_path / "err.log", None],
        on_stderr_line=lambda n, line: None,
        timeout=60,
    )
    assert result.ok, result.error
    assert out.strip() == "2000000"
    # 30000 lines of 100 characters; fold adds no newline after the last one.
    assert result.stages[0].stderr_bytes == 3029999
    assert (tmp_path / "err.log").stat().st_size == 3029999


def test_a_stage_that_cannot_start_is_a_stage_error(tmp_path: Path) -> None:
    script = tmp_path / "not-a-program"
    script.write_text("no shebang here\n")
    script.chmod(0o755)
    bad = StageSpec(argv=[str(script)], env=dict(os.environ), label="not-a-program")
    with pytest.raises(StageError, match=r"stage 2 \('not-a-program'\) could not start"):
        run_pipeline(
            [sh("sleep 1000 & echo $! > sleeper.pid; wait"), bad],
            task="t",
            cwd=tmp_path,
            kill_grace=1,
        )
    # The stage already started was stopped with its children.
    pid_file = tmp_path / "sleeper.pid"
    if pid_file.exists() and pid_file.read_text().strip():
        assert wait_dead(int(pid_file.read_text()))


def test_first_stage_reads_dev_null(tmp_path: Path) -> None:
    result, out = _run_to_file(tmp_path, [stage("wc", "-c")], timeout=10)
    assert result.ok
    assert out.strip() == "0"


def test_keyboard_interrupt_while_waiting_leaves_no_process(tmp_path: Path) -> None:
    # Ctrl-C as a program without a SIGINT handler of its own gets it, whatever an earlier
    # test of the session installed (the autouse fixture puts the session's handler back)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    pid_file = tmp_path / "sleeper.pid"
    main = threading.main_thread().ident
    assert main is not None

    interrupted_at: list[float] = []

    def interrupt() -> None:
        # (a generous wait: on a loaded machine the stage may take seconds to start; no
        # Ctrl-C at all would end the pipeline by its timeout, without KeyboardInterrupt)
        read_pid(pid_file, timeout=30)
        interrupted_at.append(time.monotonic())
        signal.pthread_kill(main, signal.SIGINT)  # a real Ctrl-C, to the waiting thread

    interrupter = threading.Thread(target=interrupt)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(
            [sh("sleep 1000 & echo $! > sleeper.pid; wait")], task="t", cwd=tmp_path, timeout=60
        )
    interrupter.join()
    assert interrupted_at and time.monotonic() - interrupted_at[0] < 10
    assert wait_dead(read_pid(pid_file))


#: A stage that prints its own parent-death signal (``PR_GET_PDEATHSIG``) and its
#: process group id, then the pid of its parent.
_PDEATHSIG_PROBE = (
    "import ctypes, os\n"
    "value = ctypes.c_int()\n"
    "ctypes.CDLL(None, use_errno=True).prctl(2, ctypes.byref(value), 0, 0, 0)\n"
    "print(value.value, os.getpgid(0) == os.getpid(), os.getppid())\n"
)


@pytest.mark.parametrize("through_setpriv", [True, False], ids=["setpriv", "preexec_fn"])
def test_every_stage_dies_with_handoff_whichever_way_it_is_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, through_setpriv: bool
) -> None:
    """``PR_SET_PDEATHSIG=SIGKILL`` and the pipeline's own process group, set by
    ``setpriv`` (then Python starts the stage with vfork) or, without it, in a
    ``preexec_fn``; and a program ``setpriv`` would run differently (a script without
    ``#!``) still can't start, as before (test above)."""
    import sys

    from handoff_provider.core.run import process_tree

    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    if through_setpriv and process_tree.pdeathsig_prefix() is None:
        pytest.skip("no setpriv with --pdeathsig (util-linux 2.33+) on this system")
    if not through_setpriv:
        monkeypatch.setattr(
            "handoff_provider.core.run.pipeline.pdeathsig_prefix", lambda: None, raising=True
        )
    result, out = _run_to_file(tmp_path, [stage(sys.executable, "-c", _PDEATHSIG_PROBE)])
    assert result.ok, result.error
    signal_number, leader, parent = out.split()
    assert int(signal_number) == signal.SIGKILL
    assert leader == "True"  # the first stage leads the pipeline's new process group
    assert int(parent) == os.getpid()  # setpriv executed the program in its own process


@pytest.mark.parametrize("first_line", ["no shebang here", "#!/nonexistent/interpreter"])
def test_a_program_that_cannot_be_executed_cannot_start_whichever_way(
    tmp_path: Path, first_line: str
) -> None:
    """A script without ``#!`` or with a missing interpreter is a stage that can't start
    (``setpriv`` is not used for it: it would run the first with ``sh`` and turn the
    second into an exit status)."""
    script = tmp_path / "bad-script"
    script.write_text(first_line + "\necho ran\n")
    script.chmod(0o755)
    bad = StageSpec(argv=[str(script)], env=dict(os.environ), label="bad-script")
    with pytest.raises(StageError, match=r"stage 1 \('bad-script'\) could not start"):
        run_pipeline([bad], task="t", cwd=tmp_path, kill_grace=1)
