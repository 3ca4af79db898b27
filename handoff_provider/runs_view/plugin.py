"""The Airflow plugin of the runs view (the ``airflow.plugins`` entry point).

Airflow 3.1+: a FastAPI app mounted at ``/handoff``, listed in the UI (Browse > Handoff
runs, a DAG tab and a task-instance tab). Airflow 3.0, whose UI can't pass its login to a
plugin page (:func:`~handoff_provider._compat.plugin_views_in_the_ui`): ``/handoff``
answers every request with one line saying the view needs Airflow 3.1, and nothing is
listed. Airflow 2.10/2.11: a Flask-AppBuilder view at ``/handoff`` (Browse > Handoff runs).
Importing this module makes no AWS call and builds no app: every process that loads plugins
imports it, only the web server serves it.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from handoff_provider._compat import AIRFLOW_V_3_0_PLUS, plugin_views_in_the_ui
from handoff_provider.runs_view.site import URL_PREFIX


class LazyApp:
    """An ASGI app that builds the real FastAPI app on its first request (on Airflow 3.0
    the app that says the view needs 3.1)."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from handoff_provider.runs_view import fastapi_app

            if plugin_views_in_the_ui():
                self._app = fastapi_app.create_app()
            else:
                self._app = fastapi_app.create_unsupported_app()
        await self._app(scope, receive, send)


class HandoffRunsViewPlugin(AirflowPlugin):
    name = "handoff_runs_view"
    if AIRFLOW_V_3_0_PLUS:
        fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Handoff runs"}]
    if AIRFLOW_V_3_0_PLUS and plugin_views_in_the_ui():
        external_views = [
            {
                "name": "Handoff runs",
                "href": f"{URL_PREFIX.lstrip('/')}/runs",
                "destination": "nav",
                "category": "browse",
                "url_route": "handoff-runs",
            },
            {
                "name": "Handoff runs",
                "href": f"{URL_PREFIX.lstrip('/')}/runs?dag_id={{DAG_ID}}",
                "destination": "dag",
                "url_route": "handoff-dag-runs",
            },
            {
                "name": "Handoff runs",
                "href": (
                    f"{URL_PREFIX.lstrip('/')}/task-instance?dag_id={{DAG_ID}}&run_id={{RUN_ID}}"
                    "&task_id={TASK_ID}&map_index={MAP_INDEX}"
                ),
                "destination": "task_instance",
                "url_route": "handoff-task-instance",
            },
        ]
    if not AIRFLOW_V_3_0_PLUS:

        @staticmethod
        def _views() -> list[dict[str, Any]]:
            from handoff_provider.runs_view.flask_view import HandoffRunsView

            return [{"name": "Handoff runs", "category": "Browse", "view": HandoffRunsView()}]

        appbuilder_views = _views()
