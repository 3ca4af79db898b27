"""Helpers for the Airflow tests: DAG runs on either Airflow line, projects, S3 listings.

(A module with its own name: ``from conftest import ...`` would be ambiguous across test
folders.)
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3

#: The session's empty DAG folder (set by tests/airflow/conftest.py).
DAGS_FOLDER = Path(os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", "."))

REGION = "us-east-1"


def write_project(
    root: Path,
    yml: str,
    *,
    config: Mapping[str, str] | None = None,
    files: Mapping[str, str] | None = None,
    name: str = "project",
) -> Path:
    """A project folder under ``root``: project.yml, config/ and files/ entries."""
    project_dir = root / name
    project_dir.mkdir(parents=True)
    (project_dir / "project.yml").write_text(textwrap.dedent(yml).lstrip(), encoding="utf-8")
    for subdir, entries in (("config", config), ("files", files)):
        for rel, content in (entries or {}).items():
            path = project_dir / subdir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    return project_dir


def s3() -> object:
    return boto3.client("s3", region_name=REGION)


def list_keys(bucket: str, prefix: str) -> list[str]:
    """Every key under ``prefix`` (sorted)."""
    keys: list[str] = []
    for page in s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def read_text(bucket: str, key: str) -> str:
    return s3().get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")


def run_keys(bucket: str, stack: str) -> list[str]:
    """The run keys archived under ``<stack>/runs/``."""
    prefix = f"{stack}/runs/"
    return sorted({key[len(prefix) :].split("/", 1)[0] for key in list_keys(bucket, prefix)})


# ------------------------------------------------------------------ DAG runs


def sync_dag(dag: Any) -> None:
    """Write ``dag`` to the metadata DB (what the DAG processor does); needed by
    ``dag.test()`` on Airflow >= 3.1 for a DAG that is not in a DAG folder."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = dag_bag(DAGS_FOLDER, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)


def dag_bag(folder: str | Path, **kwargs: Any) -> Any:
    """A ``DagBag`` of ``folder`` without Airflow's examples, on either line."""
    import inspect

    try:
        from airflow.dag_processing.dagbag import DagBag  # 3.x
    except ImportError:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    if "include_examples" in inspect.signature(DagBag.__init__).parameters:
        kwargs.setdefault("include_examples", False)
    return DagBag(dag_folder=str(folder), **kwargs)


def run_dag(dag: Any, logical_date: datetime) -> Any:
    """``dag.test()`` for ``logical_date`` on either Airflow line; returns the DagRun."""
    from handoff_provider._compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_1_PLUS

    if AIRFLOW_V_3_1_PLUS:
        sync_dag(dag)
    if AIRFLOW_V_3_0_PLUS:
        return dag.test(logical_date=logical_date)
    dag.sync_to_db()  # as the DAG processor would: registers the DAG's datasets
    return dag.test(execution_date=logical_date)


def task_states(dag_run: Any) -> dict[str, str]:
    """{task_id: state} of a finished DagRun."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return {
            ti.task_id: str(getattr(ti.state, "value", ti.state))
            for ti in dag_run.get_task_instances(session=session)
        }


def task_instance(dag_run: Any, task_id: str) -> Any:
    from airflow.utils.session import create_session

    with create_session() as session:
        for ti in dag_run.get_task_instances(session=session):
            if ti.task_id == task_id:
                session.expunge(ti)
                return ti
    raise LookupError(task_id)


def xcom_value(dag_run: Any, task_id: str, key: str = "return_value") -> Any:
    """The XCom ``key`` a task of ``dag_run`` pushed (deserialized), None when absent."""
    from handoff_provider._compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            row = session.execute(
                XComModel.get_many(
                    run_id=dag_run.run_id, key=key, dag_ids=dag_run.dag_id, task_ids=task_id
                ).with_only_columns(XComModel.value)
            ).first()
        return None if row is None else XComModel.deserialize_value(row)
    from airflow.models.xcom import XCom

    return XCom.get_one(run_id=dag_run.run_id, dag_id=dag_run.dag_id, task_id=task_id, key=key)


def rendered_fields(dag_run: Any, task_id: str) -> dict[str, Any]:
    """The rendered template fields Airflow stored for a task (what the UI shows)."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(RTIF)
            .filter(
                RTIF.dag_id == dag_run.dag_id,
                RTIF.run_id == dag_run.run_id,
                RTIF.task_id == task_id,
            )
            .one_or_none()
        )
        return dict(row.rendered_fields) if row is not None else {}


def asset_event_count(uri: str) -> int:
    """How many asset (dataset on 2.x) events Airflow recorded for ``uri``."""
    from airflow.utils.session import create_session

    from handoff_provider._compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:
        from airflow.models.asset import AssetEvent as Event
        from airflow.models.asset import AssetModel as Model

        join = Event.asset_id == Model.id
    else:
        from airflow.models.dataset import (  # type: ignore[no-redef]
            DatasetEvent as Event,
        )
        from airflow.models.dataset import (
            DatasetModel as Model,
        )

        join = Event.dataset_id == Model.id
    with create_session() as session:
        return session.query(Event).join(Model, join).filter(Model.uri == uri).count()


def extra_link_url(dag_run: Any, dag: Any, task_id: str, link: Any) -> str:
    """The URL the UI shows for an operator extra link of a finished task."""
    from handoff_provider._compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:  # the task runner stored the rendered link in XCom
        return xcom_value(dag_run, task_id, key=link.xcom_key)
    ti = task_instance(dag_run, task_id)
    return link.get_link(dag.get_task(task_id), ti_key=ti.key)
