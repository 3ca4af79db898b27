"""The runtime image, built from the Dockerfile and run as ECS would run it, against moto.

Every run gets exactly the ``containerOverrides`` entry ``HandoffEcsRunOperator`` builds
(its own ``build_overrides``, not a copy): the command replaces the image's CMD and the
environment is the override's plus what the task role and the network give a Fargate task
(fake credentials, ``AWS_ENDPOINT_URL`` of the moto server on 127.0.0.1, reached through
``--network host``). Nothing of the image is patched: its user, caches and paths are the
Dockerfile's. What ECS does on stop (SIGTERM, then SIGKILL after the stop timeout) is
``docker stop``; Fargate's ``readonlyRootFilesystem`` is ``docker run --read-only``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from handoff_provider.core.cli import main as cli
from handoff_provider.operators.ecs import HandoffEcsRunOperator
from tests.container.conftest import Image

# The first test also waits for the image (the cache's build lock, debootstrap, docker build).
pytestmark = [pytest.mark.container, pytest.mark.timeout(3600)]

REGION = "us-east-1"
REPO = Path(__file__).resolve().parents[2]
SINGER = REPO / "examples" / "projects" / "02_singer_csv"
UID = 10001
STOP_TIMEOUT = 30  # seconds; ECS's default stopTimeout is 30 s
#: What the task role and the VPC endpoint give a Fargate task (here: fake, and moto).
TASK_ROLE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}


class TaskInstanceStub:
    """What the operator reads from the task instance to name the run (its run key)."""

    dag_id = "handoff_container"
    task_id = "run"
    map_index = -1

    def __init__(self, run_id: str, try_number: int) -> None:
        self.run_id = run_id
        self.try_number = try_number


def override_for(stack: str, bucket: str, run_id: str, try_number: int = 1) -> dict[str, Any]:
    """The handoff container's entry of the overrides the operator sends to ``RunTask``."""
    operator = HandoffEcsRunOperator(
        task_id="run",
        cluster="handoff",
        task_definition="handoff-runtime",
        stack=stack,
        bucket=bucket,
        region_name=REGION,
    )
    ti = TaskInstanceStub(run_id, try_number)
    context = {"ti": ti, "task_instance": ti, "run_id": run_id}
    overrides = operator.build_overrides(context)  # type: ignore[arg-type]
    (ours,) = [c for c in overrides["containerOverrides"] if c["name"] == operator.container_name]
    assert set(ours) == {"name", "command", "environment"}
    return ours


def run_key_of(override: dict[str, Any]) -> str:
    return next(e["value"] for e in override["environment"] if e["name"] == "HANDOFF_RUN_KEY")


class Containers:
    """``docker run`` of the image with an override; removes its containers at the end."""

    def __init__(self, image: Image, endpoint: str) -> None:
        self.image, self.endpoint, self.names = image, endpoint, []

    def args(self, override: dict[str, Any], *options: str) -> list[str]:
        name = f"handoff-test-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        env = {**TASK_ROLE_ENV, "AWS_ENDPOINT_URL": self.endpoint}
        env.update({e["name"]: e["value"] for e in override["environment"]})
        args = ["run", "--name", name, "--network", "host", *options]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        return [*args, self.image.tag, *override["command"]]

    def run(self, override: dict[str, Any], *options: str) -> tuple[int, str]:
        """Run to the end: (exit status, the container's output)."""
        proc = self.image.engine.docker(*self.args(override, *options), check=False, timeout=300)
        return proc.returncode, proc.stdout + proc.stderr

    def start(self, override: dict[str, Any], *options: str) -> str:
        args = self.args(override, *options)
        args.insert(1, "--detach")
        self.image.engine.docker(*args)
        return self.names[-1]

    def remove(self) -> None:
        if self.names:
            self.image.engine.docker("rm", "-f", "-v", *self.names, check=False)


@pytest.fixture
def containers(image: Image, aws: str) -> Iterator[Containers]:
    runner = Containers(image, aws)
    try:
        yield runner
    finally:
        runner.remove()


def push(project: Path, stack: str, bucket: str) -> None:
    for verb in ("config", "files"):
        argv = [verb, "push", "-p", str(project), "--stack", stack, "--bucket", bucket]
        assert cli.main(argv) == 0


def s3_keys(bucket: str, prefix: str) -> list[str]:
    s3 = boto3.client("s3", region_name=REGION)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", []))


def s3_text(bucket: str, key: str) -> str:
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"]
    return body.read().decode()


def run_record(bucket: str, stack: str, run_key: str) -> dict[str, Any]:
    return json.loads(s3_text(bucket, f"{stack}/runs/{run_key}/run.json"))


def bookmark(state: str) -> str:
    return json.loads(state)["bookmarks"]["readings"]["day"]


def write_project(root: Path, project_yml: str, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "project.yml").write_text(project_yml)
    (root / "files").mkdir()
    for name, text in (files or {}).items():
        (root / "files" / name).write_text(text)
    return root


# -- the cases ---------------------------------------------------------------------------


def test_image_runs_as_its_user_with_owned_caches(image: Image) -> None:
    """The image's user is uid 10001 and owns every directory the runtime writes."""
    script = (
        "import os, pathlib; print(os.getuid()); "
        "[print(p, os.stat(p).st_uid) for p in sorted({os.environ[k] for k in "
        "('HOME', 'TMPDIR', 'XDG_CACHE_HOME', 'UV_CACHE_DIR', 'PIP_CACHE_DIR', "
        "'HANDOFF_VENV_CACHE')} | {os.environ['HOME'] + '/workspace'})]"
    )
    proc = image.engine.docker("run", "--rm", "--entrypoint", "python", image.tag, "-c", script)
    uid, *owners = proc.stdout.split("\n")
    assert int(uid) == UID
    owners = [line for line in owners if line]
    assert len(owners) == 7, owners
    for line in owners:
        path, owner = line.rsplit(" ", 1)
        assert int(owner) == UID, f"{path} is owned by uid {owner}"


def test_handoff_help_start_up_time(image: Image, report: Callable[[str], None]) -> None:
    """``handoff --help`` inside the container: the median of 5 runs, for the report."""
    script = (
        "import subprocess, statistics, time\n"
        "def once():\n"
        "    t = time.perf_counter()\n"
        "    subprocess.run(['handoff', '--help'], check=True, stdout=subprocess.DEVNULL)\n"
        "    return time.perf_counter() - t\n"
        "once()\n"
        "print(statistics.median(once() for _ in range(5)))\n"
    )
    proc = image.engine.docker("run", "--rm", "--entrypoint", "python", image.tag, "-c", script)
    seconds = float(proc.stdout.strip())
    report(f"handoff --help in the container: {seconds:.3f} s (median of 5)")
    assert seconds > 0


def test_singer_twice_carries_state_and_archives_as_uid_10001(
    containers: Containers, bucket: str, stack: str, tmp_path: Path
) -> None:
    """Two tries of the Singer example, each in a fresh container: the second continues from
    the first's bookmark (restored from last/); runs/<key>/ and last/ are written; files the
    run creates in its workspace (a host directory here) belong to uid 10001."""
    push(SINGER, stack, bucket)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    workspace.chmod(0o777)
    first = override_for(stack, bucket, "scheduled__2024-01-01T06:00:00+00:00")
    code, output = containers.run(first, "-v", f"{workspace}:/home/handoff/workspace")
    assert code == 0, output
    assert "handoff: run succeeded" in output
    state = workspace / "artifacts" / "state"
    assert state.stat().st_uid == UID
    assert {p.lstat().st_uid for p in workspace.rglob("*")} == {UID}
    first_day = bookmark(state.read_text())

    second = override_for(stack, bucket, "scheduled__2024-01-02T06:00:00+00:00")
    code, output = containers.run(second)
    assert code == 0, output
    assert "state: restored artifacts/state" in output
    second_day = bookmark(s3_text(bucket, f"{stack}/last/state"))
    assert second_day > first_day

    for override in (first, second):
        archived = s3_keys(bucket, f"{stack}/runs/{run_key_of(override)}/")
        assert {"state", "run.json", "readings.csv"} <= set(archived), archived
        assert run_record(bucket, stack, run_key_of(override))["status"] == "success"
    assert bookmark(s3_text(bucket, f"{stack}/runs/{run_key_of(second)}/state")) == second_day


def test_failing_stage_exits_non_zero_and_is_archived(
    containers: Containers, bucket: str, stack: str, tmp_path: Path
) -> None:
    """A stage that exits 3: the container exits 1 (so ECS reports the task failed), the
    try is archived to runs/<key>/ with the stage's exit code, and last/ is not written."""
    project = write_project(
        tmp_path / "failing",
        "commands:\n  - command: sh\n    args: files/fail.sh\n",
        {"fail.sh": "echo partial output\nexit 3\n"},
    )
    push(project, stack, bucket)
    override = override_for(stack, bucket, "manual__2024-01-01T00:00:00+00:00")
    code, output = containers.run(override)
    assert code == 1, output
    assert "handoff: run failed" in output
    record = run_record(bucket, stack, run_key_of(override))
    assert record["status"] == "failed"
    assert '"exit_code": 3' in json.dumps(record), record
    assert s3_keys(bucket, f"{stack}/last/") == []


def test_sigterm_terminates_the_stages_and_archives_the_try_as_killed(
    containers: Containers,
    image: Image,
    bucket: str,
    stack: str,
    tmp_path: Path,
    report: Callable[[str], None],
) -> None:
    """What ECS does to stop a task: SIGTERM to the container's process, SIGKILL after the
    stop timeout. handoff ends its stages and archives the try (status ``killed``) well
    within it, so the container exits by itself, not by SIGKILL (exit status 137)."""
    project = write_project(
        tmp_path / "slow",
        "commands:\n  - command: sleep\n    args: '600'\n",
    )
    push(project, stack, bucket)
    override = override_for(stack, bucket, "manual__2024-01-01T00:00:00+00:00")
    name = containers.start(override)
    deadline = time.monotonic() + 120
    while "sleep 600" not in image.engine.docker("top", name, check=False).stdout:
        assert time.monotonic() < deadline, image.engine.docker("logs", name).stderr
        time.sleep(0.5)
    started = time.monotonic()
    image.engine.docker("stop", "-t", str(STOP_TIMEOUT), name)
    stopped_in = time.monotonic() - started
    state = json.loads(image.engine.docker("inspect", "--format", "{{json .State}}", name).stdout)
    logs = image.engine.docker("logs", name)
    assert state["ExitCode"] not in (0, 137), (state, logs.stderr)
    assert stopped_in < STOP_TIMEOUT - 5, f"stopped in {stopped_in:.1f} s"
    report(f"docker stop -> container exited in {stopped_in:.1f} s")
    record = run_record(bucket, stack, run_key_of(override))
    assert record["status"] == "killed", record
    assert s3_keys(bucket, f"{stack}/last/") == []


def test_install_failure_is_archived_with_the_install_log(
    containers: Containers, bucket: str, stack: str, tmp_path: Path
) -> None:
    """A project whose venv install fails: the container exits 1 and the try is archived
    as failed, with the install's own output (pip's error) in runs/<key>/."""
    project = write_project(
        tmp_path / "broken-install",
        "installs:\n"
        "  - venv: broken\n"
        "    command: pip install --no-index handoff-no-such-package\n"
        "commands:\n"
        "  - command: python\n"
        "    venv: broken\n"
        "    args: -c pass\n",
    )
    push(project, stack, bucket)
    override = override_for(stack, bucket, "manual__2024-01-01T00:00:00+00:00")
    code, output = containers.run(override)
    assert code == 1, output
    run_key = run_key_of(override)
    record = run_record(bucket, stack, run_key)
    assert record["status"] == "failed", record
    archived = s3_keys(bucket, f"{stack}/runs/{run_key}/")
    logs = [key for key in archived if "install" in key and key.endswith(".log")]
    assert logs, f"no install log among the archived {archived}"
    text = "".join(s3_text(bucket, f"{stack}/runs/{run_key}/{key}") for key in logs)
    assert "handoff-no-such-package" in text, text  # pip's own error


def test_read_only_root_filesystem_with_a_writable_home_volume(
    containers: Containers, image: Image, bucket: str, stack: str
) -> None:
    """Fargate's ``readonlyRootFilesystem``: the root is read-only and one writable volume
    is mounted at the user's home, where the workspace, the caches and TMPDIR live. The
    Singer example (two venvs: uv, pip and the venv cache all write) runs and archives."""
    push(SINGER, stack, bucket)
    volume = f"handoff-home-{uuid.uuid4().hex[:8]}"
    override = override_for(stack, bucket, "manual__2024-01-01T00:00:00+00:00")
    try:
        code, output = containers.run(override, "--read-only", "-v", f"{volume}:/home/handoff")
        assert code == 0, output
        assert "handoff: run succeeded" in output
        assert {"state", "readings.csv"} <= set(s3_keys(bucket, f"{stack}/last/"))
        # and the root really is read-only for the run's user
        denied = image.engine.docker(
            "run",
            "--rm",
            "--read-only",
            "--entrypoint",
            "python",
            image.tag,
            "-c",
            "open('/home/handoff/x', 'w')",
            check=False,
        )
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    finally:
        containers.remove()
        containers.names.clear()
        image.engine.docker("volume", "rm", "-f", volume, check=False)
