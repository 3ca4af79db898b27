"""The runs view in a real browser (``make test-browser``): a real Airflow 3 API server
(``airflow api-server``, SQLite, SimpleAuthManager with a password user), a real DAG run
of ``HandoffRunOperator`` (``airflow dags test``) and three CLI runs archived to the moto
server; headless Debian Chromium driven by playwright-core (``runs_view.mjs``) is refused
anonymously, logs in through Airflow's login form, reads the rows, opens a run, downloads
its state, follows the task-instance link and screenshots the view inside Airflow's UI
(``docs/runs-view.png``, ``docs/runs-view-run.png``; written again by every run).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.aws.runs_view_world import SECRET, RunsWorld, archived_world, make_project

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
PLAYWRIGHT_CORE = ROOT / "build" / "browser" / "node_modules" / "playwright-core"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCS = ROOT / "docs"
DAG_ID = "handoff_runs_demo"
USER, PASSWORD = "admin", "pw-" + uuid.uuid4().hex[:10]
DAG_FILE = """\
from datetime import datetime, timezone

from airflow.sdk import DAG
from handoff_provider.operators.run import HandoffRunOperator

with DAG({dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
         catchup=False):
    HandoffRunOperator(task_id="extract", project_dir={project!r}, stack={stack!r},
                       bucket={bucket!r})
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _airflow(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, (
        f"airflow {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def _wait_until_up(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"airflow api-server exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5):
                return
        except OSError:
            time.sleep(1)
    pytest.fail(f"airflow api-server not up after 180 s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def site(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not PLAYWRIGHT_CORE.is_dir() or not Path(CHROMIUM).exists():
        pytest.fail("run `make test-browser` (it installs chromium and playwright-core)")
    root = tmp_path_factory.mktemp("browser")
    worlds = archived_world(moto_server, root)
    world: RunsWorld = next(worlds)
    home, dags = root / "airflow-home", root / "dags"
    dags.mkdir()
    (dags / "handoff_runs_demo.py").write_text(
        DAG_FILE.format(
            dag_id=DAG_ID,
            project=str(make_project(root / "dag")),
            stack=world.stack,
            bucket=world.bucket,
        )
    )
    passwords = root / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__HANDOFF__RUNS_VIEW_STACKS": f"{world.stack}@{world.bucket}",
        "AIRFLOW__HANDOFF__VENV_CACHE_DIR": str(root / "venvs"),
    }
    _airflow(env, "db", "migrate")
    _airflow(env, "dags", "reserialize")
    _airflow(env, "dags", "test", DAG_ID, "2024-02-01", timeout=600)
    (run_key,) = [k for k in _run_keys(world) if k.startswith(DAG_ID)]
    log = root / "api-server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_until_up(url, server, log)
        yield {"url": url, "world": world, "run_key": run_key, "log": log}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        next(worlds, None)


def _run_keys(world: RunsWorld) -> set[str]:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    prefix = f"{world.stack}/runs/"
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=world.bucket, Prefix=prefix)
    return {o["Key"][len(prefix) :].split("/")[0] for p in pages for o in p.get("Contents", [])}


def test_the_runs_view_in_chromium(site: dict[str, Any]) -> None:
    world, run_key = site["world"], site["run_key"]
    DOCS.mkdir(exist_ok=True)
    done = subprocess.run(
        ["node", str(Path(__file__).with_name("runs_view.mjs"))],
        env={**os.environ, "PLAYWRIGHT_CORE": str(PLAYWRIGHT_CORE), "CHROMIUM": CHROMIUM,
             "BASE_URL": site["url"], "AF_USER": USER, "AF_PASSWORD": PASSWORD,
             "RUN_KEY": run_key, "SCREENSHOT_DIR": str(DOCS)},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:] + site["log"].read_text()[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    assert seen["anonymous_status"] in (401, 403) and seen["anonymous_rows"] == 0
    assert "_token" in seen["cookies"]
    assert seen["status"] == 200
    rows = {row["run_key"]: row for row in seen["rows"]}
    assert list(rows) == [run_key, world.failed, world.ok_second]  # newest first
    assert world.ok_first not in rows  # its DAG (sales_etl) is not one the user can read
    mine = rows[run_key]
    assert mine["status"] == "success" and mine["ti_link"].startswith(f"/dags/{DAG_ID}/runs/")
    assert mine["ti_link"].endswith("/tasks/extract") and mine["bars"] == 4
    assert mine["duration"].endswith(" s") and "files" in mine["bytes"]
    assert mine["state"] == "37 B"
    assert rows[world.failed]["status"] == "failed" and rows[world.failed]["ti_link"] is None
    second = rows[world.ok_second]
    assert second["interval"] == "2024-01-02 00:00:00 → 2024-01-02 23:59:59"
    assert second["interval_title"] == "2024-01-02T00:00:00+00:00 → 2024-01-02T23:59:59+00:00"
    assert SECRET not in seen["page_text"]

    run_page = seen["run_page"]
    assert run_page["url"].endswith(f"/handoff/runs/{world.stack}/{run_key}")
    assert {"run.json", "state", "report.txt"} <= set(run_page["files"])
    assert f"against run {world.failed}" in run_page["state"]  # the run archived before it
    assert seen["download"] == {"status": 200, "body": '{"day": "2024-02-01T00:00:00+00:00"}\n'}
    assert seen["task_instance"]["url"].startswith(f"{site['url']}/dags/{DAG_ID}/runs/")
    assert seen["embedded_rows"] == 3 and seen["nav_has_entry"]
    assert (DOCS / "runs-view.png").stat().st_size > 10_000
