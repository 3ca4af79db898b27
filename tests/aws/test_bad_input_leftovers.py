"""What a command or a failure leaves behind, against moto: the archive copes with whatever
is in ``artifacts/``, ``artifacts push`` needs the run's completion record, and a failed
large config push leaves no S3 object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from handoff_provider.core.cli import main as cli
from handoff_provider.core.stores import Remote
from handoff_provider.core.stores.artifacts import SKIPPED_KEY
from tests.aws.conftest import Recorder, keys, read

MESSY = r"""
tasks:
  - name: messy
    commands:
      - command: sh
        args: >-
          -c 'echo 1;
          mkfifo artifacts/pipe;
          ln -s loop artifacts/loop;
          ln -s .. artifacts/up;
          ln -s . artifacts/self;
          touch "artifacts/$(printf "caf\351")";
          echo kept > artifacts/kept.txt'
"""


def project(tmp_path: Path, yml: str) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "project.yml").write_text(yml)
    return directory


def runs_keys(s3: Any, bucket: str, stack: str) -> list[str]:
    return keys(s3, bucket, f"{stack}/runs/")


def test_whatever_is_in_artifacts_the_run_is_archived_with_the_problems_recorded(
    handoff_env: dict[str, str], tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, bucket = handoff_env["HANDOFF_STACK"], handoff_env["HANDOFF_BUCKET"]
    ws = tmp_path / "ws"
    argv = ["run", "-w", str(ws), "-p", str(project(tmp_path, MESSY)), "-a", "--run-key", "r1"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    archived = runs_keys(s3, bucket, stack)
    assert "r1/kept.txt" in archived and "r1/state" in archived and "r1/run.json" in archived
    assert not any(name in key for key in archived for name in ("pipe", "loop", "up/", "self"))
    record = json.loads(read(s3, bucket, f"{stack}/runs/r1/run.json"))
    skipped = record[SKIPPED_KEY]
    assert len(skipped) == 5, skipped
    assert any("pipe: is a FIFO" in line for line in skipped)
    assert any("loop: symlink loop" in line for line in skipped)
    assert any("up: symlink points outside" in line for line in skipped)
    assert any("self: symlink loop" in line for line in skipped)
    assert any("caf\\xe9: its name is not valid UTF-8" in line for line in skipped)
    assert read(s3, bucket, f"{stack}/last/state") == b"1\n"


def test_a_command_removing_artifacts_is_one_line_and_the_try_is_archived(
    handoff_env: dict[str, str], tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, bucket = handoff_env["HANDOFF_STACK"], handoff_env["HANDOFF_BUCKET"]
    # rm -rf can race the runner's own files in artifacts/ ("Directory not empty"): the
    # command removes the directory until it is gone, so the subject is the state write.
    yml = (
        "commands:\n  - command: sh\n"
        "    args: \"-c 'until rm -rf artifacts 2>/dev/null && [ ! -e artifacts ]; do :; done'\"\n"
    )
    argv = ["run", "-w", str(tmp_path / "ws"), "-p", str(project(tmp_path, yml))]
    assert cli.main([*argv, "-a", "--run-key", "gone"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(
        "handoff: run failed: task 'default': cannot write artifacts/state"
    )
    assert "gone/run.json" in runs_keys(s3, bucket, stack)
    assert keys(s3, bucket, f"{stack}/last/") == [], "a failed try is not published"


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (None, "run.json: missing, so no run completed"),
        ('{"status": "running"}', "status 'running': the run did not complete"),
        ("{not json", "run.json: not valid JSON"),
        ("[1]", "status None"),
    ],
)
def test_artifacts_push_refuses_a_run_without_a_completion_record(
    handoff_env: dict[str, str],
    tmp_path: Path,
    s3: Any,
    capsys: pytest.CaptureFixture[str],
    record: str | None,
    expected: str,
) -> None:
    """``kill -9`` of a run leaves ``run.json`` saying ``running``: pushing those partial
    artifacts must not publish them to last/ as a success."""
    stack, bucket = handoff_env["HANDOFF_STACK"], handoff_env["HANDOFF_BUCKET"]
    artifacts = tmp_path / "ws" / "artifacts"
    artifacts.mkdir(parents=True)
    (artifacts / "state").write_text("partial\n")
    if record is not None:
        (artifacts / "run.json").write_text(record)
    assert cli.main(["artifacts", "push", "-w", str(tmp_path / "ws")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert keys(s3, bucket, f"{stack}/") == [], "nothing pushed"


def test_a_failed_large_config_push_leaves_no_s3_object(
    aws: str, bucket: str, stack: str, recorder: Recorder, s3: Any
) -> None:
    remote = Remote(stack, bucket, client_factory=recorder.factory())
    big = {"commands": [{"command": "echo", "args": "x" * 9000}]}
    recorder.fail_on("PutParameter")
    with pytest.raises(Exception, match="write SSM parameter"):
        remote.config.push(big)
    assert keys(s3, bucket, f"{stack}/") == [], "the S3 copy of the document was removed"

    recorder.clear()
    pushed = remote.config.push(big)  # works; then a failing re-push keeps its object
    assert pushed.object_uri is not None
    recorder.fail_on("PutParameter")
    with pytest.raises(Exception, match="write SSM parameter"):
        remote.config.push(big)
    assert len(keys(s3, bucket, f"{stack}/config/")) == 1, "the live document's object stays"
    assert remote.config.fetch() == big
