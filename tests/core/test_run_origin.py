"""``HANDOFF_ORIGIN``: who started a run, recorded in ``artifacts/run.json``."""

from __future__ import annotations

import json

from handoff_provider.core.cli.container import container_environment
from handoff_provider.core.cli.main import main
from handoff_provider.core.model.context import RunContext

ORIGIN = {"dag_id": "d", "run_id": "manual__2024-01-01T00:00:00+00:00", "task_id": "t",
          "map_index": -1, "try_number": 2}  # fmt: skip


def test_origin_goes_from_the_environment_to_run_json(make_project, tmp_path, monkeypatch):
    project_dir = make_project("commands: [{command: echo, args: hi}]\n")
    monkeypatch.setenv("HANDOFF_ORIGIN", json.dumps(ORIGIN))
    workspace = tmp_path / "ws"
    assert main(["run", "-w", str(workspace), "-p", str(project_dir)]) == 0
    record = json.loads((workspace / "artifacts" / "run.json").read_text())
    assert record["origin"] == ORIGIN


def test_a_run_without_origin_records_none(make_project, tmp_path, monkeypatch):
    project_dir = make_project("commands: [{command: echo, args: hi}]\n")
    monkeypatch.delenv("HANDOFF_ORIGIN", raising=False)
    workspace = tmp_path / "ws"
    assert main(["run", "-w", str(workspace), "-p", str(project_dir)]) == 0
    assert "origin" not in json.loads((workspace / "artifacts" / "run.json").read_text())


def test_a_bad_origin_is_one_line_and_exit_2(make_project, tmp_path, monkeypatch, capsys):
    project_dir = make_project("commands: [{command: echo, args: hi}]\n")
    monkeypatch.setenv("HANDOFF_ORIGIN", '["not", "an", "object"]')
    workspace = tmp_path / "ws"
    assert main(["run", "-w", str(workspace), "-p", str(project_dir)]) == 2
    err = capsys.readouterr().err
    assert "HANDOFF_ORIGIN: not a JSON object" in err
    assert "Traceback" not in err
    assert not (workspace / "artifacts" / "run.json").exists()


def test_the_container_environment_carries_the_origin_back():
    env = container_environment(stack="s", bucket="b", run_key="k", origin=ORIGIN)
    context = RunContext.from_strings(origin=env["HANDOFF_ORIGIN"])
    assert context.origin == ORIGIN
    assert RunContext(origin=ORIGIN).as_env()["HANDOFF_ORIGIN"] == env["HANDOFF_ORIGIN"]
