"""One stack, many runs: concurrent ``handoff run -a`` processes, S3 errors and ``kill -9``
at every step of the publish. Against the moto server, with real CLI processes.

The project is a counter: each run reads ``artifacts/state`` (a number), writes a few
``parts/part-N.txt`` files naming its run key (their count changes with the state, so the
publish also deletes stale keys) and prints the next number. A lost update shows as a
final state below the number of successful runs; a mixed ``last/`` as parts of two runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from handoff_provider.core.aws.clients import default_client_factory
from handoff_provider.core.errors import RunFailed
from handoff_provider.core.run.orchestrate import HandoffRun, RunOutcome, RunRequest
from handoff_provider.core.stores import MANIFEST_NAME, Remote
from handoff_provider.core.stores.state import get_state
from tests.aws.conftest import Recorder, Tally, keys, read

HANDOFF = Path(sys.executable).with_name("handoff")
REPO = Path(__file__).resolve().parents[2]

COUNTER = """\
#!/usr/bin/env python3
import os, pathlib, time
state = pathlib.Path("artifacts/state")
n = int(state.read_text().strip() or 0) if state.exists() else 0
key = os.environ["HANDOFF_RUN_KEY"]
parts = pathlib.Path("artifacts/parts")
parts.mkdir(exist_ok=True)
for old in parts.iterdir():
    old.unlink()
for i in range(5 - n % 3):
    (parts / f"part-{i}.txt").write_text(f"{key} part {i}\\n" * 200)
time.sleep(float(os.environ.get("COUNTER_SLEEP", "0")))
print(n + 1)
"""


@pytest.fixture
def counter(tmp_path: Path) -> Path:
    project = tmp_path / "counter"
    (project / "files").mkdir(parents=True)
    (project / "project.yml").write_text(
        textwrap.dedent(
            """\
            tasks:
              - name: count
                pipeline:
                  - command: files/count.py
            """
        )
    )
    script = project / "files" / "count.py"
    script.write_text(COUNTER)
    script.chmod(0o755)
    return project


def cli_env(stack: str, bucket: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "HANDOFF_STACK": stack, "HANDOFF_BUCKET": bucket, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def start_run(ws: Path, project: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(HANDOFF), "run", "-w", str(ws), "-p", str(project), "-a", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], tally: Tally) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=240)
    tally.run(process.returncode == 0, stderr)
    return process.returncode, stderr


def published_state(s3: Any, bucket: str, stack: str) -> int:
    """The state as a run restores it (the manifest's run, verified)."""
    value, _ = get_state(Remote(stack, bucket, client_factory=default_client_factory()))
    assert value is not None
    return int(value.decode().strip())


def assert_last_is_one_run(s3: Any, bucket: str, stack: str) -> str:
    """last/ lists exactly the files of the run its manifest names, each equal to that
    run's object in runs/<key>/ and to the manifest's SHA-256; returns the run key."""
    manifest = json.loads(read(s3, bucket, f"{stack}/last/{MANIFEST_NAME}"))
    run_key = manifest["run_key"]
    assert manifest.get("last_sync", "complete") == "complete"
    assert keys(s3, bucket, f"{stack}/last/") == sorted([MANIFEST_NAME, *manifest["files"]])
    for name, info in manifest["files"].items():
        body = read(s3, bucket, f"{stack}/last/{name}")
        assert body == read(s3, bucket, f"{stack}/runs/{run_key}/{name}"), name
        assert hashlib.sha256(body).hexdigest() == info["sha256"], name
        if name.startswith("parts/"):
            assert body.startswith(run_key.encode()), f"{name} is from another run"
    return run_key


def assert_readers_see_one_run(remote: Remote, tmp_path: Path) -> str:
    """What `artifacts get` returns is one whole run (the one the manifest names)."""
    dest = tmp_path / f"got-{len(list(tmp_path.glob('got-*')))}"
    result = remote.artifacts.get_last(dest)
    run_key = result.source.rsplit("run ", 1)[1].rstrip(")")
    for part in (dest / "parts").iterdir():
        assert part.read_text().startswith(run_key), f"{part.name} is from another run"
    return run_key


# ------------------------------------------------------------------ concurrent runs


def test_concurrent_runs_serialise_under_the_lease(
    aws: str, bucket: str, stack: str, counter: Path, tmp_path: Path, s3: Any, tally: Tally
) -> None:
    """4 runs started at once, each archive taking a while: they run one after another
    (each waits for the lease), every one succeeds, no update is lost."""
    runs = 4
    env = cli_env(stack, bucket, COUNTER_SLEEP="0.3", HANDOFF_LOCK_TTL="3")
    processes = [
        start_run(tmp_path / f"ws{i}", counter, env, "--lock-wait", "180") for i in range(runs)
    ]
    results = [finish(p, tally) for p in processes]
    assert [code for code, _ in results] == [0] * runs, [err for _, err in results]
    waited = sum("; waiting" in err for _, err in results)
    assert waited >= 1, "at least one run found the lease taken"
    assert published_state(s3, bucket, stack) == runs
    assert_last_is_one_run(s3, bucket, stack)
    manifest = json.loads(read(s3, bucket, f"{stack}/last/{MANIFEST_NAME}"))
    assert len(manifest["history"]) == runs - 1


def test_concurrent_runs_without_the_lease_fail_as_conflicts_not_lost_updates(
    aws: str, bucket: str, stack: str, counter: Path, tmp_path: Path, s3: Any, tally: Tally
) -> None:
    """--no-lock: the runs overlap and restore the same state; the conditional publish lets
    only runs whose base is still current publish, the others fail as conflicts with their
    runs/<key>/ intact. The final state equals the number of successful runs."""
    runs = 4
    env = cli_env(stack, bucket, COUNTER_SLEEP="1")
    processes = [start_run(tmp_path / f"ws{i}", counter, env, "--no-lock") for i in range(runs)]
    results = [finish(p, tally) for p in processes]
    succeeded = [err for code, err in results if code == 0]
    conflicts = [err for code, err in results if code == 1]
    assert len(succeeded) + len(conflicts) == runs, [err for _, err in results]
    assert succeeded and conflicts, "overlapping runs restored the same state"
    for err in conflicts:
        assert "changed since this run read it" in err and "last/ untouched" in err, err
    assert published_state(s3, bucket, stack) == len(succeeded)
    assert len(keys(s3, bucket, f"{stack}/runs/")) > 0
    completed = {k.split("/")[0] for k in keys(s3, bucket, f"{stack}/runs/") if MANIFEST_NAME in k}
    assert len(completed) == runs, "every run's archive is complete, conflicting ones too"

    code, err = finish(start_run(tmp_path / "ws-final", counter, cli_env(stack, bucket)), tally)
    assert code == 0, err
    assert published_state(s3, bucket, stack) == len(succeeded) + 1
    assert_last_is_one_run(s3, bucket, stack)


# -------------------------------------------------------- S3 errors during the publish


def in_process_run(
    remote: Remote, project: Path, ws: Path, run_key: str, tally: Tally, **kwargs: Any
) -> RunOutcome | RunFailed:
    lines: list[str] = []
    request = RunRequest(
        workspace=ws,
        project_dir=project,
        remote=remote,
        push_artifacts=True,
        run_key=run_key,
        log=lines.append,
        **kwargs,
    )
    try:
        outcome: RunOutcome | RunFailed = HandoffRun(request).execute()
    except RunFailed as exc:
        outcome = exc
        lines.append(str(exc))
    tally.run(isinstance(outcome, RunOutcome), "\n".join(lines))
    return outcome


def key_has(part: str) -> Any:
    return lambda params: part in str(params.get("Key", ""))


def only_call(part: str, number: int) -> Any:
    """Matches the ``number``-th call on a key containing ``part`` (1-based), only that one."""
    seen = []

    def match(params: dict[str, Any]) -> bool:
        if part not in str(params.get("Key", "")):
            return False
        seen.append(1)
        return len(seen) == number

    return match


def releasing(params: dict[str, Any]) -> bool:
    """The lease release (botocore has made the body a file object by now: peek, don't read)."""
    body = params.get("Body")
    content = body.getvalue() if hasattr(body, "getvalue") else body
    return "/lease.json" in params.get("Key", "") and b'"released": true' in (content or b"")


#: (operation, which calls, matching calls let through first, the run's state is published)
PUBLISH_STEPS = [
    ("PutObject", key_has("/runs/r2/parts/"), 1, False),  # archive upload
    ("PutObject", key_has("/runs/r2/_HANDOFF_COMPLETE"), 0, False),  # run manifest
    ("PutObject", only_call("/lease.json", 2), 0, False),  # the lease check before the switch
    ("PutObject", key_has("/last/_HANDOFF_COMPLETE"), 0, False),  # the switch
    ("CopyObject", key_has("/last/"), 1, True),  # copying into last/
    ("DeleteObjects", lambda params: True, 0, True),  # removing stale keys
    ("PutObject", key_has("/last/_HANDOFF_COMPLETE"), 1, True),  # marking last/ complete
    ("PutObject", releasing, 0, True),  # the release
]


STEP_IDS = [
    "upload",
    "run-manifest",
    "lease-check",
    "switch",
    "copy",
    "delete",
    "complete",
    "release",
]


@pytest.mark.parametrize(("operation", "match", "after", "published"), PUBLISH_STEPS, ids=STEP_IDS)
def test_s3_error_at_each_publish_step_leaves_old_or_new_and_next_run_repairs(
    remote: Remote,
    recorder: Recorder,
    counter: Path,
    tmp_path: Path,
    s3: Any,
    bucket: str,
    operation: str,
    match: Any,
    after: int,
    published: bool,
    tally: Tally,
) -> None:
    """S3 failures are injected through botocore's event system (see conftest.Recorder):
    moto cannot be told to fail one request. Before the switch, last/ stays the old run;
    from the switch on, it is the new one; never a mix; the next run repairs/publishes.
    (The TTL is the default 60 s, so no heartbeat renewal happens within these runs; the
    run whose release fails has a 3 s lease the next run takes over.)"""
    stack = remote.stack
    first = in_process_run(remote, counter, tmp_path / "ws", "r1", tally)
    assert isinstance(first, RunOutcome) and published_state(s3, bucket, stack) == 1

    recorder.fail_on(operation, after=after, match=match)
    release_fails = match is releasing
    second = in_process_run(
        remote, counter, tmp_path / "ws", "r2", tally, lock_ttl=3 if release_fails else 60
    )
    recorder.clear()
    expected = "r2" if published else "r1"
    assert assert_readers_see_one_run(remote, tmp_path) == expected
    assert published_state(s3, bucket, stack) == (2 if published else 1)
    if release_fails:
        assert isinstance(second, RunOutcome), "a failed release does not fail the run"
    elif published:
        assert isinstance(second, RunOutcome) and second.artifacts is not None
        assert second.artifacts.last_pending, "the run says last/ needs finishing"
    else:
        assert isinstance(second, RunFailed) and "last/ still holds the previous" in str(second)

    third = in_process_run(remote, counter, tmp_path / "ws", "r3", tally, lock_wait=30)
    assert isinstance(third, RunOutcome), third
    assert assert_last_is_one_run(s3, bucket, stack) == "r3"
    assert published_state(s3, bucket, stack) == (3 if published else 2)


# ------------------------------------------------------------ kill -9 mid-publish


KILL_POINTS = [
    ("PutObject", "/last/_HANDOFF_COMPLETE", "before", False),  # just before the switch
    ("PutObject", "/last/_HANDOFF_COMPLETE", "after", True),  # right after the switch
    ("CopyObject", "/last/parts/part-1", "after", True),  # midway through the copies
    ("DeleteObjects", "", "before", True),  # before stale keys are removed
]


@pytest.mark.parametrize(("operation", "key_part", "when", "published"), KILL_POINTS)
def test_kill_9_mid_publish_then_next_run_takes_over_and_repairs(
    remote: Remote,
    counter: Path,
    tmp_path: Path,
    s3: Any,
    bucket: str,
    operation: str,
    key_part: str,
    when: str,
    published: bool,
    tally: Tally,
) -> None:
    stack = remote.stack
    env = cli_env(stack, bucket, HANDOFF_LOCK_TTL="2")
    code, err = finish(start_run(tmp_path / "ws", counter, env), tally)
    assert code == 0, err
    first_key = assert_last_is_one_run(s3, bucket, stack)
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.aws.killer",
            operation,
            key_part,
            when,
            "--",
            "run",
            "-w",
            str(tmp_path / "ws"),
            "-p",
            str(counter),
            "-a",
            "--run-key",
            "r2",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    tally.run(False, killed.stderr)
    assert killed.returncode == -9, killed.stderr
    assert assert_readers_see_one_run(remote, tmp_path) == ("r2" if published else first_key)
    assert published_state(s3, bucket, stack) == (2 if published else 1)

    code, err = finish(
        start_run(tmp_path / "ws", counter, env, "--lock-wait", "60", "--run-key", "r3"), tally
    )
    assert code == 0, err
    assert "took over an expired lease" in err
    if published and operation != "PutObject":
        assert "finished the interrupted publish of run r2" in err
    assert assert_last_is_one_run(s3, bucket, stack) == "r3"
    assert published_state(s3, bucket, stack) == (3 if published else 2)
