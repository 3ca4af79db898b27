"""The ``extra`` of the asset event on a stack's ``s3://<bucket>/<stack>/last/`` outlet.

A downstream DAG scheduled on that asset (Dataset on Airflow 2.x) learns from the event what
happened, without reading S3 or XCom::

    {
      "run_key": "manual__2024-05-01T06:00:00+00:00__run__1",
      "data_interval": {"start": "2024-04-30T00:00:00+00:00", "end": "2024-05-01T00:00:00+00:00"},
      "status": "success",
      "tasks": {"extract": "success", "load": "success"},
      "bytes_out": 5120,                 # the last stage's output of every task, summed
      "artifacts": {"uri": "s3://b/stack/runs/<key>/", "files": 4, "bytes": 6000},
      "state": {"size": 42, "sha256": "9f86d0..."}   # of the published last/state, or null
    }

Never the state's content, never a command line or a config value: only names, statuses,
counts and a digest. The state's size and SHA-256 are those recorded in ``last/``'s
completion manifest (what a reader of ``last/`` gets), so the local and the ECS operator
report the same thing; ``state`` is ``null`` when the run left no state or ``last/`` was
not (or no longer) published by this run.

Set through ``context["outlet_events"][outlet].extra``, the same API on Airflow 3
(``OutletEventAccessor`` of the Task SDK) and 2.10 (``outlet_events[dataset].extra``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from handoff_provider._compat import context_data_interval

if TYPE_CHECKING:
    from handoff_provider.core.stores import ArtifactsBackend

__all__ = [
    "last_event_extra",
    "published_state",
    "report_last_event",
    "set_outlet_extra",
    "triggering_extras",
]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def last_event_extra(
    summary: Mapping[str, Any], context: Mapping[str, Any], state: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The event's ``extra`` from a run summary (``RunOutcome.to_dict()`` or ``run.json``),
    the task context (data interval) and :func:`published_state`."""
    start, end = context_data_interval(context)
    tasks = [task for task in summary.get("tasks") or [] if isinstance(task, Mapping)]
    bytes_out = 0
    for task in tasks:
        stages = task.get("stages") or []
        last = stages[-1].get("bytes_out") if stages else None
        bytes_out += int(last or 0)
    artifacts = summary.get("artifacts") or {}
    return {
        "run_key": summary.get("run_key"),
        "data_interval": {"start": _iso(start), "end": _iso(end)},
        "status": summary.get("status"),
        "tasks": {str(task.get("name")): task.get("status") for task in tasks},
        "bytes_out": bytes_out,
        "artifacts": {
            "uri": artifacts.get("runs_uri"),
            "files": artifacts.get("files"),
            "bytes": artifacts.get("bytes"),
        },
        "state": dict(state) if state is not None else None,
    }


def published_state(artifacts: ArtifactsBackend, run_key: str | None) -> dict[str, Any] | None:
    """``{"size", "sha256"}`` of ``last/state`` as recorded in ``last/``'s manifest, when
    ``last/`` holds the run ``run_key``; else None. One ``GetObject`` of the manifest."""
    from handoff_provider.core.layout import STATE_NAME

    manifest = artifacts.read_manifest()
    if manifest is None or manifest.get("run_key") != run_key:
        return None
    entry = manifest["files"].get(STATE_NAME)
    if entry is None:
        return None
    return {"size": int(entry["size"]), "sha256": str(entry["sha256"])}


def set_outlet_extra(
    context: Mapping[str, Any], outlets: Any, uri: str, extra: Mapping[str, Any]
) -> bool:
    """Put ``extra`` on the event of the outlet whose URI is ``uri``; False when the task
    has no such outlet (e.g. a templated stack) or the context has no ``outlet_events``."""
    events = context.get("outlet_events")
    wanted = uri.rstrip("/")
    outlet = next(
        (o for o in outlets or [] if str(getattr(o, "uri", "")).rstrip("/") == wanted), None
    )
    if events is None or outlet is None:
        return False
    events[outlet].extra.update(extra)
    return True


def report_last_event(
    context: Mapping[str, Any],
    outlets: Any,
    artifacts: ArtifactsBackend,
    summary: Mapping[str, Any],
    log: Any,
) -> dict[str, Any] | None:
    """After a successful run: compute the ``extra`` and put it on the ``last/`` outlet's
    event; returns it (None when the task has no such outlet). Reading the manifest may
    fail (permissions, a concurrent publish): the event then says ``"state": null`` and the
    task still succeeds, since its run did."""
    from handoff_provider.core.errors import HandoffError

    try:
        state = published_state(artifacts, summary.get("run_key"))
    except HandoffError as exc:
        log.warning("asset event: could not read the state's size/hash from last/: %s", exc)
        state = None
    extra = last_event_extra(summary, context, state)
    if not set_outlet_extra(context, outlets, artifacts.last_uri, extra):
        return None
    return extra


def triggering_extras(context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """In a DAG scheduled on a ``last/`` asset: the ``extra`` of every event that triggered
    this run (oldest first), e.g. ``[{"run_key": ..., "state": {"sha256": ...}}, ...]``.

    Reads ``triggering_asset_events`` (Airflow 3) or ``triggering_dataset_events`` (2.x)
    from the task context, so a downstream task need not know the Airflow line."""
    events = context.get("triggering_asset_events")
    if events is None:
        events = context.get("triggering_dataset_events")
    extras: list[dict[str, Any]] = []
    for asset_events in (events or {}).values():
        extras.extend(dict(getattr(event, "extra", None) or {}) for event in asset_events)
    return extras
