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
    """Everything under tests/airflow/ is an Airflow test (runs on both Airflow lines).

    A test marked ``only_where(condition, why)`` tests one line's implementation of a
    feature (the runs view's Flask-AppBuilder view on 2.x, its FastAPI app on 3.1+, its
    notice on 3.0): where ``condition`` is false it is deselected, not skipped, as the
    other lines run their own test of what they do instead.
    """
    kept, deselected = [], []
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.airflow)
        marker = item.get_closest_marker("only_where")
        (deselected if marker is not None and not marker.args[0] else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


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


@pytest.fixture
def task_log(airflow_db: Path) -> Iterator[Any]:
    """The task log lines of the test, masked as a real task run masks them.

    ``dag.test()`` runs tasks in-process with the test process's console logging, which
    does not mask; a real task's log does (on 2.x the ``mask_secrets`` filter of the task
    handler, on 3.x the supervisor's ``mask_logs`` structlog processor).
    :func:`af_helpers.capture_task_log` adds that same masking in front of a capture and
    removes it afterwards, leaving the logging of other tests untouched.
    """
    from af_helpers import capture_task_log  # after the environment above is set

    with capture_task_log() as captured:
        yield captured
