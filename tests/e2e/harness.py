"""A real Airflow 3 deployment for end-to-end tests: LocalExecutor, PostgreSQL, one process each.

:class:`AirflowDeployment` makes a fresh ``AIRFLOW_HOME`` (the metadata DB in the
PostgreSQL server it is given, see :mod:`tests.e2e.postgres`; ``airflow db migrate``),
then starts ``airflow scheduler``, ``airflow dag-processor``, ``airflow api-server`` (on a
free loopback port) and ``airflow triggerer`` as separate processes, the way a deployment
runs them. DAGs come from one Local DAG bundle per folder given (e.g. the repository's
``dags/`` and ``tests/e2e/dags/``). AWS is the moto server whose endpoint is passed in
(``AWS_ENDPOINT_URL``, fake credentials); the ``aws_default`` connection has no keys, so
hooks use boto3's chain, as on a worker.

Use it as a context manager; :meth:`stop` (also on errors) terminates every process it
started, by pid (SIGTERM, then SIGKILL after a grace period), and reaps them.

What tests do and read is what a user does and sees: :meth:`trigger` (the REST API the
UI's Trigger button calls), :meth:`cli` (e.g. ``airflow backfill create``),
:meth:`wait_for_run` (the run's state in the metadata DB), :meth:`task_log` (the task's log
file as the UI shows it), :meth:`task_log_records` (its JSON records), :meth:`xcom`,
:meth:`rendered_fields` and :meth:`db_dump` (every text of the metadata DB, to prove a
secret is nowhere in it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2

from tests.e2e.postgres import PostgresServer

#: The four components of a deployment, each one ``airflow <component>`` process.
COMPONENTS = ("scheduler", "dag-processor", "api-server", "triggerer")
FINISHED = ("success", "failed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class AirflowDeployment:
    """See the module docstring. ``database``: the (started) PostgreSQL server of the
    metadata DB; ``dag_folders``: one Local DAG bundle each; ``aws_endpoint``: the moto
    server; ``env``: extra environment (e.g. ``HANDOFF_BUCKET``)."""

    home: Path
    database: PostgresServer
    dag_folders: Iterable[Path]
    aws_endpoint: str
    env: Mapping[str, str] = field(default_factory=dict)
    airflow: Path = field(default_factory=lambda: Path(sys.executable).with_name("airflow"))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        self.api_port = free_port()
        self._unpaused: set[str] = set()
        self._token: str | None = None

    # -- lifecycle

    def environment(self) -> dict[str, str]:
        bundles = [
            {
                "name": f"bundle-{index}-{Path(folder).name}",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(folder), "refresh_interval": 5},
            }
            for index, folder in enumerate(self.dag_folders)
        ]
        return {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Only the DAGs a test triggers run (trigger() unpauses them): the examples'
            # schedules would start runs of their own otherwise.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database.url,
            # On a loaded 2-core machine task runners wait for the API server (60 s, not
            # 5 s) instead of failing.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": (
                f"http://127.0.0.1:{self.api_port}/execution/"
            ),
            "AIRFLOW__API_AUTH__JWT_SECRET": "e2e-jwt-secret-not-a-real-one",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            "AIRFLOW__HANDOFF__WORKSPACE_ROOT": str(self.home / "workspaces"),
            "AIRFLOW__HANDOFF__VENV_CACHE_DIR": str(self.home / "venv-cache"),
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws"}),
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "NO_PROXY": "127.0.0.1,localhost",
            **self.env,
        }

    def cli(self, *args: str, timeout: float = 180) -> str:
        """``airflow <args>``; its stdout (raises with the output on failure)."""
        result = subprocess.run(
            [str(self.airflow), *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} exited with {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def start(self, *, ready_timeout: float = 180) -> AirflowDeployment:
        self.home.mkdir(parents=True, exist_ok=True)
        self.cli("db", "migrate", timeout=300)
        env = self.environment()
        for component in COMPONENTS:
            log = open(self.home / f"{component}.out", "wb")  # noqa: SIM115 (kept open)
            self.processes[component] = subprocess.Popen(
                [str(self.airflow), component],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: stop() can signal its children
            )
            log.close()
        self._wait_healthy(ready_timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        url = f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health"
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    health = json.loads(response.read())
                if health.get("scheduler", {}).get("status") == "healthy":
                    return
                last = json.dumps(health)
            except OSError as exc:
                last = str(exc)
            time.sleep(1)
        raise RuntimeError(f"Airflow not healthy after {timeout:.0f} s: {last}")

    def check_alive(self) -> None:
        for component, process in self.processes.items():
            if process.poll() is not None:
                out = (self.home / f"{component}.out").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"airflow {component} exited with {process.returncode}:\n{out}")

    def stop(self, grace: float = 20) -> None:
        """SIGTERM each component's process group (by its pid), SIGKILL what is left."""
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        for process in self.processes.values():  # children left in a group (task runners)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()

    def __enter__(self) -> AirflowDeployment:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- DAGs and runs

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query of the metadata DB (``%s`` placeholders)."""
        connection = psycopg2.connect(self.database.dsn, connect_timeout=30)
        try:
            connection.set_session(readonly=True, autocommit=True)
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        finally:
            connection.close()

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 180) -> None:
        """Until the dag-processor has parsed every DAG in ``dag_ids`` (raises with the
        import errors otherwise)."""
        wanted = set(dag_ids)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            found = {row[0] for row in self._query("SELECT dag_id FROM dag")}
            if wanted <= found:
                return
            time.sleep(1)
        errors = self._query("SELECT filename, stacktrace FROM import_error")
        raise RuntimeError(f"DAGs {sorted(wanted)} not parsed in {timeout:.0f} s: {errors}")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """A call of the public REST API (``/api/v2``), as the UI and API clients make it,
        with a token from the simple auth manager (every user is an admin here)."""
        base = f"http://127.0.0.1:{self.api_port}"
        if self._token is None:
            with urllib.request.urlopen(f"{base}/auth/token", timeout=60) as response:
                self._token = str(json.loads(response.read())["access_token"])
        request = urllib.request.Request(
            f"{base}/api/v2/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:2000]
            raise RuntimeError(f"{method} /api/v2/{path}: HTTP {error.code}: {detail}") from None

    def unpause(self, dag_id: str) -> None:
        if dag_id not in self._unpaused:
            self.api("PATCH", f"dags/{dag_id}", {"is_paused": False})
            self._unpaused.add(dag_id)

    def trigger(self, dag_id: str, *, run_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Unpause the DAG and trigger a manual run (no logical date: a manual run of
        Airflow 3), through the REST API (the UI's Trigger button). Unpausing a scheduled
        DAG also lets the scheduler start its latest interval (``catchup=False``)."""
        self.unpause(dag_id)
        body = {"dag_run_id": run_id, "logical_date": None, "conf": dict(conf or {})}
        self.api("POST", f"dags/{dag_id}/dagRuns", body)
        return run_id

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of ``dag_id`` in the metadata DB (run id, type, state, logical date,
        data interval, start/end), oldest logical date first."""
        rows = self._query(
            "SELECT run_id, run_type, state, logical_date, data_interval_start, "
            "data_interval_end, start_date, end_date, backfill_id FROM dag_run "
            "WHERE dag_id = %s ORDER BY logical_date",
            (dag_id,),
        )
        names = ("run_id", "run_type", "state", "logical_date", "data_interval_start")
        names += ("data_interval_end", "start_date", "end_date", "backfill_id")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """The final state of a DAG run (``success``/``failed``)."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            self.check_alive()
            rows = self._query(
                "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id)
            )
            state = rows[0][0] if rows else None
            if state in FINISHED:
                return str(state)
            time.sleep(1)
        raise RuntimeError(f"{dag_id} {run_id}: still {state} after {timeout:.0f} s")

    def wait_for_dag_runs(
        self, dag_id: str, *, run_type: str, count: int, timeout: float = 600
    ) -> list[dict[str, Any]]:
        """The ``count`` runs of type ``run_type`` (e.g. ``backfill``) of ``dag_id``, oldest
        logical date first, once all of them finished."""
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            self.check_alive()
            found = [run for run in self.dag_runs(dag_id) if run["run_type"] == run_type]
            if len(found) >= count and all(run["state"] in FINISHED for run in found):
                return found
            time.sleep(2)
        states = [(run["run_id"], run["state"]) for run in found]
        raise RuntimeError(
            f"{dag_id}: {count} {run_type} runs not finished in {timeout:.0f} s: {states}"
        )

    def backfills(self, dag_id: str) -> list[dict[str, Any]]:
        """The backfills of ``dag_id`` (id, max_active_runs, completed_at)."""
        rows = self._query(
            "SELECT id, max_active_runs, completed_at FROM backfill WHERE dag_id = %s", (dag_id,)
        )
        return [
            dict(zip(("id", "max_active_runs", "completed_at"), row, strict=True)) for row in rows
        ]

    def task_window(self, dag_id: str, run_id: str, task_id: str) -> tuple[datetime, datetime]:
        """When the task instance ran: (start, end) as the metadata DB has them."""
        ((start, end),) = self._query(
            "SELECT start_date, end_date FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s AND task_id = %s",
            (dag_id, run_id, task_id),
        )
        return start, end

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        rows = self._query(
            "SELECT task_id, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
            (dag_id, run_id),
        )
        return {task: str(state) for task, state in rows}

    def task_log_path(self, dag_id: str, run_id: str, task_id: str, attempt: int = 1) -> Path:
        base = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return base / f"attempt={attempt}.log"

    def log_files(self) -> list[Path]:
        """Every log file of the deployment: ``logs/`` (task and DAG processor logs) and each
        component's output."""
        return [path for path in (self.home / "logs").rglob("*") if path.is_file()] + [
            self.home / f"{component}.out" for component in COMPONENTS
        ]

    def task_log_records(
        self, dag_id: str, run_id: str, task_id: str, attempt: int = 1
    ) -> list[dict[str, Any]]:
        """The task log's JSON records (Airflow 3 writes one JSON object per line)."""
        records = []
        text = self.task_log_path(dag_id, run_id, task_id, attempt).read_text(errors="replace")
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def task_log(self, dag_id: str, run_id: str, task_id: str, attempt: int = 1) -> str:
        """The log as the UI shows it: ``LEVEL event`` per record."""
        return "\n".join(
            f"{record.get('level', '').upper()} {record.get('event', '')}"
            for record in self.task_log_records(dag_id, run_id, task_id, attempt)
        )

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        rows = self._query(
            "SELECT value FROM xcom "
            "WHERE dag_id = %s AND run_id = %s AND task_id = %s AND key = %s",
            (dag_id, run_id, task_id, key),
        )
        if not rows:
            return None
        value = rows[0][0]
        return json.loads(value) if isinstance(value, (str, bytes)) else value

    def rendered_fields(self, dag_id: str, run_id: str, task_id: str) -> Any:
        rows = self._query(
            "SELECT rendered_fields FROM rendered_task_instance_fields "
            "WHERE dag_id = %s AND run_id = %s AND task_id = %s",
            (dag_id, run_id, task_id),
        )
        if not rows:
            return None
        value = rows[0][0]
        return json.loads(value) if isinstance(value, (str, bytes)) else value

    def db_dump(self) -> str:
        """Every value of every row of every table of the metadata DB as text (to search for
        a secret); binary values also decompressed when they are zlib data (Airflow's
        compressed serialized DAGs), else read as Latin-1."""
        tables = self._query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
        lines = []
        for (table,) in tables:
            for row in self._query(f'SELECT * FROM "{table}"'):  # table names from the DB
                lines.append(f"{table}: " + " | ".join(_text(value) for value in row))
        return "\n".join(lines)


def _text(value: Any) -> str:
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        with contextlib.suppress(zlib.error):
            value = zlib.decompress(value)
        return value.decode("latin-1")
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
