"""The CLI's remote verbs end to end on the Singer example (examples/projects/02_singer_csv):
once through ``cli.main`` and once through the installed ``handoff`` console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from handoff_provider.core.cli import main as cli
from handoff_provider.core.load.project import compile_document
from tests.aws.conftest import keys, read

ROOT = Path(__file__).resolve().parents[2]
SINGER = ROOT / "examples" / "projects" / "02_singer_csv"
#: The demo credential in the example's config/tap-config.json.
TAP_PASSWORD = "demo-tap-password-4f1d"


def bookmark(workspace: Path) -> str:
    state = json.loads((workspace / "artifacts" / "state").read_text())
    return state["bookmarks"]["readings"]["day"]


def handoff(*argv: str | Path) -> int:
    return cli.main([str(arg) for arg in argv])


def test_cli_remote_flow(
    handoff_env: dict[str, str],
    tmp_path: Path,
    s3: Any,
    ssm: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """... and nothing it prints holds the config's password (stage stderr included: the
    file descriptors are captured), while plain config values stay readable."""
    stack, bucket = handoff_env["HANDOFF_STACK"], handoff_env["HANDOFF_BUCKET"]
    printed: list[str] = []

    def output() -> tuple[str, str]:
        out, err = capfd.readouterr()
        printed.extend((out, err))
        return out, err

    assert handoff("config", "push", "-p", SINGER) == 0
    assert handoff("files", "push", "-p", SINGER) == 0
    _, err = output()
    assert f"SSM parameter /handoff/{stack}/config (Standard tier" in err
    assert f"-> s3://{bucket}/{stack}/files/: " in err
    assert "stats_collector.py" in keys(s3, bucket, f"{stack}/files/")
    stored = ssm.get_parameter(Name=f"/handoff/{stack}/config", WithDecryption=True)
    assert json.loads(stored["Parameter"]["Value"])["files"][0]["name"] == "tap-config.json"

    ws = tmp_path / "ws"
    assert handoff("workspace", "install", "-w", ws) == 0
    assert (ws / "config" / "tap-config.json").exists()
    assert (ws / "files" / "stats_collector.py").exists()

    assert handoff("run", "-w", ws, "-a") == 0
    first = bookmark(ws)
    _, err = output()
    assert "handoff: run succeeded" in err
    assert "records of 'readings'" in err  # the tap's stderr, relayed

    fresh = tmp_path / "fresh"  # another machine: the state comes from last/
    assert handoff("run", "-w", fresh, "-a") == 0
    second = bookmark(fresh)
    assert second > first
    assert "state: restored artifacts/state" in output()[1]
    assert (
        json.loads(read(s3, bucket, f"{stack}/last/state"))["bookmarks"]["readings"]["day"]
        == second
    )

    got = tmp_path / "got"
    assert handoff("artifacts", "get", "-w", got) == 0
    assert bookmark(got) == second
    assert (got / "artifacts" / "readings.csv").exists()

    assert handoff("show", "commands") == 0
    assert "tap-demo" in output()[0]
    assert printed and not [text for text in printed if TAP_PASSWORD in text]


def test_console_script(handoff_env: dict[str, str], tmp_path: Path, s3: Any) -> None:
    script = Path(sys.executable).with_name("handoff")
    assert script.exists(), "the package is installed with its console script"
    env = {**os.environ, **handoff_env}
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")

    def handoff_cli(*argv: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *map(str, argv)],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )

    for argv in (("config", "push", "-p", SINGER), ("files", "push", "-p", SINGER)):
        done = handoff_cli(*argv)
        assert done.returncode == 0, done.stderr
    # The stored document is printed with its secrets hidden, unless asked for.
    printed = handoff_cli("config", "print")
    assert printed.returncode == 0, printed.stderr
    assert TAP_PASSWORD not in printed.stdout
    tap_config = json.loads(json.loads(printed.stdout)["files"][0]["value"])
    stored = json.loads((SINGER / "config" / "tap-config.json").read_text())
    assert tap_config == {**stored, "password": "***"}
    shown = handoff_cli("config", "print", "--show-secrets")
    assert json.loads(shown.stdout) == compile_document(SINGER)
    ws = tmp_path / "ws"
    assert handoff_cli("workspace", "install", "-w", ws).returncode == 0
    days = []
    for _ in range(2):
        done = handoff_cli("run", "-w", ws, "-a")
        assert done.returncode == 0, done.stderr
        days.append(bookmark(ws))
    assert days[1] > days[0]
    stack, bucket = handoff_env["HANDOFF_STACK"], handoff_env["HANDOFF_BUCKET"]
    assert len({k.split("/")[0] for k in keys(s3, bucket, f"{stack}/runs/")}) == 2

    missing = handoff_cli("config", "print", "--stack", "no-such-stack")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        "handoff: error: SSM parameter /handoff/no-such-stack/config not found: push the config "
        "first (handoff config push -p PROJECT --stack no-such-stack)"
    ]
