"""The runs view's pages, independent of the web framework serving them.

Both Airflow lines serve the same :class:`RunsPages`: Airflow 3.1+ from a FastAPI app
(``fastapi_app.py``), Airflow 2.10/2.11 from a Flask-AppBuilder view (``flask_view.py``).
Each request gives the pages a :class:`Viewer` (what the logged-in user may read, and how
to link into that Airflow's UI); the pages return a :class:`Page` (status + HTML or JSON)
or, for a download, an :class:`Download`.

Which stacks are shown is the deployment's choice, never the request's: ``[handoff]
runs_view_stacks`` (``stack`` or ``stack@bucket``, comma separated; the bucket defaults to
``HANDOFF_BUCKET``), else ``HANDOFF_STACK``. The AWS connection is ``[handoff]
runs_view_aws_conn_id`` (default ``aws_default``): the same hook as the operators, so the
page works against LocalStack or moto too. A run whose ``origin`` names a DAG the user may
not read is not shown (nor its files); runs started outside Airflow are shown to every
user the view admits.
"""

from __future__ import annotations

import json
import mimetypes
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from handoff_provider.core.errors import HandoffError, StoreError
from handoff_provider.core.layout import stack_name
from handoff_provider.runs_view.history import (
    RunRecord,
    StackRuns,
    open_artifact,
    recent_runs,
    run_record,
    state_diff,
)

if TYPE_CHECKING:
    from handoff_provider.core.stores import Remote

TEMPLATES = Path(__file__).with_name("templates")
#: Runs shown per stack on the index page.
DEFAULT_LIMIT = 25


@dataclass(frozen=True)
class StackRef:
    stack: str
    bucket: str | None = None

    @classmethod
    def parse_list(cls, text: str | None) -> list[StackRef]:
        """``runs_view_stacks``: ``stack`` or ``stack@bucket``, comma or space separated."""
        refs = []
        for item in (text or "").replace(",", " ").split():
            stack, _, bucket = item.partition("@")
            refs.append(cls(stack, bucket or None))
        return refs


@dataclass(frozen=True)
class Page:
    status: int
    body: str
    content_type: str = "text/html; charset=utf-8"


@dataclass(frozen=True)
class Download:
    chunks: Iterator[bytes]
    size: int
    filename: str
    content_type: str


@dataclass(frozen=True)
class Viewer:
    """The request's user, as the pages need it.

    ``can_read_dag(dag_id)``: whether the user may read that DAG's runs/task instances.
    ``task_instance_url(origin)`` / ``dag_run_url(origin)``: links into this Airflow's UI.
    ``base``: the URL path the view is served under (e.g. ``/handoff``)."""

    can_read_dag: Callable[[str], bool]
    task_instance_url: Callable[[dict[str, Any]], str]
    dag_run_url: Callable[[dict[str, Any]], str]
    base: str


class RunsPages:
    """The pages; ``remote_for(StackRef) -> Remote`` builds the stores from the hook."""

    def __init__(self, stacks: list[StackRef], remote_for: Callable[[StackRef], Remote]) -> None:
        self.stacks = stacks
        self._remote_for = remote_for

    @cached_property
    def _env(self) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["human_bytes"] = human_bytes
        env.filters["short_time"] = short_time
        return env

    # ------------------------------------------------------------------ pages

    def index(
        self,
        viewer: Viewer,
        *,
        stack: str | None = None,
        dag_id: str | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> Page:
        """The runs of every shown stack (or of ``stack``); with ``dag_id`` (the DAG tab)
        only that DAG's runs, among the stack's last 200."""
        refs = self._refs(stack)
        if refs is None:
            return self._error(viewer, 404, f"stack {stack!r} is not one the runs view shows")
        sections = [self._section(viewer, ref, 200 if dag_id else limit) for ref in refs]
        if dag_id:
            for section in sections:
                section["runs"] = [
                    row
                    for row in section["runs"]
                    if (row["record"].origin or {}).get("dag_id") == dag_id
                ][:limit]
        return self._render(
            "runs.html", viewer, sections=sections, configured=bool(self.stacks), status=200
        )

    def runs_json(
        self, viewer: Viewer, *, stack: str | None = None, limit: int = DEFAULT_LIMIT
    ) -> Page:
        refs = self._refs(stack)
        if refs is None:
            return Page(404, json.dumps({"error": f"unknown stack {stack!r}"}), "application/json")
        stacks = []
        for ref in refs:
            section = self._section(viewer, ref, limit)
            stacks.append(
                {
                    "stack": ref.stack,
                    "error": section["error"],
                    "runs": [
                        {
                            **row["record"].to_dict(),
                            "page": row["page"],
                            "task_instance_url": row["ti_url"],
                        }
                        for row in section["runs"]
                    ],
                }
            )
        return Page(200, json.dumps({"stacks": stacks}, indent=1), "application/json")

    def run(self, viewer: Viewer, stack: str, run_key: str) -> Page:
        ref = self._ref(stack)
        if ref is None:
            return self._error(viewer, 404, f"stack {stack!r} is not one the runs view shows")
        try:
            remote = self._remote_for(ref)
            record = run_record(remote, run_key)
            if not self._visible(viewer, record):
                return self._error(viewer, 404, f"run {run_key}: not found")
            diff = state_diff(remote, record)
        except StoreError as exc:
            return self._error(viewer, 404, str(exc))
        except HandoffError as exc:
            return self._error(viewer, 400, str(exc))
        return self._render(
            "run.html", viewer, stack=ref.stack, run=self._row(viewer, ref, record), diff=diff,
            status=200,
        )  # fmt: skip

    def task_instance(self, viewer: Viewer, identity: dict[str, Any]) -> Page:
        """The runs of one task instance (every try), for the task-instance tab."""
        if not viewer.can_read_dag(str(identity.get("dag_id"))):
            return self._error(viewer, 404, "task instance: not found")
        sections = []
        for ref in self.stacks or self._refs(None) or []:
            section = self._section(viewer, ref, 200)
            section["runs"] = [
                row
                for row in section["runs"]
                if _same_task_instance(row["record"].origin, identity)
            ]
            if section["runs"] or section["error"]:
                sections.append(section)
        return self._render(
            "runs.html", viewer, sections=sections, configured=True, status=200,
        )  # fmt: skip

    def artifact(self, viewer: Viewer, stack: str, run_key: str, name: str) -> Page | Download:
        ref = self._ref(stack)
        if ref is None:
            return self._error(viewer, 404, f"stack {stack!r} is not one the runs view shows")
        try:
            remote = self._remote_for(ref)
            record = run_record(remote, run_key)
            if not self._visible(viewer, record) or name not in {f.name for f in record.files}:
                return self._error(viewer, 404, f"run {run_key}: no archived file {name!r}")
            chunks, size = open_artifact(remote, run_key, name)
        except StoreError as exc:
            return self._error(viewer, 404, str(exc))
        except HandoffError as exc:
            return self._error(viewer, 400, str(exc))
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if kind.startswith("text/") or name.endswith((".log", ".json")) or "." not in name:
            kind = "text/plain; charset=utf-8"  # shown in the browser, never rendered as HTML
        return Download(chunks, size, os.path.basename(name), kind)

    # -------------------------------------------------------------- internals

    def _refs(self, stack: str | None) -> list[StackRef] | None:
        refs = self.stacks or _env_stacks()
        if stack is None:
            return refs
        chosen = [ref for ref in refs if ref.stack == stack]
        return chosen or None

    def _ref(self, stack: str) -> StackRef | None:
        refs = self._refs(stack)
        return refs[0] if refs else None

    def _section(self, viewer: Viewer, ref: StackRef, limit: int) -> dict[str, Any]:
        try:
            remote = self._remote_for(ref)
            found: StackRuns | None = recent_runs(remote, limit=limit)
            error = None
        except HandoffError as exc:
            found, error = None, str(exc)
        runs = [run for run in (found.runs if found else []) if self._visible(viewer, run)]
        peak = max((s.bytes_out or 0 for run in runs for s in run.stages), default=0)
        return {
            "stack": ref.stack,
            "uri": found.uri if found else None,
            "total": found.total if found else 0,
            "error": error,
            "peak": peak,
            "runs": [self._row(viewer, ref, run) for run in runs],
        }

    def _row(self, viewer: Viewer, ref: StackRef, run: RunRecord) -> dict[str, Any]:
        origin = run.origin if run.origin and "dag_id" in run.origin else None
        page = f"{viewer.base}/runs/{ref.stack}/{run.run_key}"
        return {
            "record": run,
            "page": page,
            "files_base": f"{page}/files/",
            "ti_url": viewer.task_instance_url(origin) if origin else None,
            "dag_run_url": viewer.dag_run_url(origin) if origin else None,
            "dag_run": f"{origin['dag_id']} / {origin.get('run_id')}" if origin else None,
            "peak": max((s.bytes_out or 0 for s in run.stages), default=0),
        }

    @staticmethod
    def _visible(viewer: Viewer, run: RunRecord) -> bool:
        dag_id = (run.origin or {}).get("dag_id")
        return dag_id is None or viewer.can_read_dag(str(dag_id))

    def _render(self, template: str, viewer: Viewer, *, status: int, **values: Any) -> Page:
        html = self._env.get_template(template).render(base=viewer.base, **values)
        return Page(status, html)

    def _error(self, viewer: Viewer, status: int, message: str) -> Page:
        return self._render("error.html", viewer, message=message, status=status)


def _env_stacks() -> list[StackRef]:
    stack = stack_name()
    return [StackRef(stack)] if stack else []


def _same_task_instance(origin: dict[str, Any] | None, identity: dict[str, Any]) -> bool:
    if not origin:
        return False
    keys = ("dag_id", "run_id", "task_id")
    if any(str(origin.get(k)) != str(identity.get(k)) for k in keys):
        return False
    wanted = identity.get("map_index")
    return wanted in (None, "") or str(origin.get("map_index", -1)) == str(wanted)


def short_time(value: str | None) -> str:
    """``2024-01-31T12:00:00.123+00:00`` as ``2024-01-31 12:00:00`` (the title keeps it whole)."""
    if not value:
        return "-"
    return value.replace("T", " ")[:19]


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
