"""HandoffRun end to end against the moto server, with a tiny project (no venvs: fast).

The project counts its runs: its one stage reads ``artifacts/state`` (the previous count),
prints count + 1 (which becomes the new state) and exits with ``{{ fail }}``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from handoff_provider.core.errors import ConfigurationError, RunFailed
from handoff_provider.core.load.project import compile_document
from handoff_provider.core.run.orchestrate import (
    HandoffRun,
    RunOutcome,
    RunRequest,
    install_workspace,
    push_workspace_artifacts,
)
from handoff_provider.core.stores import MANIFEST_NAME, Remote
from tests.aws.conftest import Recorder, keys, read

SECRET = "hunter2-config-secret"

COUNTER_YML = """\
vars:
  - key: fail
    value: "0"
tasks:
  - name: count
    pipeline:
      - command: sh
        args: >-
          -c 'n=$(cat artifacts/state 2>/dev/null || echo 0);
          echo "$HANDOFF_RUN_KEY" > artifacts/run_key.txt;
          cat files/greeting.txt >&2;
          echo $((n + 1)); exit {{ fail }}'
"""

SLEEPER_YML = """\
tasks:
  - name: slow
    pipeline:
      - command: sh
        args: "-c 'touch artifacts/started; sleep 30'"
"""


@pytest.fixture
def counter(tmp_path: Path) -> Path:
    project = tmp_path / "counter"
    (project / "config").mkdir(parents=True)
    (project / "files").mkdir()
    (project / "project.yml").write_text(COUNTER_YML)
    (project / "config" / "secret.json").write_text(json.dumps({"password": SECRET}))
    (project / "files" / "greeting.txt").write_text("hello from files/\n")
    return project


@pytest.fixture
def pushed(remote: Remote, counter: Path) -> Remote:
    """The counter project's config in SSM and files in S3."""
    remote.config.push(compile_document(counter))
    remote.files.push(counter / "files")
    return remote


class Lines(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def run(remote: Remote | None, workspace: Path, **kwargs: Any) -> RunOutcome:
    kwargs.setdefault("log", Lines())
    return HandoffRun(RunRequest(workspace=workspace, remote=remote, **kwargs)).execute()


def last_run_key(s3: Any, bucket: str, stack: str) -> str:
    return json.loads(read(s3, bucket, f"{stack}/last/{MANIFEST_NAME}"))["run_key"]


def test_remote_runs_carry_the_state_over(pushed: Remote, tmp_path: Path, s3: Any) -> None:
    first = run(pushed, tmp_path / "ws1", push_artifacts=True)
    assert (tmp_path / "ws1" / "artifacts" / "state").read_text() == "1\n"
    assert first.state_restored is False
    assert (tmp_path / "ws1" / "config" / "secret.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ws1" / "files" / "greeting.txt").read_text() == "hello from files/\n"

    log = Lines()
    second = run(pushed, tmp_path / "ws2", push_artifacts=True, log=log)  # a fresh machine
    assert second.state_restored is True
    assert (tmp_path / "ws2" / "artifacts" / "state").read_text() == "2\n"
    assert any("restored artifacts/state" in line for line in log)

    data = second.to_dict()
    assert data["status"] == "success" and data["run_key"] == second.run_key
    assert data["artifacts"]["runs_uri"] == (
        f"s3://{pushed.bucket}/{pushed.stack}/runs/{second.run_key}/"
    )
    assert data["artifacts"]["last_uri"] == f"s3://{pushed.bucket}/{pushed.stack}/last/"
    assert data["tasks"][0]["stages"][0]["exit_code"] == 0
    assert last_run_key(s3, pushed.bucket, pushed.stack) == second.run_key
    assert read(s3, pushed.bucket, f"{pushed.stack}/last/state") == b"2\n"
    # The commands saw the run key the artifacts are filed under.
    assert (tmp_path / "ws2" / "artifacts" / "run_key.txt").read_text().strip() == second.run_key
    assert "success" in second.describe() and second.run_key in second.describe()


def test_no_config_value_in_summary_or_logs(pushed: Remote, tmp_path: Path) -> None:
    log = Lines()
    outcome = run(pushed, tmp_path / "ws", push_artifacts=True, log=log)
    assert SECRET not in json.dumps(outcome.to_dict())
    assert SECRET not in outcome.describe()
    assert not [line for line in log if SECRET in line]


def test_failed_run_is_archived_but_last_is_untouched(
    pushed: Remote, tmp_path: Path, s3: Any
) -> None:
    ok = run(pushed, tmp_path / "ws", push_artifacts=True)
    with pytest.raises(RunFailed) as raised:
        run(pushed, tmp_path / "ws", push_artifacts=True, variables={"fail": "3"})
    message = str(raised.value)
    outcome: RunOutcome = raised.value.outcome
    assert "task 'count' stage 1" in message and "status 3" in message
    assert f"runs/{outcome.run_key}/" in message and "last/ unchanged" in message
    assert outcome.status == "failed" and outcome.artifacts is not None
    assert outcome.artifacts.last_uri is None

    bucket, stack = pushed.bucket, pushed.stack
    archived = json.loads(read(s3, bucket, f"{stack}/runs/{outcome.run_key}/run.json"))
    assert archived["status"] == "failed"
    assert last_run_key(s3, bucket, stack) == ok.run_key
    assert read(s3, bucket, f"{stack}/last/state") == b"1\n"

    third = run(pushed, tmp_path / "fresh", push_artifacts=True)
    assert (tmp_path / "fresh" / "artifacts" / "state").read_text() == "2\n"
    assert third.succeeded


def test_archive_failure_fails_the_run_and_keeps_last(
    pushed: Remote, recorder: Recorder, tmp_path: Path, s3: Any
) -> None:
    ok = run(pushed, tmp_path / "ws", push_artifacts=True)
    recorder.fail_on("PutObject", after=1, match=lambda p: "/runs/" in p["Key"])
    with pytest.raises(RunFailed) as raised:
        run(pushed, tmp_path / "ws", push_artifacts=True)
    message = str(raised.value)
    assert message.startswith("the commands succeeded but archiving the artifacts failed")
    assert "last/ still holds the previous complete run" in message
    outcome: RunOutcome = raised.value.outcome
    assert outcome.summary.status == "success" and outcome.status == "failed"
    assert outcome.to_dict()["artifacts_error"]
    assert last_run_key(s3, pushed.bucket, pushed.stack) == ok.run_key
    assert read(s3, pushed.bucket, f"{pushed.stack}/last/state") == b"1\n"


def test_local_project_with_push_restores_and_publishes(
    pushed: Remote, counter: Path, tmp_path: Path, s3: Any
) -> None:
    run(pushed, tmp_path / "remote-ws", push_artifacts=True)
    outcome = run(pushed, tmp_path / "local-ws", project_dir=counter, push_artifacts=True)
    assert outcome.state_restored
    assert (tmp_path / "local-ws" / "artifacts" / "state").read_text() == "2\n"
    assert last_run_key(s3, pushed.bucket, pushed.stack) == outcome.run_key


def test_local_run_without_remote_keeps_local_state(counter: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "artifacts").mkdir(parents=True)
    (ws / "artifacts" / "state").write_text("41\n")
    outcome = run(None, ws, project_dir=counter)
    assert (ws / "artifacts" / "state").read_text() == "42\n"
    assert outcome.artifacts is None and "not pushed" in outcome.describe()


def test_run_key_hint_is_sanitised_and_used_everywhere(
    pushed: Remote, tmp_path: Path, s3: Any
) -> None:
    outcome = run(
        pushed, tmp_path / "ws", push_artifacts=True, run_key="etl/manual__2024-01-01T00:00/count/1"
    )
    assert outcome.run_key == "etl_manual__2024-01-01T00_00_count_1"
    assert (tmp_path / "ws" / "artifacts" / "run_key.txt").read_text().strip() == outcome.run_key
    assert "state" in keys(s3, pushed.bucket, f"{pushed.stack}/runs/{outcome.run_key}/")


def test_terminate_before_start_runs_nothing(
    pushed: Remote, recorder: Recorder, tmp_path: Path
) -> None:
    recorder.clear()
    handoff_run = HandoffRun(
        RunRequest(workspace=tmp_path / "ws", remote=pushed, push_artifacts=True, log=Lines())
    )
    handoff_run.terminate("SIGTERM")
    with pytest.raises(RunFailed, match=r"terminated \(SIGTERM\) before preparing the workspace"):
        handoff_run.execute()
    assert not (tmp_path / "ws" / "artifacts" / "state").exists()
    assert recorder.count("GetParameter", "PutObject") == 0


def test_terminate_during_run(remote: Remote, tmp_path: Path, s3: Any) -> None:
    project = tmp_path / "sleeper"
    project.mkdir()
    (project / "project.yml").write_text(SLEEPER_YML)
    remote.config.push(compile_document(project))
    handoff_run = HandoffRun(
        RunRequest(workspace=tmp_path / "ws", remote=remote, push_artifacts=True, log=Lines())
    )
    started = tmp_path / "ws" / "artifacts" / "started"

    def stop_when_started() -> None:
        deadline = time.monotonic() + 20
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        handoff_run.terminate("test")

    stopper = threading.Thread(target=stop_when_started)
    stopper.start()
    began = time.monotonic()
    with pytest.raises(RunFailed) as raised:
        handoff_run.execute()
    stopper.join()
    assert time.monotonic() - began < 20
    assert "terminated" in str(raised.value)
    outcome: RunOutcome = raised.value.outcome
    runs = keys(s3, remote.bucket, f"{remote.stack}/runs/{outcome.run_key}/")
    assert "started" in runs and "run.json" in runs
    assert keys(s3, remote.bucket, f"{remote.stack}/last/") == []


def test_request_validation(remote: Remote, tmp_path: Path, counter: Path) -> None:
    with pytest.raises(ConfigurationError, match="no project"):
        run(None, tmp_path / "ws")
    with pytest.raises(ConfigurationError, match="pushing artifacts needs a stack"):
        run(None, tmp_path / "ws", project_dir=counter, push_artifacts=True)
    no_bucket = Remote(remote.stack, None, client_factory=lambda name: remote.client(name))
    with pytest.raises(ConfigurationError, match="needs an S3 bucket"):
        run(no_bucket, tmp_path / "ws", project_dir=counter, push_artifacts=True)


def test_install_workspace_from_remote(pushed: Remote, tmp_path: Path) -> None:
    venvs = install_workspace(tmp_path / "ws", remote=pushed, log=Lines())
    assert venvs == {}
    assert (tmp_path / "ws" / "files" / "greeting.txt").exists()
    assert json.loads((tmp_path / "ws" / "config" / "secret.json").read_text()) == {
        "password": SECRET
    }


def test_push_workspace_artifacts_follows_run_json(pushed: Remote, tmp_path: Path, s3: Any) -> None:
    ws = tmp_path / "ws"
    ok = run(pushed, ws)  # no push during the run
    location = push_workspace_artifacts(ws, pushed)
    assert location.last_uri is not None
    assert read(s3, pushed.bucket, f"{pushed.stack}/last/state") == b"1\n"
    assert ok.artifacts is None

    with pytest.raises(RunFailed):
        run(pushed, ws, variables={"fail": "1"})
    failed = push_workspace_artifacts(ws, pushed, run_key="manual-1")
    assert failed.run_key == "manual-1" and failed.last_uri is None
    assert last_run_key(s3, pushed.bucket, pushed.stack) == location.run_key

    hand_made = tmp_path / "by-hand"
    (hand_made / "artifacts").mkdir(parents=True)
    (hand_made / "artifacts" / "state").write_text("100\n")
    with pytest.raises(ConfigurationError, match=r"run.json: missing, so no run completed"):
        push_workspace_artifacts(hand_made, pushed)
    seeded = push_workspace_artifacts(hand_made, pushed, by_hand=True)
    assert seeded.last_uri is not None, "--by-hand: a hand-made state is published"
    assert read(s3, pushed.bucket, f"{pushed.stack}/last/state") == b"100\n"


class CallerTimeout(BaseException):
    """Stands for Airflow's AirflowTaskTimeout: raised in the run's thread from outside."""


def _stage_started(marker: str, exc: BaseException) -> Lines:
    """A log that raises ``exc`` (once) on the line saying a task started: the way a
    caller's SIGALRM handler interrupts the run while its commands are running."""

    class Raising(Lines):
        def __call__(self, line: str) -> None:
            super().__call__(line)
            if marker in line and not getattr(self, "raised", False):
                self.raised = True
                raise exc

    return Raising()


def test_a_caller_timeout_is_archived_as_timed_out_then_propagates(
    pushed: Remote, tmp_path: Path, s3: Any
) -> None:
    ok = run(pushed, tmp_path / "ws", push_artifacts=True)
    log = _stage_started("task 'count': starting", CallerTimeout("Timeout, PID: 1"))
    request = RunRequest(
        workspace=tmp_path / "ws",
        remote=pushed,
        push_artifacts=True,
        log=log,
        timeout_errors=(CallerTimeout,),
    )
    handoff_run = HandoffRun(request)
    with pytest.raises(CallerTimeout):  # the original exception, not a RunFailed
        handoff_run.execute()
    outcome = handoff_run.outcome
    assert outcome is not None and outcome.status == "timed_out"
    assert outcome.artifacts is not None and outcome.artifacts.last_uri is None
    bucket, stack = pushed.bucket, pushed.stack
    archived = json.loads(read(s3, bucket, f"{stack}/runs/{outcome.run_key}/run.json"))
    assert archived["status"] == "timed_out"
    assert archived["error"] == (
        "stopped by the caller's time limit (CallerTimeout: Timeout, PID: 1)"
    )
    assert archived["run_key"] == outcome.run_key
    assert last_run_key(s3, bucket, stack) == ok.run_key
    assert read(s3, bucket, f"{stack}/last/state") == b"1\n"
    assert any(line.startswith("run timed out: ") for line in log)


def test_an_unexpected_error_is_archived_as_failed_then_propagates(
    pushed: Remote, tmp_path: Path, s3: Any
) -> None:
    """Any exception, not only handoff's own (here from the log callback while the task
    runs): recorded, archived, then raised as it came."""
    log = _stage_started("task 'count': starting", RuntimeError("log sink broke"))
    handoff_run = HandoffRun(
        RunRequest(workspace=tmp_path / "ws", remote=pushed, push_artifacts=True, log=log)
    )
    with pytest.raises(RuntimeError, match="log sink broke"):
        handoff_run.execute()
    outcome = handoff_run.outcome
    assert outcome is not None and outcome.status == "failed"
    bucket, stack = pushed.bucket, pushed.stack
    record = json.loads(read(s3, bucket, f"{stack}/runs/{outcome.run_key}/run.json"))
    assert record["status"] == "failed"
    assert record["error"] == "internal error (RuntimeError: log sink broke)"
    assert keys(s3, bucket, f"{stack}/last/") == []


def test_a_command_deleting_artifacts_still_leaves_an_archived_record(
    remote: Remote, tmp_path: Path, s3: Any
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "project.yml").write_text(
        "tasks:\n  - name: wipe\n    pipeline:\n      - command: sh\n"
        "        args: \"-c 'rm -rf artifacts; echo new-state'\"\n"
    )
    request = RunRequest(
        workspace=tmp_path / "ws", project_dir=project, remote=remote, push_artifacts=True
    )
    with pytest.raises(RunFailed) as raised:
        HandoffRun(dataclasses.replace(request, log=Lines())).execute()
    outcome = raised.value.outcome
    record = json.loads(read(s3, remote.bucket, f"{remote.stack}/runs/{outcome.run_key}/run.json"))
    assert record["status"] == "failed" and "artifacts/state" in record["error"]
    assert keys(s3, remote.bucket, f"{remote.stack}/last/") == []


def test_run_json_is_running_while_the_commands_run(remote: Remote, tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    ws = tmp_path / "ws"

    def log(line: str) -> None:
        if "task 'count': starting" in line:
            seen.append(json.loads((ws / "artifacts" / "run.json").read_text()))

    project = tmp_path / "project"
    project.mkdir()
    (project / "project.yml").write_text(COUNTER_YML)
    (project / "files").mkdir()
    (project / "files" / "greeting.txt").write_text("hi\n")
    outcome = run(None, ws, project_dir=project, log=log)
    assert [record["status"] for record in seen] == ["running"]
    assert seen[0]["run_key"] == outcome.run_key
    final = json.loads((ws / "artifacts" / "run.json").read_text())
    assert final["status"] == "success" and final["ended_at"]
