"""The runs view on Airflow 3: a FastAPI app the API server mounts at ``/handoff``.

Airflow does not authenticate plugin apps (a mounted app inherits none of the core API's
dependencies), so every route here depends on Airflow's own ``get_user`` (the JWT of the
UI's session cookie or an ``Authorization: Bearer`` header): an anonymous request gets
401/403 from Airflow's code, not ours. Runs are filtered by the user's readable DAGs.
Routes are plain functions: FastAPI runs them in its thread pool (boto3 blocks).
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures, whose
# dependencies are local names of create_app.
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse

from handoff_provider.runs_view.pages import Download, Page, RunsPages, Viewer
from handoff_provider.runs_view.site import URL_PREFIX, configured_pages


def _airflow_root(request: Request) -> str:
    """The Airflow UI's path (``[api] base_url``'s path, usually empty)."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else root


def _task_instance_url(root: str, origin: dict[str, Any]) -> str:
    url = f"{_dag_run_url(root, origin)}/tasks/{quote(str(origin.get('task_id', '')), safe='')}"
    map_index = origin.get("map_index", -1)
    return f"{url}/mapped/{map_index}" if isinstance(map_index, int) and map_index >= 0 else url


def _dag_run_url(root: str, origin: dict[str, Any]) -> str:
    dag_id = quote(str(origin.get("dag_id", "")), safe="")
    return f"{root}/dags/{dag_id}/runs/{quote(str(origin.get('run_id', '')), safe='')}"


def create_app(pages: RunsPages | None = None) -> FastAPI:
    """The app (``pages`` defaults to the deployment's configuration)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user

    pages = pages or configured_pages()
    app = FastAPI(title="Handoff runs", docs_url=None, redoc_url=None, openapi_url=None)

    def viewer(request: Request, user: Annotated[Any, Depends(get_user)]) -> Viewer:
        readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
        root = _airflow_root(request)
        return Viewer(
            can_read_dag=readable.__contains__,
            task_instance_url=lambda origin: _task_instance_url(root, origin),
            dag_run_url=lambda origin: _dag_run_url(root, origin),
            base=f"{root}{URL_PREFIX}",
        )

    ViewerDep = Annotated[Viewer, Depends(viewer)]

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        return RedirectResponse(f"{_airflow_root(request)}{URL_PREFIX}/runs")

    @app.get("/runs")
    def runs(viewer: ViewerDep, stack: str | None = None, dag_id: str | None = None) -> Response:
        return _response(pages.index(viewer, stack=stack, dag_id=dag_id))

    @app.get("/api/runs")
    def runs_json(viewer: ViewerDep, stack: str | None = None) -> Response:
        return _response(pages.runs_json(viewer, stack=stack))

    @app.get("/task-instance")
    def task_instance(
        viewer: ViewerDep,
        dag_id: Annotated[str, Query()],
        run_id: Annotated[str, Query()],
        task_id: Annotated[str, Query()],
        map_index: Annotated[str | None, Query()] = None,
    ) -> Response:
        identity = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index}
        return _response(pages.task_instance(viewer, identity))

    @app.get("/runs/{stack}/{run_key}")
    def run(viewer: ViewerDep, stack: str, run_key: str) -> Response:
        return _response(pages.run(viewer, stack, run_key))

    @app.get("/runs/{stack}/{run_key}/files/{name:path}")
    def artifact(viewer: ViewerDep, stack: str, run_key: str, name: str) -> Response:
        return _response(pages.artifact(viewer, stack, run_key, name))

    return app


def create_unsupported_app() -> FastAPI:
    """What ``/handoff`` serves on an Airflow 3 whose UI can't pass its login to a plugin
    page (3.0): every request, logged in or not, gets 501 and :func:`unsupported_notice`.
    No run is ever read, so nothing is shown without Airflow's login."""
    app = FastAPI(title="Handoff runs", docs_url=None, redoc_url=None, openapi_url=None)
    notice = unsupported_notice()

    @app.api_route("/{path:path}", methods=["GET", "HEAD", "POST"], include_in_schema=False)
    def unsupported(path: str) -> Response:
        return PlainTextResponse(notice + "\n", status_code=501)

    return app


def unsupported_notice() -> str:
    """The one line :func:`create_unsupported_app` answers with."""
    from airflow import __version__

    return (
        f"The Handoff runs view needs Airflow 3.1 or later (this is Airflow {__version__}, "
        "whose UI does not pass its login to plugin pages); each run's run.json and "
        "archived files are in S3 under <stack>/runs/."
    )


def _response(result: Page | Download) -> Response:
    if isinstance(result, Download):
        return StreamingResponse(
            result.chunks,
            media_type=result.content_type,
            headers={
                "Content-Length": str(result.size),
                "Content-Disposition": f"inline; filename*=UTF-8''{quote(result.filename)}",
                "X-Content-Type-Options": "nosniff",
            },
        )
    return Response(result.body, status_code=result.status, media_type=result.content_type)
