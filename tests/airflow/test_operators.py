"""The operators and the hook outside a DAG run: on_kill, push summaries, hook wiring, link."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from af_helpers import list_keys, write_project

from handoff_provider._compat import AirflowException
from handoff_provider.core.stores import Remote
from handoff_provider.hooks.handoff import HandoffHook
from handoff_provider.links.artifacts import HandoffArtifactsLink
from handoff_provider.operators.config import HandoffConfigPushOperator, HandoffFilesPushOperator
from handoff_provider.operators.run import HandoffRunOperator

SLEEPER = """
tasks:
  - name: main
    pipeline:
      - command: sleep
        args: "300"
      - command: sleep
        args: "301"
"""


def fake_context(task_id: str = "run", try_number: int = 1) -> dict[str, Any]:
    """The parts of a task context the operators read (no DAG run needed)."""
    pushed: dict[str, Any] = {}
    ti = SimpleNamespace(
        dag_id="unit",
        run_id="manual__2024-01-02T00:00:00+00:00",
        task_id=task_id,
        try_number=try_number,
        map_index=-1,
        xcom_push=lambda key, value: pushed.__setitem__(key, value),
        pushed=pushed,
    )
    return {
        "ti": ti,
        "data_interval_start": datetime(2024, 1, 1, tzinfo=timezone.utc),
        "data_interval_end": datetime(2024, 1, 2, tzinfo=timezone.utc),
        "logical_date": datetime(2024, 1, 1, tzinfo=timezone.utc),
    }


def _sleepers(argvs: set[tuple[str, ...]]) -> list[psutil.Process]:
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            argv = proc.cmdline()
            if (
                argv
                and (os.path.basename(argv[0]), *argv[1:]) in argvs
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


def _wait_for_sleepers(count: int, timeout: float = 20.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    wanted = {("sleep", "300"), ("sleep", "301")}
    while time.monotonic() < deadline:
        procs = _sleepers(wanted)
        if len(procs) >= count:
            return procs
        time.sleep(0.05)
    raise AssertionError("the pipeline's processes did not start")


def _assert_gone(procs: list[psutil.Process], pgids: set[int]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs
    ):
        time.sleep(0.05)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)
    for pgid in pgids:  # no member of a stage's process group survives
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)


def _sleeper_operator(tmp_path: Path) -> HandoffRunOperator:
    project = write_project(tmp_path, SLEEPER)
    return HandoffRunOperator(
        task_id="run", project_dir=project, workspace=tmp_path / "ws", push_artifacts=False
    )


def test_on_kill_from_another_thread_kills_every_stage(tmp_path: Path) -> None:
    op = _sleeper_operator(tmp_path)
    seen: dict[str, Any] = {}

    def killer() -> None:
        try:
            procs = _wait_for_sleepers(2)
            seen["pgids"] = {os.getpgid(p.pid) for p in procs}
            seen["procs"] = procs
        finally:
            op.on_kill()  # always: a failed wait must not leave the test hanging

    thread = threading.Thread(target=killer)
    started = time.monotonic()
    thread.start()
    with pytest.raises(AirflowException) as raised:
        op.execute(fake_context())  # in this (main) thread, as Airflow runs it
    thread.join(timeout=30)

    assert time.monotonic() - started < 30
    assert "killed" in str(raised.value) and "stage 1" in str(raised.value)
    assert os.getpgid(0) not in seen["pgids"]  # stages run in their own process group(s)
    _assert_gone(seen["procs"], seen["pgids"])


def test_on_kill_from_a_signal_handler_in_the_task_thread(tmp_path: Path) -> None:
    """What Airflow does on SIGTERM: on_kill() runs in the thread that runs execute()."""
    op = _sleeper_operator(tmp_path)
    seen: dict[str, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        procs = _sleepers({("sleep", "300"), ("sleep", "301")})
        if len(procs) < 2:  # not started yet: try again shortly
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            return
        seen["procs"] = procs
        seen["pgids"] = {os.getpgid(p.pid) for p in procs}
        op.on_kill()

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(AirflowException):
            op.execute(fake_context())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    _assert_gone(seen["procs"], seen["pgids"])


def test_push_operators_return_summaries_without_values(
    tmp_path: Path, bucket: str, stack: str
) -> None:
    secret = f"value-{uuid.uuid4().hex}"
    project = write_project(
        tmp_path,
        """
        commands:
          - command: cat
            args: files/data.txt
        """,
        config={"app.json": json.dumps({"api_key": secret})},
        files={"data.txt": "hello\n"},
    )
    config_op = HandoffConfigPushOperator(
        task_id="push_config", project_dir=project, stack=stack, bucket=bucket
    )
    files_op = HandoffFilesPushOperator(
        task_id="push_files", project_dir=project, stack=stack, bucket=bucket
    )

    pushed = config_op.execute(fake_context("push_config"))
    first = files_op.execute(fake_context("push_files"))
    second = files_op.execute(fake_context("push_files"))

    assert secret not in json.dumps(pushed)
    assert pushed["name"] == f"/handoff/{stack}/config" and pushed["bytes"] > 0
    document = Remote.from_options(stack=stack, bucket=bucket).config.fetch()
    assert document["files"] == [{"name": "app.json", "value": json.dumps({"api_key": secret})}]
    assert (first["uploaded"], second["uploaded"], second["unchanged"]) == (1, 0, 1)
    assert list_keys(bucket, f"{stack}/files/") == [f"{stack}/files/data.txt"]


def test_push_of_a_broken_project_names_the_file(tmp_path: Path, stack: str) -> None:
    project = write_project(tmp_path, "commands:\n  - command: cat\n    argz: x\n")
    op = HandoffConfigPushOperator(task_id="push_config", project_dir=project, stack=stack)
    with pytest.raises(AirflowException) as raised:
        op.execute(fake_context("push_config"))
    assert str(project / "project.yml") in str(raised.value)


def test_hook_uses_the_connection_endpoint_region_and_credentials(
    moto_server: str, bucket: str, stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = f"handoff_{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "conn-key-id",
                "password": "conn-secret",
                "extra": {"endpoint_url": moto_server, "region_name": "eu-west-1"},
            }
        ),
    )
    # Without the connection, nothing would know where the moto server is.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key-id")

    hook = HandoffHook(aws_conn_id=conn_id)
    remote = hook.get_remote(stack=stack, bucket=bucket)
    s3 = remote.client("s3")

    assert s3.meta.endpoint_url == moto_server
    assert s3.meta.region_name == "eu-west-1"
    assert s3.meta.config.retries["mode"] == "standard"
    assert s3._request_signer._credentials.access_key == "conn-key-id"
    remote.config.push({"commands": [{"command": "true"}]})
    assert remote.config.fetch() == {"commands": [{"command": "true"}]}
    assert remote.client("s3") is s3  # one client per service


def test_hook_makes_no_call_until_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Creating the hook and the stores reads no connection and creates no client."""
    import botocore.session

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a client was created")

    monkeypatch.setattr(botocore.session.Session, "create_client", boom)
    monkeypatch.setattr(HandoffHook, "get_connection", classmethod(boom))
    remote = HandoffHook(aws_conn_id="not_there").get_remote(stack="s", bucket="b")
    assert (remote.stack, remote.bucket) == ("s", "b")


def test_artifacts_link_format() -> None:
    link = HandoffArtifactsLink()
    url = link.format_link(
        bucket="my-bucket",
        prefix="etl/runs/k1/",
        region_name="eu-west-1",
        aws_domain="aws.amazon.com",
    )
    assert url == (
        "https://s3.console.aws.amazon.com/s3/buckets/my-bucket?prefix=etl/runs/k1/&region=eu-west-1"
    )
    assert link.format_link(bucket="b") == ""


def test_default_args_and_mapping_reach_every_operator_argument(tmp_path: Path) -> None:
    """Each operator's own arguments are in its ``__init__`` signature (one ``__init__``
    over ``AwsBaseOperator``'s, as the Amazon operators have), so a DAG's ``default_args``
    fill them and ``partial``/``expand`` accept them."""
    from handoff_provider._compat import DAG, AwsBaseOperator

    defaults = {
        "project_dir": str(tmp_path),
        "stack": "etl",
        "bucket": "my-bucket",
        "config_name": "/custom/config",
        "kms_key_id": "alias/handoff",
        "allow_advanced_tier": True,
        "workspace": str(tmp_path / "ws"),
        "lock_wait": 5.0,
        "region_name": "eu-west-1",
    }
    with DAG(dag_id="defaults", schedule=None, default_args=defaults):
        config = HandoffConfigPushOperator(task_id="push_config")
        files = HandoffFilesPushOperator(task_id="push_files")
        run = HandoffRunOperator(task_id="run")
        mapped = HandoffFilesPushOperator.partial(task_id="mapped", stack="s").expand(
            bucket=["a", "b"]
        )
    for op in (config, files, run):
        assert isinstance(op, AwsBaseOperator) and op.aws_hook_class is HandoffHook
        assert (op.stack, op.bucket, op.config_name, op.kms_key_id) == (
            "etl",
            "my-bucket",
            "/custom/config",
            "alias/handoff",
        )
        assert (op.project_dir, op.region_name) == (str(tmp_path), "eu-west-1")
    assert config.allow_advanced_tier is True
    assert (run.workspace, run.lock_wait) == (str(tmp_path / "ws"), 5.0)
    assert run.outlets and run.outlets[0].uri == "s3://my-bucket/etl/last"
    assert mapped.partial_kwargs["stack"] == "s"


def test_run_operator_mappings_of_the_wrong_shape_are_one_line() -> None:
    with pytest.raises(
        ValueError, match=r"secret_envs: expected a dict of names to values \(got a list\)"
    ):
        HandoffRunOperator(task_id="t", secret_envs=["TOKEN"])
    assert HandoffRunOperator(task_id="t", envs={"A": "1"}).envs == {"A": "1"}
