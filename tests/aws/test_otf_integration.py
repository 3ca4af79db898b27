"""The OTF features inside project runs, against the moto server.

* the example ``examples/projects/03_s3_drop`` through ``handoff run -p ... -a``
  (``cli.main``): inputs downloaded (never rendered), outputs uploaded, then the flag,
  then the drops moved; a failing run publishes nothing and moves nothing;
* the order of the S3 writes and their ACL (recorded API calls), a failed upload;
* ``ssm()`` in ``args``/``envs``/``vars``: the value reaches the command, never ``run.json``
  or the run's log lines; registered through ``on_secret`` once, before use;
* ``lambda`` and ``s3_touch`` tasks. moto can only *run* a Lambda function in Docker (there
  is no Docker engine here), so the function's answer is **stubbed at the botocore level**
  (``StubbedLambda``: a ``before-send`` handler returning a canned HTTP response that
  botocore parses as a real one); everything else is the real code path.
"""

from __future__ import annotations

import json
import shutil
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from handoff_provider.core.aws.clients import default_client_factory, make_client
from handoff_provider.core.cli import main as cli
from handoff_provider.core.errors import ConfigurationError, HandoffError, RunFailed, StageError
from handoff_provider.core.load.project import load_project
from handoff_provider.core.run.orchestrate import HandoffRun, RunRequest
from handoff_provider.core.run.runner import ProjectRunner
from handoff_provider.core.run.workspace import Workspace
from handoff_provider.core.stores import Remote
from tests.aws.conftest import WRITES, Recorder, keys, read
from tests.aws.test_lambda_invoke import StubbedLambda

ROOT = Path(__file__).resolve().parents[2]
S3_DROP = ROOT / "examples" / "projects" / "03_s3_drop"
ACL = "bucket-owner-full-control"

A_CSV = "id,amount,note\n1,10.50,{{ ssm('/never/rendered') }}\n2,4.25,x\n"
B_CSV = "id,amount\n1,100\n"


def handoff(*argv: str | Path) -> int:
    return cli.main([str(arg) for arg in argv])


def drop(s3: Any, bucket: str, stack: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        s3.put_object(Bucket=bucket, Key=f"{stack}/{name}", Body=text.encode())


def run_json(workspace: Path) -> dict[str, Any]:
    return json.loads((workspace / "artifacts" / "run.json").read_text())


def write_project(root: Path, yml: str, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "project.yml").write_text(textwrap.dedent(yml).lstrip())
    for name, text in (files or {}).items():
        path = root / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# --------------------------------------------------------------------- the example


def test_s3_drop_example_end_to_end(
    handoff_env: dict[str, str], tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, bucket = handoff_env["HANDOFF_STACK"], handoff_env["HANDOFF_BUCKET"]
    drop(
        s3,
        bucket,
        stack,
        {
            "inbox/a.csv": A_CSV,
            "inbox/b.csv": B_CSV,
            "inbox/notes.txt": "not a csv",
            "inbox/later/c.csv": "id,amount\n1,1\n",  # a sub-folder: not matched
        },
    )
    ws = tmp_path / "ws"
    assert handoff("run", "-w", ws, "-p", S3_DROP, "-a") == 0
    err = capsys.readouterr().err
    assert "handoff: run succeeded" in err and "transfers: 2 inputs, 1 outputs, 1 flags" in err

    summary = run_json(ws)
    run_key = next(iter(keys(s3, bucket, f"{stack}/runs/"))).split("/")[0]
    # the output, named by the run key, then the flag
    assert keys(s3, bucket, f"{stack}/outbox/") == ["_SUCCESS.flg", f"totals-{run_key}.csv"]
    assert read(s3, bucket, f"{stack}/outbox/_SUCCESS.flg") == b""
    assert read(s3, bucket, f"{stack}/outbox/totals-{run_key}.csv").decode() == (
        "file,rows,total\na.csv,2,14.75\nb.csv,1,100.00\nALL,3,114.75\n"
    )
    # the drops were moved to archive/<run key>/, what did not match stayed
    assert keys(s3, bucket, f"{stack}/inbox/") == ["later/c.csv", "notes.txt"]
    assert keys(s3, bucket, f"{stack}/archive/") == [f"{run_key}/a.csv", f"{run_key}/b.csv"]
    assert read(s3, bucket, f"{stack}/archive/{run_key}/a.csv").decode() == A_CSV
    # a downloaded file is data: its Jinja markers were not rendered (ssm() not called)
    assert (ws / "files" / "inbox" / "a.csv").read_text() == A_CSV
    # run.json (also archived) records URIs and statuses
    transfers = summary["transfers"]
    assert transfers["inputs"] == [
        {"uri": f"s3://{bucket}/{stack}/inbox/{name}", "status": "downloaded"}
        for name in ("a.csv", "b.csv")
    ]
    assert transfers["flags"] == [
        {"uri": f"s3://{bucket}/{stack}/outbox/_SUCCESS.flg", "status": "written"}
    ]
    assert {item["status"] for item in transfers["post_copy"]} == {"moved"}
    archived = json.loads(read(s3, bucket, f"{stack}/runs/{run_key}/run.json"))
    assert archived["transfers"] == transfers


def test_s3_drop_example_failing_run_publishes_nothing(
    handoff_env: dict[str, str], tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, bucket = handoff_env["HANDOFF_STACK"], handoff_env["HANDOFF_BUCKET"]
    drop(s3, bucket, stack, {"inbox/a.csv": A_CSV, "inbox/bad.csv": "id,amount\n1,lots\n"})
    ws = tmp_path / "ws"
    assert handoff("run", "-w", ws, "-p", S3_DROP, "-a") == 1
    err = capsys.readouterr().err
    assert "bad.csv:2: amount is not a number" in err
    assert "task 'totals' stage 1" in err
    assert keys(s3, bucket, f"{stack}/outbox/") == []  # no output, no flag
    assert keys(s3, bucket, f"{stack}/inbox/") == ["a.csv", "bad.csv"]  # untouched
    assert keys(s3, bucket, f"{stack}/archive/") == []
    summary = run_json(ws)
    assert summary["status"] == "failed"
    assert len(summary["transfers"]["inputs"]) == 2
    assert summary["transfers"]["outputs"] == summary["transfers"]["post_copy"] == []

    # the drop is fixed: the same run again picks everything up
    drop(s3, bucket, stack, {"inbox/bad.csv": "id,amount\n1,1\n"})
    assert handoff("run", "-w", tmp_path / "ws2", "-p", S3_DROP, "-a") == 0
    assert keys(s3, bucket, f"{stack}/inbox/") == []
    assert "_SUCCESS.flg" in keys(s3, bucket, f"{stack}/outbox/")


def test_s3_drop_example_without_a_drop_fails_before_the_commands(
    handoff_env: dict[str, str], tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, bucket = handoff_env["HANDOFF_STACK"], handoff_env["HANDOFF_BUCKET"]
    assert handoff("run", "-w", tmp_path / "ws", "-p", S3_DROP, "-a") == 1
    err = capsys.readouterr().err
    assert "transfers.inputs[0]: inputs: no object matching '[\\\\w.-]+\\\\.csv' under " in err
    assert f"s3://{bucket}/{stack}/inbox/" in err
    assert run_json(tmp_path / "ws")["tasks"][0]["status"] == "not_run"


def test_s3_writes_are_in_order_with_the_acl(
    aws: str, bucket: str, stack: str, recorder: Recorder, s3: Any, tmp_path: Path
) -> None:
    drop(s3, bucket, stack, {"inbox/a.csv": A_CSV})
    remote = Remote(stack, bucket, client_factory=recorder.factory())
    request = RunRequest(workspace=tmp_path / "ws", project_dir=S3_DROP, remote=remote)
    run_key = HandoffRun(request).execute().run_key

    writes = [
        (call.operation, call.params["Key"].replace(run_key, "KEY"), call.params.get("ACL"))
        for call in recorder.ops(*WRITES, "DeleteObject")
        if call.params.get("Bucket") == bucket
    ]
    assert writes == [
        ("PutObject", f"{stack}/outbox/totals-KEY.csv", ACL),
        ("PutObject", f"{stack}/outbox/_SUCCESS.flg", ACL),
        ("CopyObject", f"{stack}/archive/KEY/a.csv", ACL),
        ("DeleteObject", f"{stack}/inbox/a.csv", None),
    ]


def test_failed_upload_writes_no_flag_and_moves_nothing(
    aws: str, bucket: str, stack: str, recorder: Recorder, s3: Any, tmp_path: Path
) -> None:
    drop(s3, bucket, stack, {"inbox/a.csv": A_CSV})
    recorder.fail_on(
        "PutObject", match=lambda p: "/outbox/totals" in p.get("Key", ""), code="AccessDenied"
    )
    remote = Remote(stack, bucket, client_factory=recorder.factory())
    request = RunRequest(workspace=tmp_path / "ws", project_dir=S3_DROP, remote=remote)
    with pytest.raises(RunFailed) as failed:
        HandoffRun(request).execute()
    message = str(failed.value)
    assert message.startswith(f"transfers.outputs[0]: outputs: upload to s3://{bucket}/")
    assert "/outbox/totals-" in message
    assert "access denied (AccessDenied): check the IAM policy; no flag file written" in message
    assert keys(s3, bucket, f"{stack}/outbox/") == []
    assert keys(s3, bucket, f"{stack}/inbox/") == ["a.csv"]
    assert failed.value.outcome.to_dict()["status"] == "failed"
    assert failed.value.outcome.summary.tasks[0].status == "success"  # the commands ran


# --------------------------------------------------------------------------- ssm()

SSM_PROJECT = """\
envs:
  - key: API_TOKEN
    value: "{{ ssm('/otf/api/token') }}"
vars:
  - key: user
    value: "{{ ssm('/otf/api/user') }}"
tasks:
  - name: use
    commands:
      - command: python3
        args: files/check.py {{ ssm('/otf/api/token') }} {{ user }}
"""
CHECK_PY = """\
import os, sys
token, user = sys.argv[1], sys.argv[2]
assert os.environ["API_TOKEN"] == token, "env differs"
print(f"the token is {token} for {user}", file=sys.stderr)
print(f"len={len(token)}")
"""
TOKEN = "s3cr3t-t0ken-value"
USER = "etl-robot-user"


def ssm_project(root: Path, stack: str, ssm: Any | None = None) -> Path:
    """The ssm() project reading parameters under ``/<stack>/`` (the moto server is shared
    by the session: names must not collide); with ``ssm``, the parameters are created."""
    if ssm is not None:
        ssm.put_parameter(Name=f"/{stack}/api/token", Value=TOKEN, Type="SecureString")
        ssm.put_parameter(Name=f"/{stack}/api/user", Value=USER, Type="String")
    return write_project(root, SSM_PROJECT.replace("/otf/", f"/{stack}/"), {"check.py": CHECK_PY})


def test_ssm_values_reach_the_commands_but_no_log_or_summary(
    handoff_env: dict[str, str],
    ssm: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = ssm_project(tmp_path / "p", handoff_env["HANDOFF_STACK"], ssm)
    ws = tmp_path / "ws"
    assert handoff("run", "-w", ws, "-p", project, "-a") == 0
    err = capsys.readouterr().err
    assert "[use:1 python3] the token is *** for ***" in err
    assert TOKEN not in err and USER not in err
    assert (ws / "artifacts" / "state").read_text() == f"len={len(TOKEN)}\n"
    text = (ws / "artifacts" / "run.json").read_text()
    assert TOKEN not in text and USER not in text
    stack = handoff_env["HANDOFF_STACK"]
    assert "{{ ssm('/" + stack + "/api/token') }}" in text  # the command as written


def test_local_cli_run_without_a_remote_reads_ssm_through_the_default_chain(
    aws: str, stack: str, ssm: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``handoff run -p`` without ``-a`` has no remote, yet ``ssm()`` works (boto3's chain)."""
    project = ssm_project(tmp_path / "p", stack, ssm)
    ws = tmp_path / "ws"
    assert handoff("run", "-w", ws, "-p", project) == 0
    assert (ws / "artifacts" / "state").read_text() == f"len={len(TOKEN)}\n"
    assert TOKEN not in capsys.readouterr().err


def test_ssm_on_secret_is_called_once_per_value_before_use(
    aws: str, bucket: str, stack: str, ssm: Any, tmp_path: Path
) -> None:
    project = ssm_project(tmp_path / "p", stack, ssm)
    seen: list[str] = []
    lines: list[str] = []

    def on_secret(value: str) -> None:
        seen.append(value)
        assert not (tmp_path / "ws" / "artifacts" / "use.1.stderr.log").exists()

    remote = Remote(stack, bucket, client_factory=default_client_factory())
    request = RunRequest(
        workspace=tmp_path / "ws",
        project_dir=project,
        remote=remote,
        on_secret=on_secret,
        log=lines.append,
    )
    outcome = HandoffRun(request).execute()
    assert sorted(seen) == sorted([TOKEN, USER])  # the token is used twice, read once
    assert all(TOKEN not in line and USER not in line for line in lines)
    assert TOKEN not in json.dumps(outcome.to_dict())


def test_ssm_missing_parameter_and_no_aws_access(
    aws: str, bucket: str, stack: str, tmp_path: Path
) -> None:
    project = ssm_project(tmp_path / "p", stack)
    remote = Remote(stack, bucket, client_factory=default_client_factory())
    # vars are rendered before the run starts: the lookup error itself is raised
    with pytest.raises(HandoffError, match=rf"SSM parameter '/{stack}/api/user' not found"):
        HandoffRun(
            RunRequest(workspace=tmp_path / "a", project_dir=project, remote=remote)
        ).execute()
    # a purely local run (no stack): ssm() says why it can't work
    with pytest.raises(HandoffError, match=rf"ssm\('/{stack}/api/user'\): this run has no AWS"):
        HandoffRun(RunRequest(workspace=tmp_path / "b", project_dir=project)).execute()


def test_ssm_values_in_transfer_locations_are_redacted_from_the_summary(
    aws: str, bucket: str, stack: str, ssm: Any, s3: Any, tmp_path: Path
) -> None:
    ssm.put_parameter(Name=f"/{stack}/dir", Value="hidden-folder", Type="SecureString")
    project = write_project(
        tmp_path / "p",
        f"""\
        transfers:
          outputs:
            - source: artifacts/out.txt
              bucket: "{{{{ bucket }}}}"
              directory: "{{{{ ssm('/{stack}/dir') }}}}"
        tasks:
          - name: write
            commands:
              - command: python3
                args: -c "open('artifacts/out.txt', 'w').write('x')"
        """,
    )
    remote = Remote(stack, bucket, client_factory=default_client_factory())
    outcome = HandoffRun(RunRequest(tmp_path / "ws", project_dir=project, remote=remote)).execute()
    assert keys(s3, bucket, "hidden-folder/") == ["out.txt"]
    assert outcome.to_dict()["transfers"]["outputs"] == [
        {"uri": f"s3://{bucket}/***/out.txt", "status": "uploaded"}
    ]
    assert "hidden-folder" not in (tmp_path / "ws" / "artifacts" / "run.json").read_text()


# ----------------------------------------------------------------- lambda, s3_touch

STEPS_PROJECT = """\
vars:
  - key: day
    value: "2024-05-01"
tasks:
  - name: notify
    lambda:
      function: "etl-{{ day }}"
      invocation_type: RequestResponse
      payload: {files: ["s3://{{ bucket }}/in/{{ day }}.csv"], count: 2}
      qualifier: live
  - name: ready
    s3_touch: {bucket: "{{ bucket }}", key: "flags/{{ day }}/ready.flg"}
  - name: queue
    lambda: {function: etl-async}
"""


class LambdaStubFactory:
    """A client factory over the moto server whose Lambda clients answer from a stub
    (``before-send``); records the botocore config each Lambda client was made with."""

    def __init__(self) -> None:
        self.base = default_client_factory()
        self.configs: list[Any] = []
        self.stubs: list[StubbedLambda] = []
        self.answers: list[tuple[int, bytes, dict[str, str]]] = []
        self.puts: list[tuple[str, str | None]] = []

    def _put(self, params: dict[str, Any], **_: Any) -> None:
        if not params["Key"].endswith("_HANDOFF_COMPLETE"):
            self.puts.append((params["Key"], params.get("ACL")))

    def __call__(self, service: str, config: Any = None) -> Any:
        client = self.base(service, config=config)
        if service == "s3":
            client.meta.events.register("before-parameter-build.s3.PutObject", self._put)
        if service == "lambda":
            self.configs.append(client.meta.config)
            stub = StubbedLambda(client)
            status, body, headers = self.answers.pop(0)  # one answer per client
            stub.answer(status, body, **headers)
            self.stubs.append(stub)
        return client


def test_lambda_and_s3_touch_tasks(
    aws: str, bucket: str, stack: str, s3: Any, tmp_path: Path
) -> None:
    project = write_project(tmp_path / "p", STEPS_PROJECT)
    factory = LambdaStubFactory()
    factory.answers = [(200, b'{"rows": 42}', {}), (202, b"", {})]
    remote = Remote(stack, bucket, client_factory=factory)
    ws = tmp_path / "ws"
    outcome = HandoffRun(RunRequest(workspace=ws, project_dir=project, remote=remote)).execute()

    # two clients: RequestResponse (900 s, one attempt) and Event (retries allowed)
    sync_config = factory.configs[0]
    assert sync_config.read_timeout == 900
    assert sync_config.retries["total_max_attempts"] == 1
    assert sync_config.max_pool_connections == 20  # the stores' own settings are kept
    (request,) = factory.stubs[0].requests
    assert "/functions/etl-2024-05-01/invocations" in request.url
    assert "Qualifier=live" in request.url
    assert json.loads(request.body) == {"files": [f"s3://{bucket}/in/2024-05-01.csv"], "count": 2}
    (event_request,) = factory.stubs[1].requests
    assert event_request.headers["X-Amz-Invocation-Type"] in (b"Event", "Event")

    saved = json.loads((ws / "artifacts" / "lambda-notify.json").read_text())
    assert saved["payload"] == {"rows": 42} and saved["status_code"] == 200
    assert json.loads((ws / "artifacts" / "lambda-queue.json").read_text())["status_code"] == 202
    assert keys(s3, bucket, "flags/") == ["2024-05-01/ready.flg"]
    assert factory.puts == [("flags/2024-05-01/ready.flg", ACL)]  # (moto ignores the ACL)

    tasks = {task["name"]: task for task in outcome.to_dict()["tasks"]}
    assert tasks["notify"]["kind"] == "lambda" and tasks["notify"]["status"] == "success"
    (stage,) = tasks["notify"]["stages"]
    assert stage["command"] == "lambda etl-{{ day }} (RequestResponse)"  # as written
    assert (stage["exit_code"], stage["status"], stage["bytes_out"]) == (0, "ok", 12)
    assert (
        tasks["ready"]["stages"][0]["command"]
        == "s3_touch s3://{{ bucket }}/flags/{{ day }}/ready.flg"
    )


def test_lambda_function_error_fails_the_task_with_its_message(
    aws: str, bucket: str, stack: str, s3: Any, tmp_path: Path
) -> None:
    project = write_project(tmp_path / "p", STEPS_PROJECT)
    factory = LambdaStubFactory()
    error = {"errorType": "ValueError", "errorMessage": "column 'x' missing"}
    factory.answers = [(200, json.dumps(error).encode(), {"X-Amz-Function-Error": "Unhandled"})]
    remote = Remote(stack, bucket, client_factory=factory)
    ws = tmp_path / "ws"
    with pytest.raises(RunFailed) as failed:
        HandoffRun(RunRequest(workspace=ws, project_dir=project, remote=remote)).execute()
    assert str(failed.value).startswith(
        "task 'notify': lambda 'etl-2024-05-01' failed (Unhandled): ValueError: column 'x' missing"
    )
    summary = run_json(ws)
    notify, ready, queue = summary["tasks"]
    assert notify["status"] == "failed" and notify["stages"][0]["exit_code"] == 1
    assert notify["stages"][0]["status"] == "failed"
    assert (ready["status"], queue["status"]) == ("not_run", "not_run")
    saved = json.loads((ws / "artifacts" / "lambda-notify.json").read_text())
    assert saved["function_error"] == "Unhandled" and saved["payload"] == error
    assert keys(s3, bucket, "flags/") == []  # the later s3_touch never ran


class _SlowLambda:
    """A Lambda client whose invoke takes longer than the task's timeout."""

    def invoke(self, **_: Any) -> Any:
        time.sleep(5)
        raise AssertionError("the runner should have stopped waiting")


def test_lambda_task_timeout_stops_waiting(tmp_path: Path) -> None:
    project = load_project(
        write_project(
            tmp_path / "p",
            """\
            tasks:
              - name: slow
                timeout: 0.3
                lambda: {function: f, invocation_type: RequestResponse}
            """,
        )
    )
    runner = ProjectRunner(
        project,
        Workspace(tmp_path / "ws"),
        client_factory=lambda service, config=None: _SlowLambda(),
    )
    started = time.monotonic()
    with pytest.raises(StageError) as failed:
        runner.run()
    assert time.monotonic() - started < 3
    assert failed.value.timed_out and "timed out after 0.3 s" in str(failed.value)
    assert run_json(tmp_path / "ws")["tasks"][0]["timed_out"] is True


def test_aws_steps_without_a_client_factory_fail_before_anything_runs(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path / "p", STEPS_PROJECT))
    runner = ProjectRunner(project, Workspace(tmp_path / "ws"))
    with pytest.raises(ConfigurationError, match=r"task 'notify' \(lambda\), task 'ready'"):
        runner.run()
    assert all(t["status"] == "not_run" for t in run_json(tmp_path / "ws")["tasks"])

    example = load_project(S3_DROP)
    with pytest.raises(ConfigurationError, match="transfers need AWS access"):
        ProjectRunner(example, Workspace(tmp_path / "ws2")).run()


def test_example_copy_runs_from_the_remote_config(
    handoff_env: dict[str, str], tmp_path: Path, s3: Any
) -> None:
    """The transfers travel in the compiled document: config push + files push, then a
    run with no project directory (what the Fargate container does)."""
    stack, bucket = handoff_env["HANDOFF_STACK"], handoff_env["HANDOFF_BUCKET"]
    project = shutil.copytree(S3_DROP, tmp_path / "03_s3_drop")
    assert handoff("config", "push", "-p", project) == 0
    assert handoff("files", "push", "-p", project) == 0
    drop(s3, bucket, stack, {"inbox/b.csv": B_CSV})
    assert handoff("run", "-w", tmp_path / "ws", "-a") == 0
    assert keys(s3, bucket, f"{stack}/inbox/") == []
    assert "_SUCCESS.flg" in keys(s3, bucket, f"{stack}/outbox/")


def test_make_client_passes_a_config_only_to_factories_that_take_one() -> None:
    calls: list[tuple[str, Any]] = []

    def simple(service: str) -> str:  # an older custom factory
        calls.append((service, None))
        return "simple"

    def with_config(service: str, config: Any = None) -> str:
        calls.append((service, config))
        return "with-config"

    def with_kwargs(service: str, **kwargs: Any) -> str:
        calls.append((service, kwargs.get("config")))
        return "kwargs"

    config = object()
    assert make_client(simple, "lambda", config) == "simple"
    assert make_client(with_config, "lambda", config) == "with-config"
    assert make_client(with_kwargs, "lambda", config) == "kwargs"
    assert make_client(with_config, "s3") == "with-config"
    assert calls == [("lambda", None), ("lambda", config), ("lambda", config), ("s3", None)]
