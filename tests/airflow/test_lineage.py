"""OpenLineage from the run operators, through Airflow's OpenLineage provider itself.

The end-to-end tests run ``dag.test()`` in a child process configured as a user would
(``AIRFLOW__OPENLINEAGE__TRANSPORT`` = the OpenLineage client's ``file`` transport): the
provider's listener calls our ``get_openlineage_facets_on_*`` methods and writes the real
START / COMPLETE / FAIL events, which the test reads back. (A child process because the
provider decides at plugin-load time whether its listener is on.) Every MWAA image ships
the provider (its test venv installs it on the image's pins, scripts/test_mwaa.sh), as do
both development venvs; importing the operators never imports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_importing_the_operators_never_imports_openlineage() -> None:
    code = (
        "import sys\n"
        "import handoff_provider.operators.run, handoff_provider.operators.ecs\n"
        "import handoff_provider.lineage\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'openlineage' or "
        "m.startswith(('airflow.providers.openlineage.extractors', "
        "'airflow.providers.openlineage.plugins'))]\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "AIRFLOW__OPENLINEAGE__DISABLED": "True"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


SCRIPT = """
import sys
from datetime import datetime, timezone
sys.path.insert(0, {here!r})
from af_helpers import run_dag, task_states
from handoff_provider._compat import DAG
from handoff_provider.operators.run import HandoffRunOperator

with DAG({dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc)) as dag:
    HandoffRunOperator(task_id="run", project_dir={project!r}, stack={stack!r}, bucket={bucket!r})
dag_run = run_dag(dag, datetime(2024, 1, 2, tzinfo=timezone.utc))
print("STATES", task_states(dag_run))
"""


def run_with_lineage(tmp_path: Path, project: Path, stack: str, bucket: str) -> list[dict]:
    """dag.test() of one HandoffRunOperator in a child process; its OpenLineage events."""
    dag_id = f"t_ol_{uuid.uuid4().hex[:6]}"
    tmp_path.mkdir(parents=True, exist_ok=True)
    events_file = tmp_path / "openlineage.jsonl"
    script = tmp_path / "run_dag.py"
    script.write_text(
        SCRIPT.format(
            here=str(HERE), dag_id=dag_id, project=str(project), stack=stack, bucket=bucket
        )
    )
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "handoff-tests",
    }
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert "STATES" in proc.stdout, (proc.stdout[-3000:], proc.stderr[-3000:])
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    return [e for e in events if e.get("job", {}).get("name") == f"{dag_id}.run"]


def datasets(event: dict, kind: str) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in event.get(kind, [])}


def by_type(events: list[dict], event_type: str) -> dict:
    (event,) = [e for e in events if e["eventType"] == event_type]
    return event


PROJECT = """
transfers:
  inputs:
    - bucket: "{{{{ bucket }}}}"
      directory: "{{{{ stack }}}}/inbox"
      file_regex: '.*\\.csv'
  outputs:
    - source: "artifacts/out.csv"
      bucket: "{{{{ bucket }}}}"
      directory: "{{{{ stack }}}}/outbox"
tasks:
  - name: copy
    commands:
      - command: sh
        args: "files/run.sh {{{{ token }}}}"
vars:
  - key: token
    value: "{token}"
"""


def make_project(tmp_path: Path, *, fail: bool, token: str) -> Path:
    project = tmp_path / "project"
    (project / "files").mkdir(parents=True)
    text = PROJECT.format(token=token)
    (project / "project.yml").write_text(textwrap.dedent(text).lstrip())
    (project / "files" / "run.sh").write_text(
        "cp files/a.csv artifacts/out.csv\n"
        + ("exit 3\n" if fail else "")
        + 'echo "token=$1" >&2\nwc -l < files/a.csv\n'
    )
    return project


def test_complete_event_has_datasets_and_facets(tmp_path: Path, bucket: str, stack: str) -> None:
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{stack}/inbox/a.csv", Body=b"x\ny\n")
    project = make_project(tmp_path, fail=False, token="plain-token-value")

    events = run_with_lineage(tmp_path, project, stack, bucket)

    ns = f"s3://{bucket}"
    start = by_type(events, "START")
    assert datasets(start, "inputs") == {(ns, f"{stack}/last/state")}
    complete = by_type(events, "COMPLETE")
    facet = complete["run"]["facets"]["handoff_run"]
    run_key = facet["runKey"]
    assert run_key and facet["status"] == "success"
    assert datasets(start, "outputs") == {(ns, f"{stack}/last")}  # run key unknown yet
    assert datasets(complete, "inputs") == {(ns, f"{stack}/inbox/a.csv")}  # no state yet
    assert datasets(complete, "outputs") == {
        (ns, f"{stack}/runs/{run_key}"),
        (ns, f"{stack}/last"),
        (ns, f"{stack}/outbox/out.csv"),
    }
    (stage,) = facet["stages"]
    assert stage["task"] == "copy" and stage["exitCode"] == 0 and stage["bytesOut"] == 2
    assert facet["bytesOut"] == 2 and facet["artifactsBytes"] > 0
    commands = complete["job"]["facets"]["handoff_commands"]["commands"]
    assert commands == ["sh files/run.sh {{ token }}"]  # as written: no rendered value

    # The next run restored last/state: it is an input now.
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{stack}/inbox/a.csv", Body=b"z\n")
    again = by_type(run_with_lineage(tmp_path / "2", project, stack, bucket), "COMPLETE")
    assert (ns, f"{stack}/last/state") in datasets(again, "inputs")


def test_fail_event_has_no_last_output(tmp_path: Path, bucket: str, stack: str) -> None:
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{stack}/inbox/a.csv", Body=b"x\n")
    project = make_project(tmp_path, fail=True, token="t")

    events = run_with_lineage(tmp_path, project, stack, bucket)

    fail = by_type(events, "FAIL")
    facet = fail["run"]["facets"]["handoff_run"]
    assert facet["status"] == "failed" and facet["stages"][0]["exitCode"] == 3
    assert datasets(fail, "outputs") == {(f"s3://{bucket}", f"{stack}/runs/{facet['runKey']}")}


def test_job_facet_commands_go_through_the_masker() -> None:
    """A secret known to Airflow's masker never reaches the job facet."""
    from handoff_provider._compat import airflow_redact
    from handoff_provider.lineage import run_lineage
    from handoff_provider.masking import mask_values

    secret = f"pw-{uuid.uuid4().hex}"
    mask_values([secret])
    summary: dict[str, Any] = {
        "run_key": "k",
        "status": "success",
        "tasks": [{"name": "t", "stages": [{"index": 1, "command": f"curl -u me:{secret} x"}]}],
    }
    lineage = run_lineage(
        stack="s",
        bucket="b",
        run_key="k",
        reads_remote_files=True,
        summary=summary,
        redact=airflow_redact,
    )
    assert lineage.job_facets["handoff_commands"].commands == ["curl -u me:*** x"]
    assert {(d.namespace, d.name) for d in lineage.inputs} == {
        ("s3://b", "s/files"),
        ("s3://b", "s/last/state"),
    }
