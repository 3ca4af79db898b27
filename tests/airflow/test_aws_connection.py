"""An Airflow AWS connection with ``role_arn`` + ``assume_role_kwargs.ExternalId`` applies
to every AWS client of a run: ``ssm()``, ``secret()``, the S3 stores, ECS and Lambda.

Checked on the moto server as AWS would see it: moto's STS records the AssumeRole call
(role, external id, the temporary access key it issued), every request that reaches the
server is signed with that temporary key (read from its ``Authorization`` header), and
``GetCallerIdentity`` answers with the assumed-role ARN.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from af_helpers import run_dag, task_states, write_project

from handoff_provider.core.aws.secret_lookup import make_secret_function
from handoff_provider.core.aws.ssm_lookup import make_ssm_function
from handoff_provider.core.stores import Remote
from handoff_provider.dag_factory import handoff_dag
from handoff_provider.hooks.handoff import HandoffHook

ACCOUNT = "123456789012"  # moto's default account
_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/")


def _assumed_roles() -> list[Any]:
    from moto.sts.models import sts_backends

    return list(sts_backends[ACCOUNT]["global"].assumed_roles)


def _arrange(endpoint: str, stack: str) -> None:
    """An SSM parameter and a JSON secret under ``stack`` (as the test's own user)."""
    boto3.client("ssm", endpoint_url=endpoint).put_parameter(
        Name=f"/{stack}/p", Value="ssm-value-1", Type="String"
    )
    boto3.client("secretsmanager", endpoint_url=endpoint).create_secret(
        Name=f"{stack}/s", SecretString=json.dumps({"k": ["secret-value-1"]})
    )


@pytest.fixture
def role_conn(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, str]:
    """An AWS connection assuming a fresh role with an external id: (conn id, role, id).
    ``AWS_ENDPOINT_URL`` is unset: only the connection knows where the server is."""
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/handoff-{uuid.uuid4().hex[:8]}"
    external_id = f"ext-{uuid.uuid4().hex[:8]}"
    conn_id = f"aws_role_{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "base-key-id",
                "password": "base-secret",
                "extra": {
                    "endpoint_url": moto_server,
                    "region_name": "us-east-1",
                    "role_arn": role_arn,
                    "assume_role_kwargs": {"ExternalId": external_id},
                    # the Amazon provider's AssumeRole client takes its endpoint from here
                    "service_config": {"sts": {"endpoint_url": moto_server}},
                },
            }
        ),
    )
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    return conn_id, role_arn, external_id


def test_role_assumption_of_the_connection_applies_to_every_client(
    role_conn: tuple[str, str, str], moto_server: str, bucket: str, stack: str, tmp_path: Path
) -> None:
    conn_id, role_arn, external_id = role_conn
    _arrange(moto_server, stack)
    before = len(_assumed_roles())

    hook = HandoffHook(aws_conn_id=conn_id)
    signed_with: dict[str, set[str]] = {}

    def factory(service: str, config: Any = None) -> Any:
        client = hook.get_client(service, config)

        def record(request: Any, **_: Any) -> None:
            header = request.headers.get("Authorization", b"")
            header = header.decode() if isinstance(header, bytes) else header
            match = _CREDENTIAL.search(header)
            signed_with.setdefault(service, set()).add(match.group(1) if match else "")

        client.meta.events.register("before-send", record)
        return client

    assert make_ssm_function(factory)(f"/{stack}/p") == "ssm-value-1"
    assert make_secret_function(factory)(f"{stack}/s", "k[0]") == "secret-value-1"
    # the stores (SSM config, S3 files) with the hook's clients, as HandoffRunOperator has
    remote = Remote(stack, bucket, client_factory=factory)
    remote.config.push({"commands": [{"command": "true"}]})
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a")
    remote.files.push(tmp_path / "files")
    factory("ecs").list_clusters()
    factory("lambda").list_functions()
    identity = factory("sts").get_caller_identity()

    new_roles = _assumed_roles()[before:]
    assert [(r.role_arn, r.external_id) for r in new_roles] == [(role_arn, external_id)]
    issued = new_roles[0].access_key_id
    assert issued != "base-key-id"
    assert set(signed_with) >= {"ssm", "secretsmanager", "s3", "ecs", "lambda", "sts"}
    assert all(keys == {issued} for keys in signed_with.values()), signed_with
    assert identity["Arn"].startswith(
        f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_arn.split('/')[-1]}/"
    )


def test_dag_run_reads_secrets_through_the_assumed_role(
    role_conn: tuple[str, str, str],
    moto_server: str,
    bucket: str,
    stack: str,
    tmp_path: Path,
    airflow_db: Path,
    task_log: Any,
) -> None:
    """dag.test(): a run's ssm()/secret() lookups, S3 archive and all go through the
    connection's role; both values are masked in the task log."""
    conn_id, role_arn, external_id = role_conn
    _arrange(moto_server, stack)
    before = len(_assumed_roles())
    yml = f"""
        envs:
          - key: FROM_SECRET
            value: "{{{{ secret('{stack}/s', 'k[0]') }}}}"
        tasks:
          - name: main
            commands:
              - command: python3
                args: "files/show.py {{{{ ssm('/{stack}/p') }}}}"
        """
    show = "import os, sys\nprint('got', os.environ['FROM_SECRET'], sys.argv[1], file=sys.stderr)\n"
    project = write_project(tmp_path, yml, files={"show.py": show + "print('done')\n"})
    dag = handoff_dag(
        project,
        dag_id=f"t_role_{uuid.uuid4().hex[:6]}",
        stack=stack,
        bucket=bucket,
        schedule=None,
        mode="run_local",
        aws_conn_id=conn_id,
    )
    dag_run = run_dag(dag, datetime(2024, 1, 2, tzinfo=timezone.utc))

    assert task_states(dag_run) == {"run": "success"}
    log = task_log.text()
    assert "[main:1 python3] got *** ***" in log
    assert "secret-value-1" not in log and "ssm-value-1" not in log
    s3 = boto3.client("s3", endpoint_url=moto_server)
    state = s3.get_object(Bucket=bucket, Key=f"{stack}/last/state")["Body"].read()
    assert state == b"done\n"
    assert {(r.role_arn, r.external_id) for r in _assumed_roles()[before:]} == {
        (role_arn, external_id)
    }
