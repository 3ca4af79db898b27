"""Helpers for the Airflow tests: DAG runs on either Airflow line, projects, S3 listings.

(A module with its own name: ``from conftest import ...`` would be ambiguous across test
folders.)
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
    """Write ``dag`` to the metadata DB (what the DAG processor does) on Airflow 3: needed
    by ``dag.test()`` on >= 3.1 for a DAG that is not in a DAG folder, and on 3.0 for its
    outlet assets to exist (3.0's ``dag.test()`` does not register them)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()
    try:
        from airflow.dag_processing.dagbag import sync_bag_to_db
    except ImportError:  # 3.0: the DAG and asset rows, as its DAG processor writes them
        from airflow.models.dag import DAG as SchedulerDAG
        from airflow.serialization.serialized_objects import LazyDeserializedDAG, SerializedDAG

        if dag.relative_fileloc is None:  # what its DagBag sets for a file outside a bundle
            dag.relative_fileloc = dag.fileloc
        serialized = LazyDeserializedDAG(data=SerializedDAG.to_dict(dag))
        SchedulerDAG.bulk_write_to_db("dags-folder", None, [serialized])
        return
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
    from handoff_provider._compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:
        sync_dag(dag)
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

        takes_session = "session" in inspect.signature(XComModel.get_many).parameters
        with create_session() as session:
            query = XComModel.get_many(
                run_id=dag_run.run_id,
                key=key,
                dag_ids=dag_run.dag_id,
                task_ids=task_id,
                **({"session": session} if takes_session else {}),
            )
            if hasattr(query, "with_only_columns"):  # 3.1+: a select statement
                row = session.execute(query.with_only_columns(XComModel.value)).first()
            else:  # 3.0: a Query bound to the session
                row = query.with_entities(XComModel.value).first()
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


# ------------------------------------------------------------------ task logs


class TaskLog:
    """The task log lines written during a capture, masked the way Airflow masks task logs."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def text(self) -> str:
        return "\n".join(self.lines)


#: Terminal colour codes, which a task log file does not hold.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _from(name: str | None, logger_name: str | None) -> bool:
    return (
        name is None
        or logger_name == name
        or bool(logger_name and logger_name.startswith(f"{name}."))
    )


@contextmanager
def capture_task_log(name: str | None = None) -> Iterator[TaskLog]:
    """Capture what is logged to the logger ``name`` (and its children; every logger when
    None) from any thread, through Airflow's own secrets masking, as a real task log.

    Independent of where the console output goes and of what earlier tests did to the
    logging setup (``dag.test()``, Airflow's ``configure_logging``): pytest's ``caplog`` and
    ``capsys`` depend on both, so they are not used for task logs.

    * Airflow 3 (structlog): a processor in front of the renderer, added to the configured
      processor list *in place* (as ``structlog.testing.capture_logs`` does), so loggers
      already bound and cached (``cache_logger_on_first_use``) pass through it too. It
      applies the supervisor's ``mask_logs`` processor to a copy of each event. Records of
      stdlib loggers (on 3.0 ``op.log`` is one) are taken by a handler on the logger
      (the root when ``name`` is None), through the same ``mask_logs``.
    * Airflow 2 (stdlib logging): a handler on the logger itself (not on the root, so
      ``propagate`` and the root's handlers don't matter) with the task handler's
      ``mask_secrets`` filter, the logger pinned at INFO (the task log's default level)
      and ``MASK_SECRETS_IN_LOGS`` set as ``airflow tasks run`` sets it.

    Masking happens when each line is emitted, so a value registered too late shows.
    """
    from handoff_provider._compat import AIRFLOW_V_3_0_PLUS

    captured = TaskLog()
    if AIRFLOW_V_3_0_PLUS:
        import structlog
        from airflow.sdk.log import mask_logs
        from structlog.processors import format_exc_info

        processors = structlog.get_config()["processors"]
        renderer = processors[-1]

        def tee(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
            if event_dict.get("_from_structlog") is False:  # a stdlib record: see below
                return event_dict
            if method == "debug":  # below the task log's level (3.0's dag.test() logs at debug)
                return event_dict
            if _from(name, getattr(logger, "name", None) or event_dict.get("logger")):
                # The traceback as plain text, masked with the rest, as in a task log file
                # (3.0's console renderer would print the frames' locals, unmasked).
                event = format_exc_info(logger, method, dict(event_dict))
                masked = mask_logs(logger, method, event)
                # 3.0's console renderer colours even with colored_console_log off
                captured.lines.append(_ANSI.sub("", str(renderer(logger, method, dict(masked)))))
            return event_dict

        class _MaskedCapture(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                event = mask_logs(None, record.levelname.lower(), {"event": self.format(record)})
                captured.lines.append(str(event["event"]))

        stdlib_logger = logging.getLogger(name)
        previous_level = stdlib_logger.level
        stdlib_logger.setLevel(logging.INFO)  # the task log's default level
        stdlib_handler = _MaskedCapture()
        stdlib_handler.setFormatter(logging.Formatter("%(name)s %(levelname)s - %(message)s"))
        stdlib_logger.addHandler(stdlib_handler)
        processors.insert(len(processors) - 1, tee)
        try:
            yield captured
        finally:
            processors.remove(tee)
            stdlib_logger.removeHandler(stdlib_handler)
            stdlib_logger.setLevel(previous_level)
        return

    from airflow import settings
    from airflow.utils.log.secrets_masker import _secrets_masker

    class _Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.lines.append(self.format(record))

    logger = logging.getLogger(name or "airflow.task")
    previous = (settings.MASK_SECRETS_IN_LOGS, logger.level, logger.disabled)
    settings.MASK_SECRETS_IN_LOGS = True  # what `airflow tasks run` sets
    logger.setLevel(logging.INFO)
    logger.disabled = False
    handler = _Capture()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s - %(message)s"))
    handler.addFilter(_secrets_masker())  # the task handler's "mask_secrets" filter
    logger.addHandler(handler)
    try:
        yield captured
    finally:
        logger.removeHandler(handler)
        settings.MASK_SECRETS_IN_LOGS, level, logger.disabled = previous
        logger.setLevel(level)
