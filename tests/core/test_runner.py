"""ProjectRunner: tasks, state handling, run.json, env, command resolution, terminate."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from pathlib import Path

import pytest

from handoff_provider.core.errors import StageError, TemplateError
from handoff_provider.core.model.project import EnvVar
from handoff_provider.core.model.secrets import SecretRedactor
from handoff_provider.core.run.runner import ProjectRunner
from handoff_provider.core.run.summary import RunSummary, read_run_summary
from handoff_provider.core.run.workspace import Workspace

try:
    from .helpers_runtime import cmd, project, read_pid, task, wait_dead
except ImportError:  # tests/core is not a package
    from helpers_runtime import cmd, project, read_pid, task, wait_dead


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws").prepare()


def _runner(proj, ws: Workspace, **kwargs) -> tuple[ProjectRunner, list[str]]:
    lines: list[str] = []
    kwargs.setdefault("kill_grace", 2.0)
    runner = ProjectRunner(proj, ws, kwargs.pop("venvs", {}), log=lines.append, **kwargs)
    return runner, lines


def _run_json(ws: Workspace) -> dict:
    return json.loads(ws.run_summary_path.read_text())


def _artifacts(ws: Workspace) -> set[str]:
    return {p.name for p in ws.artifacts_dir.iterdir()}


def test_pipeline_task_writes_state_and_summary(ws: Workspace) -> None:
    (ws.files_dir / "lines.txt").write_text("a\nb\nc\n")
    proj = project(task("default", cmd("cat", "files/lines.txt"), cmd("wc", "-l")))
    runner, _ = _runner(proj, ws)
    summary = runner.run()
    assert summary.succeeded
    assert ws.state_path.read_text().strip() == "3"
    data = _run_json(ws)
    assert data == json.loads(json.dumps(summary.to_dict()))
    assert data["status"] == "success" and data["error"] is None
    (task_data,) = data["tasks"]
    assert task_data["status"] == "success" and task_data["state_updated"] is True
    stages = task_data["stages"]
    assert [s["command"] for s in stages] == ["cat files/lines.txt", "wc -l"]
    assert [s["index"] for s in stages] == [1, 2]
    assert [s["exit_code"] for s in stages] == [0, 0]
    assert stages[1]["bytes_out"] == ws.state_path.stat().st_size
    assert all(s["seconds"] is not None for s in stages)
    assert read_run_summary(ws).tasks[0].stages[1].command == "wc -l"  # type: ignore[union-attr]


def test_failing_stage_fails_the_run_names_it_and_keeps_the_previous_state(
    ws: Workspace,
) -> None:
    ws.state_path.write_text("previous state\n")
    proj = project(task("default", cmd("echo", "new"), cmd("sh", "-c 'cat; exit 3'")))
    runner, lines = _runner(proj, ws)
    with pytest.raises(StageError) as caught:
        runner.run()
    message = str(caught.value)
    assert message == "task 'default' stage 2 exited with status 3: sh -c 'cat; exit 3'"
    assert caught.value.stage_index == 2 and caught.value.exit_code == 3
    assert ws.state_path.read_text() == "previous state\n"
    assert not [n for n in _artifacts(ws) if n.endswith(".tmp")]  # no temp state left
    # What the failed pipeline produced is kept aside for debugging.
    assert (ws.artifacts_dir / "default.stdout.log").read_text() == "new\n"
    data = _run_json(ws)
    assert data["status"] == "failed"
    assert data["error"] == message
    assert data["tasks"][0]["status"] == "failed"
    assert data["tasks"][0]["state_updated"] is False
    assert [s["status"] for s in data["tasks"][0]["stages"]] == ["ok", "failed"]
    assert lines[-1] == message  # the failure line names the stage first


def test_state_replaced_only_on_success_across_runs(ws: Workspace) -> None:
    good = project(task("default", cmd("echo", "one")))
    _runner(good, ws)[0].run()
    assert ws.state_path.read_text() == "one\n"
    # The failing run writes output first, then fails: the state must not change.
    bad = project(task("default", cmd("sh", "-c 'echo two; exit 1'")))
    with pytest.raises(StageError):
        _runner(bad, ws)[0].run()
    assert ws.state_path.read_text() == "one\n"


def test_state_from_stderr_uses_last_stage_stderr(ws: Workspace) -> None:
    proj = project(
        task(
            "t",
            cmd("echo", "data"),
            cmd("sh", '-c \'cat; echo "{\\"bookmark\\": 7}" >&2\''),
            state_from="stderr",
        )
    )
    _runner(proj, ws)[0].run()
    assert ws.state_path.read_text() == '{"bookmark": 7}\n'
    assert (ws.artifacts_dir / "t.stdout.log").read_text() == "data\n"
    assert (ws.artifacts_dir / "t.2.stderr.log").read_text() == '{"bookmark": 7}\n'


def test_state_from_none_leaves_state_and_logs_stdout(ws: Workspace) -> None:
    ws.state_path.write_text("keep")
    proj = project(task("t", cmd("echo", "out"), state_from="none"))
    summary = _runner(proj, ws)[0].run()
    assert ws.state_path.read_text() == "keep"
    assert (ws.artifacts_dir / "t.stdout.log").read_text() == "out\n"
    assert summary.tasks[0].state_updated is False


def test_commands_task_runs_sequentially_with_per_command_logs(ws: Workspace) -> None:
    proj = project(
        task(
            "steps",
            cmd("sh", "-c 'echo first > artifacts/order; echo out1'"),
            cmd("sh", "-c 'echo second >> artifacts/order; echo out2; echo err2 >&2'"),
            cmd("cat", "artifacts/order"),
            kind="commands",
        )
    )
    summary = _runner(proj, ws)[0].run()
    assert (ws.artifacts_dir / "steps.1.stdout.log").read_text() == "out1\n"
    assert (ws.artifacts_dir / "steps.2.stdout.log").read_text() == "out2\n"
    assert (ws.artifacts_dir / "steps.2.stderr.log").read_text() == "err2\n"
    assert ws.state_path.read_text() == "first\nsecond\n"  # the last command's stdout
    assert [s.index for s in summary.tasks[0].stages] == [1, 2, 3]


def test_commands_task_stops_at_first_failure(ws: Workspace) -> None:
    proj = project(
        task(
            "steps",
            cmd("true"),
            cmd("sh", "-c 'exit 5'"),
            cmd("touch", "artifacts/third-ran"),
            kind="commands",
        )
    )
    with pytest.raises(
        StageError, match=r"task 'steps' stage 2 exited with status 5: sh -c 'exit 5'"
    ):
        _runner(proj, ws)[0].run()
    assert not (ws.artifacts_dir / "third-ran").exists()
    stages = _run_json(ws)["tasks"][0]["stages"]
    assert [s["status"] for s in stages] == ["ok", "failed", "not_run"]


def test_tasks_run_in_order_and_inactive_ones_are_skipped(ws: Workspace) -> None:
    proj = project(
        task("first", cmd("sh", "-c 'echo 1 > artifacts/trace'")),
        task("off", cmd("sh", "-c 'echo off >> artifacts/trace'"), active=False),
        task("second", cmd("sh", "-c 'echo 2 >> artifacts/trace'")),
    )
    summary = _runner(proj, ws)[0].run()
    assert (ws.artifacts_dir / "trace").read_text() == "1\n2\n"
    assert [(t.name, t.status) for t in summary.tasks] == [
        ("first", "success"),
        ("off", "skipped"),
        ("second", "success"),
    ]


def test_a_failed_task_stops_the_run(ws: Workspace) -> None:
    proj = project(task("a", cmd("false")), task("b", cmd("touch", "artifacts/b-ran")))
    with pytest.raises(StageError, match="task 'a' stage 1 exited with status 1: false"):
        _runner(proj, ws)[0].run()
    assert not (ws.artifacts_dir / "b-ran").exists()
    assert [t["status"] for t in _run_json(ws)["tasks"]] == ["failed", "not_run"]


def test_task_timeout_kills_everything_and_says_so(ws: Workspace) -> None:
    proj = project(
        task(
            "slow",
            cmd("sh", "-c 'sleep 1000 & echo $! > artifacts/sleeper.pid; wait'"),
            cmd("cat"),
            timeout=0.5,
        )
    )
    started = time.monotonic()
    with pytest.raises(StageError) as caught:
        _runner(proj, ws)[0].run()
    assert time.monotonic() - started < 5
    assert caught.value.timed_out
    assert "task 'slow' timed out after 0.5 s" in str(caught.value)
    assert wait_dead(read_pid(ws.artifacts_dir / "sleeper.pid"))
    assert _run_json(ws)["tasks"][0]["timed_out"] is True


def test_commands_task_timeout_covers_all_commands(ws: Workspace) -> None:
    """Each command alone fits in the timeout, both together don't. (Stage 1 has a second
    to spare: on a loaded machine starting a process can take a few hundred ms.)"""
    proj = project(
        task(
            "steps",
            cmd("sleep", "1"),
            cmd("sleep", "1.5"),
            cmd("touch", "artifacts/third-ran"),
            kind="commands",
            timeout=2,
        )
    )
    with pytest.raises(StageError, match=r"timed out after 2 s \(stage 2"):
        _runner(proj, ws)[0].run()
    assert not (ws.artifacts_dir / "third-ran").exists()


def test_terminate_from_another_thread_fails_the_run_and_kills_the_group(
    ws: Workspace,
) -> None:
    proj = project(
        task("long", cmd("sh", "-c 'sleep 1000 & echo $! > artifacts/sleeper.pid; wait'")),
        task("after", cmd("touch", "artifacts/after-ran")),
    )
    runner, _ = _runner(proj, ws)
    pid_file = ws.artifacts_dir / "sleeper.pid"

    def stop() -> None:
        read_pid(pid_file)
        runner.terminate("on_kill")
        runner.terminate("again")  # idempotent

    stopper = threading.Thread(target=stop)
    stopper.start()
    with pytest.raises(StageError, match=r"task 'long' was terminated \(on_kill\)"):
        runner.run()
    stopper.join()
    assert wait_dead(read_pid(pid_file))
    assert not (ws.artifacts_dir / "after-ran").exists()
    data = _run_json(ws)
    assert data["status"] == "killed" and "terminated" in data["error"]
    assert [t["status"] for t in data["tasks"]] == ["failed", "not_run"]


def test_terminate_before_run_starts_nothing(ws: Workspace) -> None:
    proj = project(task("t", cmd("touch", "artifacts/ran")))
    runner, _ = _runner(proj, ws)
    runner.terminate("SIGTERM")
    with pytest.raises(StageError, match="terminated"):
        runner.run()
    assert not (ws.artifacts_dir / "ran").exists()


def test_missing_command_fails_before_anything_starts(ws: Workspace) -> None:
    proj = project(
        task("first", cmd("touch", "artifacts/first-ran")),
        task("second", cmd("echo", "x"), cmd("no-such-program-zz", "--flag")),
    )
    with pytest.raises(StageError) as caught:
        _runner(proj, ws)[0].run()
    assert str(caught.value) == (
        "task 'second' stage 2 ('no-such-program-zz --flag'): command 'no-such-program-zz' "
        "not found on PATH"
    )
    assert not (ws.artifacts_dir / "first-ran").exists()
    assert _run_json(ws)["status"] == "failed"


def test_template_error_fails_before_anything_starts(ws: Workspace) -> None:
    proj = project(
        task("first", cmd("touch", "artifacts/first-ran")),
        task("second", cmd("echo", "{{ undefined_thing }}")),
    )
    with pytest.raises(TemplateError, match="undefined_thing"):
        _runner(proj, ws)[0].run()
    assert not (ws.artifacts_dir / "first-ran").exists()
    assert _run_json(ws)["status"] == "failed"


def test_missing_venv_is_a_clear_error(ws: Workspace) -> None:
    proj = project(task("t", cmd("tap-foo", venv="proc_01")))
    with pytest.raises(StageError, match="venv 'proc_01' is not installed"):
        _runner(proj, ws)[0].run()


def _fake_venv(root: Path, *tools: str) -> Path:
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    for tool in tools:
        script = venv / "bin" / tool
        script.write_text(f'#!/bin/sh\necho "{tool} from venv VIRTUAL_ENV=$VIRTUAL_ENV"\n')
        script.chmod(0o755)
    return venv


def test_venv_command_resolved_from_venv_bin_with_env(ws: Workspace, tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path, "tap-demo", "cat")
    (ws.files_dir / "show_path.sh").write_text('#!/bin/sh\necho "PATH0=${PATH%%:*}"\n')
    proj = project(
        task("t", cmd("cat", venv="v"), kind="commands"),  # venv's cat wins over /bin/cat
        task("u", cmd("tap-demo", venv="v"), kind="commands"),
        task("w", cmd("files/show_path.sh", venv="v"), kind="commands"),
        task("x", cmd("cat", "files/show_path.sh"), kind="commands"),  # no venv: system cat
    )
    summary = _runner(proj, ws, venvs={"v": venv})[0].run()
    assert summary.succeeded
    # The last task ran without a venv: the system cat printed the script.
    assert ws.state_path.read_text().startswith("#!/bin/sh")
    # Each task's only command is its last: its stdout is the state, so run them one
    # at a time to see each output.
    for name, expected in [
        ("t", f"cat from venv VIRTUAL_ENV={venv}\n"),
        ("u", f"tap-demo from venv VIRTUAL_ENV={venv}\n"),
        # files/show_path.sh had no exec bit (as after an S3 sync): it starts with #!,
        # so the runner made it executable; its PATH starts with the venv's bin.
        ("w", f"PATH0={venv}/bin\n"),
    ]:
        single = project(next(t for t in proj.tasks if t.name == name))
        _runner(single, ws, venvs={"v": venv})[0].run()
        assert ws.state_path.read_text() == expected
    assert os.access(ws.files_dir / "show_path.sh", os.X_OK)


def test_relative_command_without_shebang_and_exec_bit_is_refused(ws: Workspace) -> None:
    (ws.files_dir / "data.txt").write_text("not a script\n")
    proj = project(task("t", cmd("files/data.txt")))
    with pytest.raises(StageError, match="is not executable"):
        _runner(proj, ws)[0].run()


def test_env_layers_and_rendering(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYER_A", "from-os")
    monkeypatch.setenv("LAYER_B", "from-os")
    monkeypatch.setenv("LAYER_C", "from-os")
    proj = project(
        task("t", cmd("sh", "-c 'echo $LAYER_A $LAYER_B $LAYER_C $GREETING'")),
        envs=[
            EnvVar("LAYER_B", "from-project"),
            EnvVar("LAYER_C", "from-project"),
            EnvVar("GREETING", "hello {{ who }}"),
        ],
    )
    runner, _ = _runner(proj, ws, variables={"who": "world"}, env={"LAYER_C": "from-runner"})
    runner.run()
    assert ws.state_path.read_text() == "from-os from-project from-runner hello world\n"


def test_summary_and_logs_never_hold_rendered_args_or_env_values(ws: Workspace) -> None:
    secret = "s3cr3t-VALUE-42"
    proj = project(
        task("t", cmd("sh", '-c \'echo ok; test "$1" = "$TOKEN"\' x {{ password }}')),
        envs=[EnvVar("TOKEN", secret, secret=True)],
    )
    redactor = SecretRedactor()
    redactor.add(secret)  # what HandoffRun does with the project's secrets
    runner, lines = _runner(proj, ws, variables={"password": secret}, redact=redactor)
    runner.run()
    text = ws.run_summary_path.read_text()
    data = json.loads(text)
    assert "{{ password }}" in text  # the template as written
    assert data["tasks"][0]["stages"][0]["rendered"] == (
        'sh -c \'echo ok; test "$1" = "$TOKEN"\' x ***'
    )
    assert secret not in text
    assert not any(secret in line for line in lines)


def test_a_secret_env_value_is_never_rendered_as_a_template(ws: Workspace) -> None:
    secret = "{% bad-jinja s3cr3t"
    check = '-c \'test "$TOKEN" = "$1"\' x "{% raw %}{% bad-jinja s3cr3t{% endraw %}"'
    proj = project(task("t", cmd("sh", check)), envs=[EnvVar("TOKEN", secret, secret=True)])
    runner, _ = _runner(proj, ws)
    assert runner.run().succeeded


def test_stderr_lines_reach_the_callback_with_task_stage_and_command(ws: Workspace) -> None:
    proj = project(
        task(
            "tk",
            cmd("sh", "-c 'echo one >&2; echo two >&2; echo data'"),
            cmd("sh", "-c 'cat >/dev/null; echo three >&2'"),
        )
    )
    seen: list[tuple[str, int, str, str]] = []
    runner, _ = _runner(proj, ws, on_stderr_line=lambda *a: seen.append(a))
    runner.run()
    assert [s for s in seen if s[1] == 1] == [("tk", 1, "sh", "one"), ("tk", 1, "sh", "two")]
    assert [s for s in seen if s[1] == 2] == [("tk", 2, "sh", "three")]
    assert (ws.artifacts_dir / "tk.1.stderr.log").read_text() == "one\ntwo\n"
    assert (ws.artifacts_dir / "tk.2.stderr.log").read_text() == "three\n"


def test_default_stderr_handler_logs_with_prefix(ws: Workspace) -> None:
    proj = project(task("tk", cmd("echo", "x"), cmd("sh", "-c 'cat >/dev/null; echo hi >&2'")))
    runner, lines = _runner(proj, ws)
    runner.run()
    assert "[tk:2 sh] hi" in lines


def test_files_are_rendered_at_start_of_run(ws: Workspace) -> None:
    (ws.files_dir / "query.sql").write_text("select * from t where d = '{{ ds }}'\n")
    proj = project(task("t", cmd("cat", "files/query.sql")))
    _runner(proj, ws, variables={"ds": "2024-05-01"})[0].run()
    assert ws.state_path.read_text() == "select * from t where d = '2024-05-01'\n"


def test_summary_round_trips(ws: Workspace) -> None:
    proj = project(task("t", cmd("echo", "x")), task("off", cmd("true"), active=False))
    summary = _runner(proj, ws)[0].run()
    again = RunSummary.from_dict(json.loads(json.dumps(summary.to_dict())))
    assert again.to_dict() == summary.to_dict()
    assert os.path.exists(ws.run_summary_path)


def test_terminate_from_a_signal_handler_in_the_waiting_thread(ws: Workspace) -> None:
    """The CLI's SIGTERM handler calls terminate() in the very thread that waits for the
    pipeline: this must neither deadlock nor leave processes behind."""
    import signal

    script = "-c 'sleep 1000 & echo $! > artifacts/sleeper.pid; wait'"
    proj = project(task("long", cmd("sh", script)))
    runner, _ = _runner(proj, ws)
    pid_file = ws.artifacts_dir / "sleeper.pid"
    main = threading.main_thread().ident
    assert main is not None
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: runner.terminate("SIGTERM"))
    try:
        sender = threading.Thread(
            target=lambda: (read_pid(pid_file), signal.pthread_kill(main, signal.SIGTERM))
        )
        sender.start()
        started = time.monotonic()
        with pytest.raises(StageError, match=r"was terminated \(SIGTERM\)"):
            runner.run()
        sender.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert time.monotonic() - started < 10
    assert wait_dead(read_pid(pid_file))


def test_the_log_shows_each_task_as_rendered_shell_lines_and_a_stage_table(
    ws: Workspace,
) -> None:
    proj = project(
        task("load", cmd("echo", "--day {{ day }}"), cmd("sh", "-c 'cat; echo two words'")),
        task("stats", cmd("echo", "counted 5 rows"), cmd("printf", "'x'"), kind="commands"),
        task("quiet", cmd("echo", "not shown"), kind="commands", state_from="none"),
    )
    proj = dataclasses.replace(
        proj,
        tasks=(*proj.tasks[:2], dataclasses.replace(proj.tasks[2], log_stdout=False)),
    )
    runner, lines = _runner(proj, ws, variables={"day": "2024-01-02"})
    runner.run()
    start = lines.index("task 'load': starting (pipeline, 2 stages)")
    assert lines[start + 1] == "  $ echo --day 2024-01-02 | sh -c 'cat; echo two words'"
    done = lines.index("task 'load': succeeded in " + lines[start + 2].split(" in ")[1])
    assert lines[done].endswith("; state: artifacts/state written")
    assert lines[done + 1].split() == ["stage", "exit", "seconds", "bytes", "out", "command"]
    first, second = lines[done + 2].split(), lines[done + 3].split()
    assert first[0:2] == ["1", "0"] and first[3:] == ["17", "echo"]  # "--day 2024-01-02\n"
    assert second[0:2] == ["2", "0"] and second[-1] == "sh"
    # a commands: task's stdout is in the log (not its last command's: that is the state)
    assert "  $ echo counted 5 rows" in lines and "  $ printf x" in lines
    assert "[stats:1 echo stdout] counted 5 rows" in lines
    assert not [line for line in lines if "stats:2" in line]
    assert not [line for line in lines if "not shown" in line and "stdout]" in line]
    stages = _run_json(ws)["tasks"][0]["stages"]
    assert [stage["rendered"] for stage in stages] == [
        "echo --day 2024-01-02",
        "sh -c 'cat; echo two words'",
    ]
