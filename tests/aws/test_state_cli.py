"""``handoff state ...``, ``run --full-refresh / --no-state-update`` and
``state_on_failure`` on the Singer example, through ``cli.main`` against the moto server."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from handoff_provider.core.cli import main as cli
from handoff_provider.core.stores import MANIFEST_NAME, Remote
from tests.aws.conftest import keys, read

ROOT = Path(__file__).resolve().parents[2]
SINGER = ROOT / "examples" / "projects" / "02_singer_csv"


def handoff(*argv: str | Path) -> int:
    return cli.main([str(arg) for arg in argv])


def day(state: str) -> str:
    return str(json.loads(state)["bookmarks"]["readings"]["day"])


def last_manifest(s3: Any, bucket: str, stack: str) -> dict[str, Any]:
    return json.loads(read(s3, bucket, f"{stack}/last/{MANIFEST_NAME}"))


def test_state_verbs_on_the_singer_example(
    handoff_env: dict[str, str], tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, bucket = handoff_env["HANDOFF_STACK"], handoff_env["HANDOFF_BUCKET"]
    ws = tmp_path / "ws"
    assert handoff("state", "get") == 1
    assert "nothing published yet" in capsys.readouterr().err

    first, second = "first-run", "second-run"
    assert handoff("run", "-w", ws, "-p", SINGER, "-a", "--run-key", first) == 0
    assert handoff("run", "-w", ws, "-p", SINGER, "-a", "--run-key", second) == 0
    capsys.readouterr()
    assert handoff("state", "get") == 0
    out = capsys.readouterr()
    assert day(out.out) == "2024-01-10"

    assert handoff("state", "list") == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2 and rows[0].startswith("* ") and "state 51 bytes" in rows[0]
    assert rows[1].split()[0] == first

    # set: JSON checked because the project says state_format: json
    assert handoff("state", "set", "-p", SINGER, "{not json") == 2
    assert "line 1 is not JSON" in capsys.readouterr().err
    value = '{"bookmarks": {"readings": {"day": "2024-06-01"}}}\n'
    state_file = tmp_path / "state.json"
    state_file.write_text(value)
    assert handoff("state", "set", "-p", SINGER, "--file", state_file) == 0
    err = capsys.readouterr().err
    assert "state set: last/ now holds run " in err and "(was run " in err
    assert handoff("run", "-w", tmp_path / "other", "-p", SINGER, "-a") == 0
    capsys.readouterr()
    assert handoff("state", "get") == 0
    assert day(capsys.readouterr().out) == "2024-06-06", "the run continued from the set state"

    # clear: the next run starts from the start date again
    assert handoff("state", "clear") == 0
    assert "state clear: last/ now holds run" in capsys.readouterr().err
    assert handoff("state", "get") == 1
    assert "has no state file" in capsys.readouterr().err

    # rollback to the first run: its state (and its files) are last/ again
    assert handoff("state", "rollback", "--to", first) == 0
    assert f"state rollback to {first}: last/ now holds run {first}" in capsys.readouterr().err
    assert handoff("state", "get") == 0
    assert day(capsys.readouterr().out) == "2024-01-05"
    assert last_manifest(s3, bucket, stack)["run_key"] == first
    assert "readings.csv" in keys(s3, bucket, f"{stack}/last/")
    assert handoff("state", "rollback", "--to", "no-such-run") == 2
    assert "no complete run archived" in capsys.readouterr().err

    assert handoff("state", "list") == 0
    listed = [
        row.split()[1 if row.startswith("*") else 0] for row in capsys.readouterr().out.splitlines()
    ]
    assert listed[0] == first and len(listed) == 6
    assert second in listed


def test_full_refresh_and_no_state_update(
    handoff_env: dict[str, str], tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, bucket = handoff_env["HANDOFF_STACK"], handoff_env["HANDOFF_BUCKET"]
    ws = tmp_path / "ws"
    assert handoff("run", "-w", ws, "-p", SINGER, "-a") == 0
    assert handoff("run", "-w", ws, "-p", SINGER, "-a") == 0
    capsys.readouterr()

    # --no-state-update: archived, last/ untouched
    before = last_manifest(s3, bucket, stack)["run_key"]
    assert (
        handoff("run", "-w", ws, "-p", SINGER, "-a", "--no-state-update", "--run-key", "dry") == 0
    )
    assert "last/ left unchanged" in capsys.readouterr().err
    assert last_manifest(s3, bucket, stack)["run_key"] == before
    assert day(read(s3, bucket, f"{stack}/runs/dry/state").decode()) == "2024-01-15"

    # --full-refresh re-reads exactly one interval and publishes that state
    argv = ["run", "-w", ws, "-p", SINGER, "-a", "--full-refresh", "--run-key", "reread"]
    argv += ["--start-at", "2024-03-01T00:00:00Z", "-v", "end_date=2024-03-03"]
    assert handoff(*argv) == 0
    assert "state: full refresh: starting without state" in capsys.readouterr().err
    csv = read(s3, bucket, f"{stack}/runs/reread/readings.csv").decode().splitlines()
    assert [line.split(",")[0] for line in csv[1:]] == ["2024-03-01", "2024-03-02"]
    assert last_manifest(s3, bucket, stack)["run_key"] == "reread"
    assert day(read(s3, bucket, f"{stack}/last/state").decode()) == "2024-03-02"


def test_state_on_failure_last_line_publishes_the_last_complete_line(
    handoff_env: dict[str, str], tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, bucket = handoff_env["HANDOFF_STACK"], handoff_env["HANDOFF_BUCKET"]

    def project(name: str, policy: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "project.yml").write_text(
            textwrap.dedent(
                f"""\
                tasks:
                  - name: load
                    state_on_failure: {policy}
                    pipeline:
                      - command: sh
                        args: "-c 'echo one; echo two; printf half; exit 3'"
                """
            )
        )
        return path

    assert handoff("run", "-w", tmp_path / "a", "-p", project("discard", "discard"), "-a") == 1
    assert keys(s3, bucket, f"{stack}/last/") == []
    capsys.readouterr()
    kept = project("keep", "last_line")
    assert handoff("run", "-w", tmp_path / "b", "-p", kept, "-a", "--run-key", "partial") == 1
    err = capsys.readouterr().err
    assert "kept its last complete state line" in err
    assert read(s3, bucket, f"{stack}/last/state") == b"two\n"
    manifest = last_manifest(s3, bucket, stack)
    assert manifest["run_key"] == "partial" and manifest["status"] == "failed"


def test_state_on_failure_is_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p"
    path.mkdir()
    (path / "project.yml").write_text(
        "tasks:\n  - name: t\n    state_from: none\n    state_on_failure: last_line\n"
        "    pipeline:\n      - command: echo\n"
    )
    assert handoff("config", "print", "-p", path) != 0
    assert "tasks[0].state_on_failure: last_line needs a state" in capsys.readouterr().err


def test_state_changes_with_no_lock_skip_the_lease_and_say_so(
    handoff_env: dict[str, str],
    remote: Remote,
    tmp_path: Path,
    s3: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A lease held by a hung run: the state verbs wait for it (here: --lock-wait 0 fails
    naming the holder); with --no-lock they publish anyway, through the conditional publish."""
    stack, bucket = handoff_env["HANDOFF_STACK"], handoff_env["HANDOFF_BUCKET"]
    assert handoff("run", "-w", tmp_path / "ws", "-p", SINGER, "-a", "--run-key", "first") == 0
    capsys.readouterr()
    value = '{"bookmarks": {"readings": {"day": "2024-06-01"}}}\n'
    with remote.lease("hung-run", ttl=60):
        assert handoff("state", "set", "-p", SINGER, "--lock-wait", "0", value) == 1
        err = capsys.readouterr().err
        assert "is held by run hung-run" in err and len(err.strip().splitlines()) == 1
        assert read(s3, bucket, f"{stack}/last/state") != value.encode()

        assert handoff("state", "set", "-p", SINGER, "--no-lock", value) == 0
        err = capsys.readouterr().err
        assert "--no-lock: NOT holding the stack lease" in err
        assert "state set: last/ now holds run " in err and "(was run first)" in err
        assert read(s3, bucket, f"{stack}/last/state") == value.encode()

        assert handoff("state", "rollback", "--no-lock", "--to", "first") == 0
        assert "state rollback to first: last/ now holds run first" in capsys.readouterr().err
        assert last_manifest(s3, bucket, stack)["run_key"] == "first"

        assert handoff("state", "clear", "--no-lock") == 0
        assert "NOT holding the stack lease" in capsys.readouterr().err
        assert "state" not in keys(s3, bucket, f"{stack}/last/")
    # the hung run's lease was never touched: it released it itself
    lease = json.loads(read(s3, bucket, f"{stack}/lease.json"))
    assert lease["run_key"] == "hung-run"
