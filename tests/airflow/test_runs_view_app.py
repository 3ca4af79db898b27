"""The runs view served by Airflow itself, over HTTP, on both lines.

The plugin is the one Airflow loads from the provider's metadata (``get_provider_info``'s
``plugins``): on Airflow 3 the API server's own app (``create_app``) mounts it at
``/handoff`` and its own auth manager (SimpleAuthManager, a password user) logs in; on
Airflow 3.0, whose UI can't pass its login to a plugin page, the same mount answers with
the notice that the view needs 3.1; on Airflow 2.10 the webserver's app serves the FAB view
and FAB's login. Each line's tests are deselected on the others (``only_where``). The runs are real:
three archived by the CLI (tests/aws/runs_view_world.py) and one by a DAG run of
``HandoffRunOperator``, whose row links to its task instance.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from handoff_provider._compat import AIRFLOW_V_3_0_PLUS, plugin_views_in_the_ui
from tests.airflow.af_helpers import run_dag, run_keys, task_states
from tests.aws.runs_view_world import SECRET, RunsWorld, archived_world, make_project

DAY = datetime(2024, 2, 1, tzinfo=timezone.utc)
USER, PASSWORD = "runs-admin", "pw-" + uuid.uuid4().hex[:8]
FASTAPI_VIEW = AIRFLOW_V_3_0_PLUS and plugin_views_in_the_ui()
only_fastapi_view = pytest.mark.only_where(FASTAPI_VIEW, "the FastAPI view: Airflow 3.1+")
only_notice = pytest.mark.only_where(
    AIRFLOW_V_3_0_PLUS and not FASTAPI_VIEW, "the needs-3.1 notice: Airflow 3.0"
)
only_fab_view = pytest.mark.only_where(not AIRFLOW_V_3_0_PLUS, "the FAB view: Airflow 2")


@pytest.fixture(scope="module")
def view_world(
    moto_server: str, airflow_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunsWorld, str, str]]:
    """(the CLI runs' world, the DAG's id, the DAG run's run key)."""
    from handoff_provider._compat import DAG
    from handoff_provider.operators.run import HandoffRunOperator

    root = tmp_path_factory.mktemp("runs-view-af")
    worlds = archived_world(moto_server, root)
    world = next(worlds)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__HANDOFF__RUNS_VIEW_STACKS", f"{world.stack}@{world.bucket}")
        dag_id = f"runs_view_{uuid.uuid4().hex[:6]}"
        with DAG(dag_id, schedule=None, start_date=DAY, catchup=False) as dag:
            HandoffRunOperator(
                task_id="extract",
                project_dir=make_project(root / "dag"),
                stack=world.stack,
                bucket=world.bucket,
            )
        assert task_states(run_dag(dag, DAY)) == {"extract": "success"}
        (run_key,) = [k for k in run_keys(world.bucket, world.stack) if k.startswith(dag_id)]
        yield world, dag_id, run_key
    next(worlds, None)


def _reset_plugin_app() -> None:
    """The plugin builds its app on the first request; rebuild it with this module's
    settings (another test of the session may have served it already)."""
    from handoff_provider.runs_view.plugin import HandoffRunsViewPlugin

    for entry in getattr(HandoffRunsViewPlugin, "fastapi_apps", []):
        entry["app"]._app = None


def _check_rows(html: str, world: RunsWorld, dag_id: str, run_key: str) -> None:
    for key in (world.ok_second, world.failed, run_key):
        assert f'data-run-key="{key}"' in html, key
    assert f'data-run-key="{world.ok_first}"' not in html, "its DAG (sales_etl) is not readable"
    assert SECRET not in html


# --------------------------------------------------------------------------- Airflow 3


@pytest.fixture(scope="module")
def api_client(view_world: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    world = view_world[0]
    passwords = tmp_path_factory.mktemp("auth") / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", f"{USER}:admin")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", uuid.uuid4().hex)
        patch.setenv("AIRFLOW__HANDOFF__RUNS_VIEW_STACKS", f"{world.stack}@{world.bucket}")
        purge_cached_app()
        _reset_plugin_app()
        try:
            with TestClient(create_app()) as client:
                yield client
        finally:
            purge_cached_app()
            _reset_plugin_app()


def _token(client: Any) -> str:
    response = client.post("/auth/token", json={"username": USER, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return str(response.json()["access_token"])


@only_fastapi_view
def test_af3_anonymous_requests_are_refused(api_client: Any, view_world: Any) -> None:
    world, _, run_key = view_world
    for path in (
        "/handoff/runs",
        "/handoff/api/runs",
        f"/handoff/runs/{world.stack}/{run_key}",
        f"/handoff/runs/{world.stack}/{run_key}/files/run.json",
    ):
        response = api_client.get(path)
        assert response.status_code in (401, 403), (path, response.text[:300])
        assert "data-run-key" not in response.text and '"run_key"' not in response.text
    bad = api_client.get("/handoff/runs", cookies={"_token": "not-a-jwt"})
    assert bad.status_code in (401, 403)


@only_fastapi_view
def test_af3_logged_in_user_sees_the_runs(api_client: Any, view_world: Any) -> None:
    world, dag_id, run_key = view_world
    token = _token(api_client)
    api_client.cookies.set("_token", token)  # what the UI's login leaves in the browser
    try:
        response = api_client.get("/handoff/runs")
        assert response.status_code == 200, response.text
        _check_rows(response.text, world, dag_id, run_key)
        assert f'href="/dags/{dag_id}/runs/' in response.text  # the task-instance link
        assert "/tasks/extract" in response.text
        data = api_client.get("/handoff/api/runs").json()
        (stack,) = data["stacks"]
        mine = next(r for r in stack["runs"] if r["run_key"] == run_key)
        assert mine["origin"]["dag_id"] == dag_id and mine["status"] == "success"
        page = api_client.get(f"/handoff/runs/{world.stack}/{run_key}")
        assert page.status_code == 200 and "report.txt" in page.text
        state = api_client.get(f"/handoff/runs/{world.stack}/{run_key}/files/state")
        assert state.status_code == 200 and state.text.startswith('{"day": "2024-02-01')
        assert state.headers["x-content-type-options"] == "nosniff"
        # the task-instance tab's destination
        tab = api_client.get(
            "/handoff/task-instance",
            params={"dag_id": dag_id, "run_id": mine["origin"]["run_id"],
                    "task_id": "extract", "map_index": "-1"},
        )  # fmt: skip
        assert tab.status_code == 200 and run_key in tab.text and world.failed not in tab.text
        dag_tab = api_client.get("/handoff/runs", params={"dag_id": dag_id})
        assert dag_tab.status_code == 200 and f'data-run-key="{run_key}"' in dag_tab.text
        assert f'data-run-key="{world.failed}"' not in dag_tab.text
    finally:
        api_client.cookies.clear()
    bearer = api_client.get("/handoff/api/runs", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 200


@only_fastapi_view
def test_af3_ui_lists_the_view(api_client: Any) -> None:
    token = _token(api_client)
    plugins = api_client.get("/api/v2/plugins", headers={"Authorization": f"Bearer {token}"})
    assert plugins.status_code == 200
    (ours,) = [p for p in plugins.json()["plugins"] if p["name"] == "handoff_runs_view"]
    destinations = {view["destination"]: view["href"] for view in ours["external_views"]}
    assert destinations["nav"] == "handoff/runs"
    assert "{DAG_ID}" in destinations["task_instance"]
    assert destinations["dag"] == "handoff/runs?dag_id={DAG_ID}"


@only_notice
def test_af30_the_mount_says_the_view_needs_airflow_3_1_and_shows_no_run(
    api_client: Any, view_world: Any
) -> None:
    """Airflow 3.0: logged in or not, every page of the view answers 501 with one line
    naming the version it needs; no run is read, and the UI lists no view of ours."""
    from airflow import __version__

    from handoff_provider.runs_view.plugin import HandoffRunsViewPlugin

    world, dag_id, run_key = view_world
    token = _token(api_client)
    for headers in ({}, {"Authorization": f"Bearer {token}"}):
        for path in (
            "/handoff/runs",
            "/handoff/api/runs",
            f"/handoff/runs?dag_id={dag_id}",
            f"/handoff/runs/{world.stack}/{run_key}",
            f"/handoff/runs/{world.stack}/{run_key}/files/state",
        ):
            response = api_client.get(path, headers=headers)
            assert response.status_code == 501, (path, response.text[:300])
            (line,) = response.text.splitlines()
            assert line.startswith("The Handoff runs view needs Airflow 3.1 or later")
            assert f"this is Airflow {__version__}" in line
            assert run_key not in response.text and SECRET not in response.text
    plugins = api_client.get("/api/v2/plugins", headers={"Authorization": f"Bearer {token}"})
    assert plugins.status_code == 200
    (ours,) = [p for p in plugins.json()["plugins"] if p["name"] == "handoff_runs_view"]
    assert not ours.get("external_views")
    assert not hasattr(HandoffRunsViewPlugin, "external_views")


# --------------------------------------------------------------------------- Airflow 2


@pytest.fixture(scope="module")
def webserver_client(view_world: Any) -> Iterator[Any]:
    from airflow.www.app import create_app

    world = view_world[0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__HANDOFF__RUNS_VIEW_STACKS", f"{world.stack}@{world.bucket}")
        patch.setenv("AIRFLOW__WEBSERVER__WTF_CSRF_ENABLED", "False")
        app = create_app(testing=True)
        app.config["WTF_CSRF_ENABLED"] = False
        security = app.appbuilder.sm
        if security.find_user(username=USER) is None:
            security.add_user(USER, "Runs", "Admin", f"{USER}@example.com",
                              security.find_role("Viewer"), PASSWORD)  # fmt: skip
        with app.test_client() as client:
            yield client


@only_fab_view
def test_af2_anonymous_requests_are_refused(webserver_client: Any, view_world: Any) -> None:
    world, _, run_key = view_world
    for path in ("/handoff/runs", f"/handoff/runs/{world.stack}/{run_key}/files/run.json"):
        response = webserver_client.get(path)
        assert response.status_code == 302 and "/login/" in response.headers["Location"], path
        assert "data-run-key" not in response.get_data(as_text=True)  # no page, a redirect


@only_fab_view
def test_af2_logged_in_viewer_sees_the_runs(webserver_client: Any, view_world: Any) -> None:
    world, dag_id, run_key = view_world
    login = webserver_client.post("/login/", data={"username": USER, "password": PASSWORD})
    assert login.status_code == 302
    try:
        response = webserver_client.get("/handoff/runs")
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        html = response.get_data(as_text=True)
        _check_rows(html, world, dag_id, run_key)
        assert f"/dags/{dag_id}/grid?dag_run_id=" in html and "task_id=extract" in html
        state = webserver_client.get(f"/handoff/runs/{world.stack}/{run_key}/files/state")
        assert state.status_code == 200
        assert state.get_data(as_text=True).startswith('{"day": "2024-02-01')
    finally:
        webserver_client.get("/logout/")
