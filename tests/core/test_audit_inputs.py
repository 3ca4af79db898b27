"""Audit: every bad input to the ``handoff`` CLI is one ``handoff: error: ...`` line.

Each case drives the real CLI (``cli.main``; once the installed console script) and
checks: exit status != 0, no traceback, and a final line naming what is wrong (file,
field, stage, resource). Failures of a run that did start end with ``handoff: run
failed: ...`` instead (exit 1), naming the task and stage.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from handoff_provider.core.cli.main import main

OK_YML = "commands:\n  - command: echo\n    args: hi\n"


def error_line(capsys: pytest.CaptureFixture[str], argv: list[str], *, prefix: str) -> str:
    """Run the CLI; assert a non-zero exit and one final error line; return that line."""
    status = main(argv)
    out, err = capsys.readouterr()
    assert status != 0, (out, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines, "no error printed"
    assert lines[-1].startswith(prefix), err
    # one error line: no other line of stderr is an error/traceback line
    assert sum(line.startswith("handoff: ") for line in lines) == 1, err
    return lines[-1]


def err1(capsys, argv):
    return error_line(capsys, argv, prefix="handoff: error: ")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return tmp_path / "ws"


# --------------------------------------------------------------------------- project files


@pytest.mark.parametrize(
    ("yml", "expected"),
    [
        ("", "the top level must be a mapping"),
        ("- command: echo\n", "(got a list)"),
        ("commands:\n\t- command: echo\n", "line 2, column 1: YAML syntax error"),
        ("commands: [\n", "YAML syntax error"),
        ("tasks:\n  - name: a/b\n    pipeline: [{command: echo}]\n", "tasks[0].name: 'a/b'"),
        ("tasks:\n  - name: a b\n    pipeline: [{command: echo}]\n", "tasks[0].name:"),
        ("tasks:\n  - name: a\n    timeout: 0\n    pipeline: [{command: echo}]\n", "timeout"),
        ("tasks:\n  - name: a\n    timeout: -5\n    pipeline: [{command: echo}]\n", "timeout"),
        ("tasks:\n  - name: a\n    timeout: '10'\n    pipeline: [{command: echo}]\n", "timeout"),
    ],
)
def test_bad_project_yml(make_project, capsys, yml: str, expected: str) -> None:
    project = make_project(yml)
    line = err1(capsys, ["config", "print", "-p", str(project)])
    assert f"{project / 'project.yml'}: " in line and expected in line


def test_missing_project_yml_and_missing_directory(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    line = err1(capsys, ["config", "print", "-p", str(tmp_path / "empty")])
    assert line == f"handoff: error: {tmp_path / 'empty' / 'project.yml'}: not found"
    line = err1(capsys, ["run", "-w", str(tmp_path / "ws"), "-p", str(tmp_path / "nope")])
    assert line == f"handoff: error: {tmp_path / 'nope'}: project directory not found"


def test_task_name_too_long_for_artifact_file_names(make_project, capsys, ws: Path) -> None:
    """Finding: a 300-character task name passed validation, then the run died with an
    OSError traceback (File name too long) writing artifacts/<task>.stdout.log."""
    name = "t" * 300
    project = make_project(f"tasks:\n  - name: {name}\n    pipeline: [{{command: echo}}]\n")
    line = err1(capsys, ["run", "-w", str(ws), "-p", str(project)])
    assert line.endswith("tasks[0].name: must be at most 200 characters")
    assert name not in line
    # the longest allowed name fits every artifact file name it produces
    ok = make_project(
        f"tasks:\n  - name: {'t' * 200}\n    pipeline: [{{command: echo}}, {{command: cat}}]\n",
        name="ok",
    )
    assert main(["run", "-w", str(ws), "-p", str(ok)]) == 0
    assert (ws / "artifacts" / f"{'t' * 200}.2.stderr.log").is_file()


@pytest.mark.parametrize(
    ("args", "problem"),
    [('a "b', "No closing quotation"), ("a \\", "No escaped character")],
)
def test_unbalanced_quote_in_args_is_refused_before_anything_runs(
    make_project, capsys, ws: Path, args: str, problem: str
) -> None:
    """Finding: ``args: 'a "b'`` compiled (and ``config push`` would deploy it); the
    error only came from the run. Args without templates are now checked at load time."""
    project = make_project(f"commands:\n  - command: echo\n    args: {json.dumps(args)}\n")
    for verb in (["config", "print"], ["show", "commands"], ["run", "-w", str(ws)]):
        line = err1(capsys, [*verb, "-p", str(project)])
        assert line == (
            f"handoff: error: {project / 'project.yml'}: commands[0].args: "
            f"cannot split args into words: {problem}"
        )
    assert not (ws / "artifacts" / "run.json").exists()  # nothing ran


def test_templated_args_with_unbalanced_quote_fail_the_run_naming_the_stage(
    make_project, capsys, ws: Path
) -> None:
    yml = 'vars: [{key: q, value: "x"}]\ncommands:\n  - command: echo\n    args: "a \\"{{ q }}"\n'
    project = make_project(yml)
    line = error_line(capsys, ["run", "-w", str(ws), "-p", str(project)], prefix="handoff: run")
    assert "commands[0].args: cannot split args into words: No closing quotation" in line


def test_command_not_on_path_names_the_stage(make_project, capsys, ws: Path) -> None:
    project = make_project("commands:\n  - command: echo\n  - command: no-such-cmd-zz9\n")
    line = error_line(capsys, ["run", "-w", str(ws), "-p", str(project)], prefix="handoff: run")
    assert "stage 2 ('no-such-cmd-zz9')" in line and "not found on PATH" in line


def test_failing_venv_install_names_the_venv(make_project, capsys, ws: Path, tmp_path) -> None:
    project = make_project("commands:\n  - command: echo\n    venv: v1\n    installs: ['exit 7']\n")
    argv = ["run", "-w", str(ws), "-p", str(project), "--venv-cache", str(tmp_path / "vc")]
    # The try started (workspace prepared): it fails as a run, recorded in run.json.
    line = error_line(capsys, argv, prefix="handoff: run failed: ")
    assert "venv 'v1': install command 1 of 1 failed with exit status 7" in line
    summary = json.loads((ws / "artifacts" / "run.json").read_text())
    assert summary["status"] == "failed" and "install command 1 of 1" in summary["error"]


def test_a_failing_install_leaves_its_output_in_the_install_log(
    make_project, capsys, ws: Path, tmp_path
) -> None:
    installs = "['echo fetching pkg-zz9; echo pkg-zz9 not found >&2; exit 7']"
    project = make_project(
        f"commands:\n  - command: echo\n    venv: v1\n    installs: {installs}\n"
    )
    argv = ["run", "-w", str(ws), "-p", str(project), "--venv-cache", str(tmp_path / "vc")]
    error_line(capsys, argv, prefix="handoff: run failed: ")
    kept = (ws / "artifacts" / "install.log").read_text()
    assert "fetching pkg-zz9" in kept and "pkg-zz9 not found" in kept, kept


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["-v", "foo"], "variable override #1: expected KEY=VALUE (no '=')"),
        (["-v", "1x=2"], "'1x' is not a valid variable name"),
        (["--start-at", "garbage"], "start_at: 'garbage' is not an ISO 8601 timestamp"),
        (["--start-at", "2024-02-01", "--end-at", "2024-01-01"], "is after end_at"),
    ],
)
def test_bad_run_options(make_project, capsys, ws: Path, options, expected) -> None:
    project = make_project(OK_YML)
    line = err1(capsys, ["run", "-w", str(ws), "-p", str(project), *options])
    assert expected in line


# --------------------------------------------------------------------------- workspace


@pytest.mark.parametrize("inside", [False, True])
def test_workspace_that_is_a_file(make_project, capsys, tmp_path: Path, inside: bool) -> None:
    """Finding: ``-w`` naming a file (or a path below one) ended in a FileExistsError /
    NotADirectoryError traceback from Workspace.prepare()."""
    project = make_project(OK_YML)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    workspace = blocker / "ws" if inside else blocker
    for argv in (
        ["run", "-w", str(workspace), "-p", str(project)],
        ["workspace", "install", "-w", str(workspace), "-p", str(project)],
    ):
        line = err1(capsys, argv)
        assert line.startswith(f"handoff: error: workspace {workspace}")
        assert "is not a directory (a file is in the way)" in line
    assert blocker.read_text() == "x"


def test_workspace_that_cannot_be_created(make_project, capsys, tmp_path: Path) -> None:
    """Permission/read-only problems: tests may run as root (no EACCES), so a path under
    /proc (not creatable by anyone) stands in for an unwritable location."""
    project = make_project(OK_YML)
    workspace = Path("/proc/handoff-audit-no-such-dir/ws")
    line = err1(capsys, ["run", "-w", str(workspace), "-p", str(project)])
    assert line.startswith(f"handoff: error: workspace {workspace}")
    assert "cannot be created or written" in line


# --------------------------------------------------------------------------- remote verbs


@pytest.mark.parametrize(
    "argv",
    [
        ["config", "print"],
        ["show", "commands"],
        ["files", "get", "-w", "WS"],
        ["artifacts", "get", "-w", "WS"],
        ["run", "-w", "WS"],
    ],
)
def test_remote_verbs_without_stack(argv, capsys, ws: Path, monkeypatch) -> None:
    for name in ("HANDOFF_STACK", "STACK_NAME", "HANDOFF_BUCKET", "S3_BUCKET_NAME"):
        monkeypatch.delenv(name, raising=False)
    argv = [str(ws) if a == "WS" else a for a in argv]
    line = err1(capsys, argv)
    assert "stack" in line


def test_remote_verbs_without_bucket(capsys, ws: Path, monkeypatch) -> None:
    for name in ("HANDOFF_BUCKET", "S3_BUCKET_NAME"):
        monkeypatch.delenv(name, raising=False)
    for verb in (["files", "get"], ["artifacts", "get"]):
        line = err1(capsys, [*verb, "-w", str(ws), "--stack", "s"])
        assert "no S3 bucket: pass --bucket or set HANDOFF_BUCKET" in line


def test_remote_errors(aws, bucket, stack, capsys, tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    remote = ["--stack", stack, "--bucket", bucket]

    line = err1(capsys, ["files", "get", "-w", ws, "--stack", stack, "--bucket", "no-such-bkt-zz"])
    assert "s3://no-such-bkt-zz/" in line and "does not exist" in line

    line = err1(capsys, ["config", "print", "--stack", stack])
    assert f"SSM parameter /handoff/{stack}/config not found" in line

    line = err1(capsys, ["artifacts", "get", "-w", ws, *remote])
    assert f"no successful run archived under s3://{bucket}/{stack}/last/ yet" in line

    ssm = boto3.client("ssm", region_name="us-east-1")
    name = f"/handoff/{stack}/config"
    secret = "S3cr3t-Zebra-42"
    for value, expected in [
        (f"{secret} {{", f"SSM parameter {name} does not hold a JSON document"),
        (json.dumps([secret]), f"SSM parameter {name} does not hold a JSON object"),
        (json.dumps({"commands": secret}), "commands: must be a list (got a string)"),
        (
            json.dumps({"commands": [{"command": "echo"}], "files": [{"name": "x", "value": 5}]}),
            "files[0].value: must be a string (got a number)",
        ),
    ]:
        ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
        for argv in (["show", "commands", *remote], ["run", "-w", ws, *remote]):
            line = err1(capsys, argv)
            assert expected in line and secret not in line


def test_files_and_artifacts_get_into_a_file(aws, bucket, stack, capsys, tmp_path: Path) -> None:
    """Finding: ``files get`` / ``artifacts get -w <a file>`` died with a traceback from
    mkdir inside the store; the CLI now prepares the workspace first."""
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=bucket, Key=f"{stack}/files/a.txt", Body=b"a"
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for verb in (["files", "get"], ["artifacts", "get"]):
        line = err1(capsys, [*verb, "-w", str(blocker), "--stack", stack, "--bucket", bucket])
        assert line == (
            f"handoff: error: workspace {blocker} is not a directory (a file is in the way)"
        )


def test_console_script_bad_workspace(make_project, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "handoff"
    project = make_project(OK_YML)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    done = subprocess.run(
        [str(script), "run", "-w", str(blocker), "-p", str(project)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"handoff: error: workspace {blocker} is not a directory (a file is in the way)\n"
    )
