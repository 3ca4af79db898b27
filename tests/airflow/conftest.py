"""Airflow test environment: one temporary AIRFLOW_HOME with SQLite per session.

Set before anything imports Airflow (pytest loads this conftest before the test modules
of this folder). The metadata DB is migrated once per session (``airflow_db``) and
shared by every test; tests use unique dag ids, stacks and buckets instead of resetting
it. On Airflow >= 3.1 ``dag.test()`` needs the DAG in the DB first (:func:`run_dag` syncs
it) and starts an in-process execution API server once per process (cached by Airflow),
so all the DAG tests of a session share it.

Every test under ``tests/airflow/`` is marked ``airflow`` (so ``pytest -m airflow`` on
the Airflow 2.10 venv selects them); helpers here only import what exists on both lines.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="handoff-airflow-home-"))
_DAGS = _HOME / "dags"  # empty: dag.test() on 3.x re-parses the bundle on every call
_DAGS.mkdir()
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(_DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        "AIRFLOW__HANDOFF__WORKSPACE_ROOT": str(_HOME / "workspaces"),
        "AIRFLOW__HANDOFF__VENV_CACHE_DIR": str(_HOME / "venvs"),
    }
)

_HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/airflow/ is an Airflow test (runs on both Airflow lines)."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.airflow)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


# --------------------------------------------------------------------------- database


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The session's migrated metadata DB (created on first use, ~5 s)."""
    from airflow.utils import db

    from handoff_provider._compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:
        db.resetdb(skip_init=False)
    else:
        db.initdb(load_connections=False)
    return _HOME


# --------------------------------------------------------------------------- task logs


class TaskLog:
    """The task log lines written during a test, masked the way Airflow masks task logs."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def task_log(airflow_db: Path) -> Iterator[TaskLog]:
    """Capture task log lines through Airflow's own secrets masking, as a real task run.

    ``dag.test()`` runs tasks in-process with the test process's console logging, which
    does not mask; a real task's log does: on 2.x the ``mask_secrets`` filter of the task
    handler, active once ``airflow tasks run`` sets ``MASK_SECRETS_IN_LOGS``; on 3.x the
    supervisor's ``mask_logs`` structlog processor. This adds that same masking in front
    of a capture (at the moment each line is emitted, so a value registered too late
    shows) and removes it afterwards, leaving the logging of other tests untouched.
    """
    from handoff_provider._compat import AIRFLOW_V_3_0_PLUS

    captured = TaskLog()
    if AIRFLOW_V_3_0_PLUS:
        import structlog
        from airflow.sdk.log import mask_logs

        config = structlog.get_config()
        processors = list(config["processors"])
        renderer = processors[-1]

        def tee(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
            masked = mask_logs(logger, method, dict(event_dict))
            captured.lines.append(str(renderer(logger, method, dict(masked))))
            return event_dict

        structlog.configure(processors=[*processors[:-1], tee, renderer])
        try:
            yield captured
        finally:
            structlog.configure(processors=processors)
    else:
        from airflow import settings
        from airflow.utils.log.secrets_masker import _secrets_masker

        class _Capture(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                captured.lines.append(self.format(record))

        previous = settings.MASK_SECRETS_IN_LOGS
        settings.MASK_SECRETS_IN_LOGS = True  # what `airflow tasks run` sets
        handler = _Capture()
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s - %(message)s"))
        handler.addFilter(_secrets_masker())  # the task handler's "mask_secrets" filter
        task_logger = logging.getLogger("airflow.task")
        task_logger.addHandler(handler)
        try:
            yield captured
        finally:
            task_logger.removeHandler(handler)
            settings.MASK_SECRETS_IN_LOGS = previous
