"""``handoff config print -p`` and ``handoff show commands -p``: in process and as installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from handoff_provider.core.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "projects"

SEED_YML = """\
commands:
  - command: "tap-exchangeratesapi"
    args: "--config config/tap-config.json"
    venv: "proc_01"
    installs:
      - pip install tap-exchangeratesapi
  - command: "files/stats_collector.py"
    venv: "proc_01"
  - command: "target-csv"
    venv: "proc_02"
    installs:
      - pip install target-csv
"""
# Verbatim from seeds/handoff-remote-config-v2.md.
SEED_PRINTED = (
    '{"commands": [{"command": "tap-exchangeratesapi", "args": "--config '
    'config/tap-config.json", "venv": "proc_01", "installs": ["pip install '
    'tap-exchangeratesapi"]}, {"command": "files/stats_collector.py", "venv": "proc_01"}, '
    '{"command": "target-csv", "venv": "proc_02", "installs": ["pip install target-csv"]}], '
    '"files": [{"name": "tap-config.json", "value": "{ \\"base\\": \\"JPY\\", '
    '\\"start_date\\": \\"2020-07-09\\" }\\n"}]}\n'
)
BAD_YML = "tasks:\n  - name: t\n    pipeline:\n      - command: wc\n        agrs: -l\n"


@pytest.fixture
def seed_project(make_project):
    return make_project(
        SEED_YML,
        config={"tap-config.json": '{ "base": "JPY", "start_date": "2020-07-09" }\n'},
    )


def test_config_print_is_the_seed_document(seed_project, capsys):
    assert main(["config", "print", "-p", str(seed_project)]) == 0
    out, err = capsys.readouterr()
    assert out == SEED_PRINTED
    assert err == ""


def test_config_print_hides_secrets_unless_asked(make_project, capsys):
    project_dir = make_project(
        "commands: [{command: cat, args: config/tap.json}]\n",
        config={"tap.json": '{"user": "reader", "password": "hunter2-but-longer"}'},
    )
    assert main(["config", "print", "-p", str(project_dir)]) == 0
    hidden = json.loads(capsys.readouterr().out)
    assert json.loads(hidden["files"][0]["value"]) == {"user": "reader", "password": "***"}
    assert main(["config", "print", "--show-secrets", "-p", str(project_dir)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert json.loads(shown["files"][0]["value"])["password"] == "hunter2-but-longer"


def test_config_print_keeps_non_ascii_text(make_project, capsys):
    project_dir = make_project("commands: [{command: echo, args: 'héllo ✓'}]\n")
    assert main(["config", "print", "-p", str(project_dir)]) == 0
    out = capsys.readouterr().out
    assert "héllo ✓" in out
    assert json.loads(out)["commands"][0]["args"] == "héllo ✓"


def test_show_commands_prints_the_pipeline(capsys):
    assert main(["show", "commands", "-p", str(EXAMPLES / "01_word_count")]) == 0
    assert capsys.readouterr().out == "cat files/lines.txt | wc -l\n"


def test_show_commands_of_a_task_form_project(capsys):
    assert main(["show", "commands", "-p", str(EXAMPLES / "02_singer_csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# task: extract_load (pipeline, timeout 300s)"
    assert lines[1].startswith("venvs/tap/bin/tap-demo --config config/tap-config.json")
    assert " | venvs/target/bin/target-demo-csv " in lines[1]
    assert lines[2:] == ["# task: show_stats (commands)", "cat artifacts/collector_stats.json"]


@pytest.mark.parametrize("verb", [["config", "print"], ["show", "commands"]])
def test_bad_project_is_one_error_line_and_status_2(make_project, capsys, verb):
    project_dir = make_project(BAD_YML)
    assert main([*verb, "-p", str(project_dir)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"handoff: error: {project_dir / 'project.yml'}: tasks[0].pipeline[0]: "
        "unknown key 'agrs' (did you mean 'args'?)\n"
    )


def test_installed_console_script(seed_project, make_project):
    script = Path(sys.executable).parent / "handoff"
    assert script.is_file(), f"the handoff console script is not installed next to {sys.executable}"

    printed = subprocess.run(
        [str(script), "config", "print", "-p", str(seed_project)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (printed.returncode, printed.stdout, printed.stderr) == (0, SEED_PRINTED, "")

    shown = subprocess.run(
        [str(script), "show", "commands", "-p", str(seed_project)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert shown.returncode == 0
    assert shown.stdout == (
        "venvs/proc_01/bin/tap-exchangeratesapi --config config/tap-config.json"
        " | PATH=venvs/proc_01/bin:$PATH files/stats_collector.py"
        " | venvs/proc_02/bin/target-csv\n"
    )

    bad = make_project(BAD_YML, name="bad")
    failed = subprocess.run(
        [str(script), "config", "print", "-p", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert failed.returncode == 2
    assert failed.stdout == ""
    assert failed.stderr.count("\n") == 1
    assert failed.stderr.startswith(f"handoff: error: {bad / 'project.yml'}: ")


def _handoff(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "handoff"
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, check=False, timeout=240
    )


def test_example_word_count_runs(tmp_path):
    workspace = tmp_path / "ws"
    result = _handoff(
        "run",
        "-w",
        str(workspace),
        "-p",
        str(EXAMPLES / "01_word_count"),
        "--venv-cache",
        str(tmp_path / "venvs"),
    )
    assert result.returncode == 0, result.stderr
    assert (workspace / "artifacts" / "state").read_text().strip() == "5"


def test_example_singer_csv_runs_offline_and_incrementally(tmp_path):
    project = str(EXAMPLES / "02_singer_csv")
    cache = str(tmp_path / "venvs")
    workspace = tmp_path / "ws"
    artifacts = workspace / "artifacts"

    first = _handoff("run", "-w", str(workspace), "-p", project, "--venv-cache", cache)
    assert first.returncode == 0, first.stderr
    assert json.loads((artifacts / "state").read_text()) == {
        "bookmarks": {"readings": {"day": "2024-01-05"}}
    }
    assert json.loads((artifacts / "collector_stats.json").read_text()) == {
        "rows_read": 7,
        "messages": {"SCHEMA": 1, "RECORD": 5, "STATE": 1},
    }
    rows = (artifacts / "readings.csv").read_text().splitlines()
    assert rows[0] == "day,value"
    assert [row.split(",")[0] for row in rows[1:]] == [f"2024-01-0{d}" for d in range(1, 6)]

    # the next run continues after the bookmark kept in artifacts/state
    second = _handoff("run", "-w", str(workspace), "-p", project, "--venv-cache", cache)
    assert second.returncode == 0, second.stderr
    rows = (artifacts / "readings.csv").read_text().splitlines()
    assert rows[1].startswith("2024-01-06,") and rows[-1].startswith("2024-01-10,")

    # a fresh workspace starts at the data interval, or at a -v override of the var
    for options, first_day in (
        (["--start-at", "2024-06-01T00:00:00Z"], "2024-06-01"),
        (["-v", "start_date=2025-02-02"], "2025-02-02"),
    ):
        fresh = tmp_path / first_day
        run = _handoff("run", "-w", str(fresh), "-p", project, "--venv-cache", cache, *options)
        assert run.returncode == 0, run.stderr
        csv_rows = (fresh / "artifacts" / "readings.csv").read_text().splitlines()
        assert csv_rows[1].startswith(f"{first_day},")


SECRETS_YML = """\
secrets: [api.json]
envs:
  - key: TOKEN
    value: "env-secret-{% value"
    secret: true
tasks:
  - name: leak
    pipeline:
      - command: sh
        args: "-c 'cat config/db.json config/api.json >&2; echo \\"token=$TOKEN\\" >&2; echo ok'"
"""


def test_handoff_run_output_never_shows_the_projects_secrets(make_project, capsys, tmp_path):
    """A stage printing every secret it has: the CLI relays its stderr redacted (config
    values under sensitive keys, declared secret files, secret envs), keeps plain data
    readable, and records no secret in run.json or its own lines."""
    project = make_project(
        SECRETS_YML,
        config={
            "db.json": '{"stream": "readings", "db": {"password": "pw-hunter2-long"}}',
            "api.json": '{"endpoint": "declared-secret-9"}',
        },
    )
    workspace = tmp_path / "ws"
    assert main(["run", "-w", str(workspace), "-p", str(project)]) == 0
    out, err = capsys.readouterr()
    shown = out + err
    for secret in ("pw-hunter2-long", "declared-secret-9", "env-secret-{% value"):
        assert secret not in shown
        assert secret not in (workspace / "artifacts" / "run.json").read_text()
    assert '"stream": "readings"' in err  # plain data is not masked
    assert "token=***" in err and '"password": "***"' in err
