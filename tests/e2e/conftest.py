"""Fixtures of the end-to-end tests: one real Airflow 3 deployment for the session.

``airflow_deployment`` (see :mod:`tests.e2e.harness`), its metadata DB in a PostgreSQL
server of its own (:mod:`tests.e2e.postgres`), runs the repository's ``dags/``
and ``tests/e2e/dags/`` against the session's moto server, with the bucket
:data:`BUCKET` created and stacks prefixed with :data:`STACK_PREFIX`. These tests are
marked ``e2e`` and run only with ``-m e2e`` (``make test-e2e``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.e2e.harness import AirflowDeployment, free_port
from tests.e2e.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[2]
BUCKET = "handoff-e2e"
STACK_PREFIX = "e2e-"
DAG_FOLDERS = (REPO / "dags", REPO / "tests" / "e2e" / "dags")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def s3_client(moto_server: str):
    return boto3.client("s3", region_name=os.environ.get("AWS_REGION", "us-east-1"))


@pytest.fixture(scope="session")
def airflow_deployment(
    moto_server: str, s3_client, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowDeployment]:
    pytest.importorskip("airflow.sdk")  # Airflow 3
    s3_client.create_bucket(Bucket=BUCKET)
    home = tmp_path_factory.mktemp("airflow-home")
    with PostgresServer(port=free_port()) as database:
        deployment = AirflowDeployment(
            home=home,
            database=database,
            dag_folders=DAG_FOLDERS,
            aws_endpoint=moto_server,
            env={"HANDOFF_BUCKET": BUCKET, "HANDOFF_STACK_PREFIX": STACK_PREFIX},
        )
        with deployment:
            yield deployment
