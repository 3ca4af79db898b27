"""Audit: a *failing* run on Airflow leaks no secret (the success path is covered in
test_dag_runs.py): not in the task log (stage stderr echoing every secret, the failure
message), not in the ``handoff_outcome`` XCom of the failed try, not in the rendered
template fields, not in the archived ``run.json``."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from af_helpers import (
    read_text,
    rendered_fields,
    run_dag,
    run_keys,
    task_states,
    write_project,
    xcom_value,
)

from handoff_provider._compat import DAG
from handoff_provider.operators.run import HandoffRunOperator

pytestmark = pytest.mark.usefixtures("airflow_db")

DAY1 = datetime(2024, 1, 2, tzinfo=timezone.utc)


@pytest.mark.parametrize("remote_config", [False, True])
def test_failing_run_masks_every_secret(
    remote_config: bool,
    tmp_path: Path,
    bucket: str,
    stack: str,
    task_log,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fresh values per test: the masker of the test process remembers earlier ones.
    suffix = uuid.uuid4().hex[:10]
    in_config = f"S3cr3t-Zebra-cfg-{suffix}"
    in_env = f"S3cr3t-Zebra-env-{suffix}"
    in_ssm = f"S3cr3t-Zebra-ssm-{suffix}"
    token = f"S3cr3t-Zebra-tok-{suffix}"
    secrets = (in_config, in_env, in_ssm, token)
    parameter = f"/audit/{stack}/pw"
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=parameter, Value=in_ssm, Type="SecureString"
    )
    monkeypatch.setenv("AIRFLOW_VAR_AUDIT_TOKEN", token)
    project = write_project(
        tmp_path,
        f"""
        envs:
          - key: PASSWORD
            value: {in_env}
            secret: true
          - key: LOOKED_UP
            value: "{{{{ ssm('{parameter}') }}}}"
        tasks:
          - name: main
            pipeline:
              - command: sh
                args: >-
                  -c 'cat config/tap-config.json >&2; echo "env=$PASSWORD" >&2;
                  echo "ssm=$LOOKED_UP tok=$API_TOKEN" >&2; exit 3'
        """,
        config={"tap-config.json": json.dumps({"password": in_config})},
    )
    if remote_config:
        from handoff_provider.core.load.project import compile_document
        from handoff_provider.core.stores import Remote

        Remote.from_options(stack=stack, bucket=bucket).config.push(compile_document(project))
    with DAG(
        f"t_audit_mask_{suffix}",
        schedule=None,
        start_date=datetime(2023, 1, 1, tzinfo=timezone.utc),
        catchup=False,
    ) as dag:
        HandoffRunOperator(
            task_id="run",
            project_dir=None if remote_config else project,
            stack=stack,
            bucket=bucket,
            secret_envs={"API_TOKEN": "{{ var.value.audit_token }}"},
            retries=0,
        )

    dag_run = run_dag(dag, DAY1)

    assert task_states(dag_run) == {"run": "failed"}
    log = task_log.text()
    assert "[main:1 sh]" in log and "env=***" in log and "tok=***" in log  # logged, masked
    assert "handoff run failed: task 'main' stage 1" in log  # the failure is named
    outcome = xcom_value(dag_run, "run", key="handoff_outcome")
    assert outcome is not None and outcome["status"] == "failed"
    rendered = json.dumps(rendered_fields(dag_run, "run"), default=str)
    assert "secret_envs" in rendered
    (key,) = run_keys(bucket, stack)
    archived = read_text(bucket, f"{stack}/runs/{key}/run.json")
    for secret in secrets:
        assert secret not in log, secret
        assert secret not in json.dumps(outcome, default=str), secret
        assert secret not in rendered, secret
        assert secret not in archived, secret
