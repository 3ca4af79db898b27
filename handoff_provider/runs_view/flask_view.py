"""The runs view on Airflow 2.10/2.11: a Flask-AppBuilder view at ``/handoff``.

Each route is behind the webserver's own ``has_access_view`` (an anonymous request is
redirected to the login page, a user without the website permission is refused), and runs
are filtered by the DAGs the user may read, as on Airflow 3.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from airflow.www.auth import has_access_view
from flask import Response, request, stream_with_context
from flask_appbuilder import BaseView, expose

from handoff_provider.runs_view.pages import Download, Page, RunsPages, Viewer
from handoff_provider.runs_view.site import URL_PREFIX, configured_pages


def _grid_url(root: str, origin: dict[str, Any], *, task: bool) -> str:
    query: dict[str, Any] = {"dag_run_id": origin.get("run_id", "")}
    if task:
        query["task_id"] = origin.get("task_id", "")
        map_index = origin.get("map_index", -1)
        if isinstance(map_index, int) and map_index >= 0:
            query["map_index"] = map_index
    dag_id = quote(str(origin.get("dag_id", "")), safe="")
    return f"{root}/dags/{dag_id}/grid?{urlencode(query)}"


def _viewer() -> Viewer:
    from airflow.www.extensions.init_auth_manager import get_auth_manager

    readable = get_auth_manager().get_permitted_dag_ids(methods=["GET"])
    root = request.script_root.rstrip("/")
    return Viewer(
        can_read_dag=readable.__contains__,
        task_instance_url=lambda origin: _grid_url(root, origin, task=True),
        dag_run_url=lambda origin: _grid_url(root, origin, task=False),
        base=f"{root}{URL_PREFIX}",
    )


def _response(result: Page | Download) -> Response:
    if isinstance(result, Download):
        return Response(
            stream_with_context(result.chunks),
            mimetype=result.content_type,
            headers={
                "Content-Length": str(result.size),
                "Content-Disposition": f"inline; filename*=UTF-8''{quote(result.filename)}",
                "X-Content-Type-Options": "nosniff",
            },
        )
    return Response(result.body, status=result.status, content_type=result.content_type)


class HandoffRunsView(BaseView):
    """Browse > Handoff runs."""

    route_base = URL_PREFIX
    default_view = "runs"

    def __init__(self, pages: RunsPages | None = None, **kwargs: Any) -> None:
        self._pages = pages  # before FAB's __init__, which inspects the attributes
        super().__init__(**kwargs)

    def _runs_pages(self) -> RunsPages:
        if self._pages is None:
            self._pages = configured_pages()
        return self._pages

    @expose("/runs")
    @has_access_view()
    def runs(self) -> Response:
        pages, args = self._runs_pages(), request.args
        return _response(pages.index(_viewer(), stack=args.get("stack"), dag_id=args.get("dag_id")))

    @expose("/api/runs")
    @has_access_view()
    def runs_json(self) -> Response:
        return _response(self._runs_pages().runs_json(_viewer(), stack=request.args.get("stack")))

    @expose("/runs/<stack>/<run_key>")
    @has_access_view()
    def run(self, stack: str, run_key: str) -> Response:
        return _response(self._runs_pages().run(_viewer(), stack, run_key))

    @expose("/runs/<stack>/<run_key>/files/<path:name>")
    @has_access_view()
    def artifact(self, stack: str, run_key: str, name: str) -> Response:
        return _response(self._runs_pages().artifact(_viewer(), stack, run_key, name))
