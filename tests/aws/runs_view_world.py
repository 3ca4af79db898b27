"""Real archived runs on the moto server, for the runs view's tests (data, HTTP, browser).

Three runs of one project through ``handoff run -a`` (the CLI a Fargate task runs): two
successes on consecutive data intervals (their ``state`` differs) and a failure; the
first one carries an Airflow ``origin`` (``HANDOFF_ORIGIN``, as the operators set it).
The project's config file holds a secret that no page may show.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from handoff_provider.core.cli.main import main as cli_main

SECRET = "pa55-Wörd-never-shown"
ORIGIN = {"dag_id": "sales_etl", "run_id": "scheduled__2024-01-01T00:00:00+00:00",
          "task_id": "extract", "map_index": -1, "try_number": 1}  # fmt: skip
PROJECT_YML = """\
tasks:
  - name: extract
    pipeline:
      - command: cat
        args: files/rows.csv
      - command: grep
        args: -v "^#"
      - command: sh
        args: files/state.sh
  - name: report
    state_from: none
    commands:
      - command: sh
        args: -c 'echo report > artifacts/report.txt; exit {report_exit}'
"""


@dataclass(frozen=True)
class RunsWorld:
    stack: str
    bucket: str
    ok_first: str
    ok_second: str
    failed: str


def make_project(root: Path, *, report_exit: int = 0) -> Path:
    project = root / f"project-{report_exit}"
    (project / "files").mkdir(parents=True)
    (project / "config").mkdir()
    (project / "files" / "rows.csv").write_text(
        "# header\n" + "".join(f"{i},row {i}\n" for i in range(200))
    )
    (project / "files" / "state.sh").write_text(
        'wc -l >/dev/null; printf \'{"day": "%s"}\\n\' "$HANDOFF_START_AT"\n'
    )
    (project / "config" / "tap-config.json").write_text(json.dumps({"password": SECRET}))
    (project / "project.yml").write_text(PROJECT_YML.replace("{report_exit}", str(report_exit)))
    return project


def archive_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, stack: str, bucket: str
) -> RunsWorld:
    """Run the project three times with ``-a`` (artifacts to S3) against ``bucket``."""
    monkeypatch.setenv("HANDOFF_STACK", stack)
    monkeypatch.setenv("HANDOFF_BUCKET", bucket)
    good, bad = make_project(tmp_path), make_project(tmp_path, report_exit=3)
    world = RunsWorld(stack, bucket, "sales-2024-01-01", "sales-2024-01-02", "sales-2024-01-03")
    runs = [
        (good, world.ok_first, "2024-01-01", ORIGIN),
        (good, world.ok_second, "2024-01-02", None),
        (bad, world.failed, "2024-01-03", None),
    ]
    for project, key, day, origin in runs:
        if origin:
            monkeypatch.setenv("HANDOFF_ORIGIN", json.dumps(origin))
        else:
            monkeypatch.delenv("HANDOFF_ORIGIN", raising=False)
        workspace = str(tmp_path / f"ws-{key}")
        end = f"{day}T23:59:59+00:00"
        argv = ["run", "-w", workspace, "-p", str(project), "-a", "--run-key", key,
                "--start-at", day, "--end-at", end]  # fmt: skip
        expected = 1 if project is bad else 0
        assert cli_main(argv) == expected, key
    monkeypatch.delenv("HANDOFF_ORIGIN", raising=False)
    return world


def archived_world(moto_server: str, root: Path) -> Iterator[RunsWorld]:
    """A module-scoped world: a fresh bucket and stack with the three runs (the runs take
    seconds; the tests only read them)."""
    import boto3

    from tests.conftest import _FAKE_AWS_ENV, REGION

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", moto_server)
        for key, value in _FAKE_AWS_ENV.items():
            patch.setenv(key, value)
        bucket, stack = f"handoff-view-{uuid.uuid4().hex[:10]}", f"view-{uuid.uuid4().hex[:6]}"
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=bucket)
        world = archive_runs(root, patch, stack=stack, bucket=bucket)
        patch.delenv("HANDOFF_STACK")
        patch.delenv("HANDOFF_BUCKET")
        yield world
