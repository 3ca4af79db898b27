"""Audit: a secret never leaks, and nothing is left half-written.

One distinctive secret sits in ``config/tap-config.json``, in an ``envs`` entry marked
``secret: true`` and in an SSM parameter read with ``ssm()``. Every CLI verb (including
failing ones) is driven for real against the moto server; the secret must not appear on
stderr, in ``run.json``, in any S3 object other than the user's own output, in ``repr()``
of the objects a traceback may show, nor in files readable by others. ``config print``
prints the document: that is its job. What a command itself writes (its stdout/stderr
copies under ``artifacts/``) is the user's output (documented in docs/internals.md).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from handoff_provider.core.cli.main import main
from handoff_provider.core.errors import HandoffError, RunFailed, StoreError
from handoff_provider.core.load.project import compile_document, load_project
from handoff_provider.core.run.orchestrate import HandoffRun, RunRequest
from handoff_provider.core.run.workspace import Workspace
from handoff_provider.core.stores import Remote
from tests.aws.conftest import Recorder, keys

SECRET = "S3cr3t-Zebra-42"
REGION = "us-east-1"

PROJECT_YML = """\
envs:
  - key: PASSWORD
    value: S3cr3t-Zebra-42
    secret: true
vars:
  - key: pw
    value: "{{{{ ssm('{parameter}') }}}}"
tasks:
  - name: main
    pipeline:
      - command: cat
        args: config/tap-config.json
      - command: sh
        args: >-
          -c 'cat >/dev/null; echo $PASSWORD >&2; echo {{{{ pw }}}} >&2;
          cat files/t.txt >&2; exit {status}'
"""


def make_project(root: Path, parameter: str, *, status: int = 0, name: str = "project") -> Path:
    project = root / name
    (project / "config").mkdir(parents=True)
    (project / "files").mkdir()
    (project / "project.yml").write_text(PROJECT_YML.format(parameter=parameter, status=status))
    (project / "config" / "tap-config.json").write_text(
        json.dumps({"user": "bob", "password": SECRET})
    )
    (project / "files" / "t.txt").write_text("pw={{ pw }}\n")
    return project


@pytest.fixture
def parameter(aws: str, stack: str) -> str:
    name = f"/audit/{stack}/secret"
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=name, Value=SECRET, Type="SecureString"
    )
    return name


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_no_verb_prints_the_secret(
    aws: str, bucket: str, stack: str, parameter: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("HANDOFF_VENV_CACHE", str(tmp_path / "venvs"))
    good = make_project(tmp_path, parameter, status=0)
    bad = make_project(tmp_path, parameter, status=3, name="bad")
    remote = ["--stack", stack, "--bucket", bucket]
    ws = {name: str(tmp_path / name) for name in ("w1", "w2", "w3", "w4", "w5")}

    runs = [
        (0, ["config", "push", "-p", str(good), *remote]),
        (0, ["files", "push", "-p", str(good), *remote]),
        (0, ["show", "commands", "-p", str(good)]),
        (0, ["show", "commands", *remote]),
        (0, ["workspace", "install", "-w", ws["w1"], *remote]),
        (0, ["run", "-w", ws["w1"], "-a", *remote]),  # from SSM + S3; publishes last/
        (0, ["run", "-w", ws["w2"], "-p", str(good)]),  # local; ssm() through boto3's chain
        (1, ["run", "-w", ws["w3"], "-p", str(bad), "-a", *remote]),  # failing stage
        (0, ["artifacts", "push", "-w", ws["w3"], *remote]),
        (0, ["artifacts", "get", "-w", ws["w4"], *remote]),
        (0, ["files", "get", "-w", ws["w5"], *remote]),
        (1, ["config", "print", "--stack", f"{stack}-none"]),  # a failing remote read
    ]
    for expected, argv in runs:
        status, out, err = cli(capsys, *argv)
        assert status == expected, (argv, err)
        assert SECRET not in err, argv
        if argv[:2] != ["config", "print"]:
            assert SECRET not in out, argv
    # the failing stage's stderr was shown, redacted
    status, _, err = cli(capsys, "run", "-w", ws["w3"], "-p", str(bad))
    assert status == 1 and "[main:2 sh] ***" in err and "pw=***" in err

    # run.json, local and archived; manifests; anything but the user's own output
    for name in ("w1", "w2", "w3"):
        assert SECRET not in (tmp_path / name / "artifacts" / "run.json").read_text()
    s3 = boto3.client("s3", region_name=REGION)
    everything = keys(s3, bucket, f"{stack}/")
    assert any(k.startswith("runs/") and k.endswith("run.json") for k in everything)
    users_own = (".stderr.log", ".stdout.log", "/state")
    for key in everything:
        if key.startswith("files/") or key.endswith(users_own):
            continue
        body = s3.get_object(Bucket=bucket, Key=f"{stack}/{key}")["Body"].read()
        assert SECRET.encode() not in body, key

    # files: config/ is 0700 and its files 0600; nothing else in the workspace holds the
    # secret apart from the rendered files/ template and the commands' own output
    for name in ("w1", "w2", "w3"):
        root = tmp_path / name
        assert stat.S_IMODE((root / "config").stat().st_mode) == 0o700
        for path in root.rglob("*"):
            if path.is_symlink() or not path.is_file() or "venvs" in path.parts:
                continue
            if SECRET.encode() not in path.read_bytes():
                continue
            relative = path.relative_to(root).as_posix()
            if relative.startswith("config/"):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, relative
            else:
                assert relative == "files/t.txt" or relative.endswith(users_own), relative


def test_reprs_hold_no_secret(
    aws: str, bucket: str, stack: str, parameter: str, tmp_path: Path
) -> None:
    project_dir = make_project(tmp_path, parameter, status=3)
    remote = Remote.from_options(stack=stack, bucket=bucket)
    remote.config.push(compile_document(project_dir))
    fetched = remote.config.fetch()
    assert SECRET in json.dumps(fetched)  # it is there, just never shown
    project = load_project(project_dir)
    request = RunRequest(
        workspace=tmp_path / "ws",
        remote=remote,
        push_artifacts=True,
        secret_env={"TOKEN": SECRET},
        log=lambda line: None,
    )
    with pytest.raises(RunFailed) as raised:
        HandoffRun(request).execute()
    outcome = raised.value.outcome
    shown = [
        repr(project),
        repr(project.files),
        repr(project.envs),
        repr(request),
        repr(remote),
        repr(remote.config),
        repr(Workspace(tmp_path / "ws")),
        repr(outcome),
        json.dumps(outcome.to_dict()),
        str(raised.value),
    ]
    for text in shown:
        assert SECRET not in text, text


@pytest.mark.parametrize(
    "template",
    [
        "password: S3cr3t-Zebra-42\n{{ oops\n",
        "password: S3cr3t-Zebra-42\n{% endif %}\n",
        "{{ {'a': 1}[pw] }}\n",  # lookup with a secret key
        "{{ pw + 1 }}\n",  # TypeError quoting the value
        "{{ pw | int(base='x') }}{{ pw.nope }}\n",
    ],
)
def test_template_errors_in_files_do_not_quote_the_secret(
    aws: str, parameter: str, tmp_path: Path, capsys, template: str
) -> None:
    project = make_project(tmp_path, parameter)
    (project / "files" / "t.txt").write_text(template)
    status, out, err = cli(capsys, "run", "-w", str(tmp_path / "ws"), "-p", str(project))
    assert status == 1
    assert "files/t.txt" in err.splitlines()[-1]
    assert SECRET not in err and SECRET not in out
    assert SECRET not in (tmp_path / "ws" / "artifacts" / "run.json").read_text()


# --------------------------------------------------------------------------- half-written


def test_failed_large_config_push_keeps_the_previous_value(
    aws: str, bucket: str, stack: str, recorder: Recorder, capsys
) -> None:
    remote = Remote(stack, bucket, client_factory=recorder.factory())
    previous = {"commands": [{"command": "cat"}], "files": [{"name": "a", "value": SECRET}]}
    remote.config.push(previous)
    large = {
        "commands": [{"command": "cat"}],
        "files": [{"name": "a", "value": SECRET + "x" * 20_000}],
    }
    recorder.fail_on("PutObject")
    with pytest.raises(StoreError) as raised:
        remote.config.push(large)
    assert SECRET not in str(raised.value)
    assert recorder.count("PutParameter") == 1  # only the first push wrote the parameter
    assert Remote(stack, bucket, client_factory=recorder.factory()).config.fetch() == previous


def test_failed_files_get_leaves_no_partial_file(
    aws: str, bucket: str, stack: str, recorder: Recorder, tmp_path: Path
) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    source = tmp_path / "project" / "files"
    source.mkdir(parents=True)
    (source / "a.txt").write_text("old a\n")
    (source / "b.txt").write_text("old b\n")
    remote = Remote(stack, bucket, client_factory=recorder.factory())
    remote.files.push(source)
    dest = tmp_path / "ws" / "files"
    remote.files.get(dest)
    (source / "a.txt").write_text("new a, longer than before\n")
    (source / "b.txt").write_text("new b, longer than before\n")
    (source / "c.txt").write_text("brand new c\n")
    remote.files.push(source)
    assert keys(s3, bucket, f"{stack}/files/") == ["a.txt", "b.txt", "c.txt"]

    recorder.clear()
    recorder.fail_on("GetObject", match=lambda p: p["Key"].endswith("b.txt"))
    with pytest.raises(HandoffError):
        remote.files.get(dest)
    # every file under its final name is complete (old or new), no temporary left behind
    contents = {p.name: p.read_text() for p in dest.iterdir()}
    assert set(contents) <= {"a.txt", "b.txt", "c.txt"}, sorted(contents)
    assert contents["b.txt"] == "old b\n"
    assert contents["a.txt"] in ("old a\n", "new a, longer than before\n")
    assert contents.get("c.txt", "brand new c\n") == "brand new c\n"


SLEEPY_YML = """\
tasks:
  - name: main
    pipeline:
      - command: sh
        args: "-c 'echo new-state; touch artifacts/started; sleep 60'"
"""


def test_sigterm_archives_a_failed_run_and_keeps_last(
    aws: str, bucket: str, stack: str, tmp_path: Path
) -> None:
    """``handoff run -a`` killed with SIGTERM: exit != 0, the run is archived as failed
    under runs/, and last/ (the state the next run restores) is not advanced."""
    s3 = boto3.client("s3", region_name=REGION)
    seed = tmp_path / "seed" / "artifacts"
    seed.mkdir(parents=True)
    (seed / "state").write_text("old-state\n")
    by_hand = ["artifacts", "push", "--by-hand", "-w", str(seed.parent)]
    assert main([*by_hand, "--stack", stack, "--bucket", bucket]) == 0
    project = tmp_path / "project"
    project.mkdir()
    (project / "project.yml").write_text(SLEEPY_YML)
    ws = tmp_path / "ws"
    script = Path(sys.executable).parent / "handoff"
    proc = subprocess.Popen(
        [str(script), "run", "-w", str(ws), "-p", str(project), "-a"],
        env={**os.environ, "HANDOFF_STACK": stack, "HANDOFF_BUCKET": bucket},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (ws / "artifacts" / "started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "handoff: run failed:" in err and "SIGTERM" in err
    summary = json.loads((ws / "artifacts" / "run.json").read_text())
    assert summary["status"] == "killed"
    runs = [k for k in keys(s3, bucket, f"{stack}/runs/") if k.endswith("run.json")]
    archived = [
        json.loads(s3.get_object(Bucket=bucket, Key=f"{stack}/runs/{k}")["Body"].read())
        for k in runs
    ]
    assert [a["status"] for a in archived if a.get("tasks")] == ["killed"]
    last_state = s3.get_object(Bucket=bucket, Key=f"{stack}/last/state")["Body"].read()
    assert last_state == b"old-state\n"
