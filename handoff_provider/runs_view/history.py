"""A stack's archived runs, read back from S3 for the runs view (no Airflow here).

Everything comes from what the runs archived (``stores/artifacts.py``): each run's
``run.json`` (the runner's summary: status, times, data interval, per-stage bytes, the
task try that ran it; it never holds a config value) and its completion manifest (the
archived files, their sizes, the state's size), plus ``last/``'s manifest (which run is
published). The view only reads.

Costs: one LIST request per 1,000 archived objects of the stack (to order the runs by
time: run keys are not chronological), then two GETs per run shown, in parallel.
"""

from __future__ import annotations

import collections
import difflib
import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from handoff_provider.core import layout
from handoff_provider.core.aws.errors import aws_errors, error_code
from handoff_provider.core.errors import ConfigurationError, StoreError
from handoff_provider.core.layout import MANIFEST_NAME, RUN_RECORD_NAME, STATE_NAME, s3_uri
from handoff_provider.core.model.run_key import check_run_key
from handoff_provider.core.stores.s3sync import RemoteObject, list_objects

if TYPE_CHECKING:
    from handoff_provider.core.stores import Remote

#: A state larger than this is not diffed (the page shows sizes only).
DIFF_LIMIT = 256 * 1024
#: Lines of a state diff shown at most.
DIFF_LINES = 400
_PARALLEL_READS = 8


@dataclass(frozen=True)
class StageBytes:
    """One stage of a task, for the bytes-per-stage bars."""

    task: str
    index: int
    command: str
    status: str
    exit_code: int | None
    bytes_out: int | None


@dataclass(frozen=True)
class ArchivedFile:
    name: str
    size: int


@dataclass(frozen=True)
class RunRecord:
    """One archived run as the view shows it."""

    run_key: str
    status: str
    started_at: str | None = None
    ended_at: str | None = None
    seconds: float | None = None
    data_interval: dict[str, str | None] | None = None
    origin: dict[str, Any] | None = None
    error: str | None = None
    stages: tuple[StageBytes, ...] = ()
    files: tuple[ArchivedFile, ...] = ()
    complete: bool = False
    published: bool = False
    #: When its last object was written (orders runs that never wrote run.json).
    archived_at: str = ""

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def state_bytes(self) -> int | None:
        return next((f.size for f in self.files if f.name == STATE_NAME), None)

    @property
    def sort_time(self) -> str:
        return self.started_at or self.archived_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_key": self.run_key,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "seconds": self.seconds,
            "data_interval": self.data_interval,
            "origin": self.origin,
            "error": self.error,
            "bytes": self.bytes,
            "state_bytes": self.state_bytes,
            "complete": self.complete,
            "published": self.published,
            "stages": [stage.__dict__ for stage in self.stages],
            "files": [f.__dict__ for f in self.files],
        }


@dataclass(frozen=True)
class StateDiff:
    """The run's ``state`` against the previous run's that has one."""

    previous_run: str | None
    lines: tuple[str, ...] = ()
    note: str | None = None  # why there is no diff (too large, not text, unchanged...)


@dataclass
class StackRuns:
    """The recent runs of one stack, newest first."""

    stack: str
    bucket: str
    runs: list[RunRecord] = field(default_factory=list)
    total: int = 0  # runs archived in all

    @property
    def uri(self) -> str:
        return s3_uri(self.bucket, layout.runs_root(self.stack))


def recent_runs(remote: Remote, *, limit: int = 25) -> StackRuns:
    """The ``limit`` most recent runs of ``remote``'s stack, newest first."""
    bucket = remote.require_bucket()
    client = remote.client("s3")
    grouped = _archived_objects(client, bucket, remote.stack)
    published = remote.artifacts.read_last().run_key
    with ThreadPoolExecutor(max_workers=_PARALLEL_READS) as pool:
        runs = list(
            pool.map(
                lambda key: _record(remote, key, grouped[key], published=published),
                _newest(grouped, limit),
            )
        )
    runs.sort(key=lambda run: run.sort_time, reverse=True)
    return StackRuns(
        stack=remote.stack, bucket=bucket, runs=runs[: max(limit, 0)], total=len(grouped)
    )


def _newest(grouped: dict[str, dict[str, RemoteObject]], limit: int) -> list[str]:
    """The ``limit`` runs written last, and every run written in the same second as the
    last of them: S3 lists ``LastModified`` to the second, so runs of one second tie and
    only their run.json (read by the caller) orders them."""
    written = {key: _last_written(objects) for key, objects in grouped.items()}
    order = sorted(written, key=written.__getitem__, reverse=True)
    if limit <= 0 or len(order) <= limit:
        return order[: max(limit, 0)]
    boundary = written[order[limit - 1]]
    return [key for key in order if written[key] >= boundary]


def run_record(remote: Remote, run_key: str) -> RunRecord:
    """One run (:class:`ConfigurationError` for a bad key, :class:`StoreError` if absent)."""
    check_run_key(run_key)
    artifacts = remote.artifacts
    prefix = artifacts.runs_prefix(run_key)
    bucket = remote.require_bucket()
    objects = list_objects(remote.client("s3"), bucket, prefix)
    if not objects:
        raise StoreError(f"{s3_uri(bucket, prefix)}: no run archived under this key")
    return _record(remote, run_key, objects, published=artifacts.read_last().run_key)


def state_diff(remote: Remote, run: RunRecord) -> StateDiff:
    """``run``'s state against the one of the run archived before it that has a state
    (one LIST of the stack, two GETs; plus one GET of run.json per run written in a second
    shared with another: S3 lists ``LastModified`` to the second, and run.json's start
    time orders the runs of one second)."""
    if run.state_bytes is None:
        return StateDiff(previous_run=None, note="this run archived no state")
    grouped = _archived_objects(remote.client("s3"), remote.require_bucket(), remote.stack)
    mine = grouped.get(run.run_key, {})
    written = _last_written(mine) if mine else run.archived_at
    candidates = {
        key: _last_written(objects)
        for key, objects in grouped.items()
        if key != run.run_key and STATE_NAME in objects and _last_written(objects) <= written
    }
    shared = collections.Counter([*candidates.values(), written])

    def started(key: str) -> str:
        return _text((_read_summary(remote, key) or {}).get("started_at")) or ""

    ranked = [(at, started(key) if shared[at] > 1 else "", key) for key, at in candidates.items()]
    earlier = [rank for rank in ranked if rank[0] < written or "" < rank[1] < run.sort_time]
    if not earlier:
        return StateDiff(previous_run=None, note="no earlier run archived a state")
    previous_key = max(earlier)[2]
    previous = RunRecord(
        run_key=previous_key,
        status="",
        files=(ArchivedFile(STATE_NAME, grouped[previous_key][STATE_NAME].size),),
    )
    sizes = (run.state_bytes, previous.state_bytes or 0)
    if max(sizes) > DIFF_LIMIT:
        return StateDiff(previous.run_key, note=f"a state is over {DIFF_LIMIT} bytes: not diffed")
    try:
        new = read_artifact(remote, run.run_key, STATE_NAME).decode("utf-8")
        old = read_artifact(remote, previous.run_key, STATE_NAME).decode("utf-8")
    except UnicodeDecodeError:
        return StateDiff(previous.run_key, note="a state is not UTF-8 text: not diffed")
    if new == old:
        return StateDiff(previous.run_key, note="unchanged")
    lines = difflib.unified_diff(
        old.splitlines(),
        new.splitlines(),
        fromfile=f"{previous.run_key}/state",
        tofile=f"{run.run_key}/state",
        lineterm="",
    )
    shown = tuple(itertools.islice(lines, DIFF_LINES))
    return StateDiff(previous.run_key, lines=shown)


def artifact_key(remote: Remote, run_key: str, name: str) -> str:
    """The S3 key of the archived file ``name`` of ``run_key`` (checked: one run, no
    ``..``, never the completion manifest)."""
    check_run_key(run_key)
    parts = name.split("/")
    if not name or name == MANIFEST_NAME or any(p in ("", ".", "..") for p in parts):
        raise ConfigurationError(f"{name!r}: not an archived file name")
    return remote.artifacts.runs_prefix(run_key) + name


def open_artifact(remote: Remote, run_key: str, name: str) -> tuple[Iterator[bytes], int]:
    """Stream the archived file ``name`` of ``run_key``: (chunks, size)."""
    bucket = remote.require_bucket()
    key = artifact_key(remote, run_key, name)
    client = remote.client("s3")
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in {"NoSuchKey", "404"}:
            raise StoreError(f"{s3_uri(bucket, key)}: no such archived file") from None
        with aws_errors("read", s3_uri(bucket, key), service="s3"):
            raise
    body = response["Body"]
    return body.iter_chunks(64 * 1024), int(response.get("ContentLength", 0))


def read_artifact(remote: Remote, run_key: str, name: str) -> bytes:
    chunks, _ = open_artifact(remote, run_key, name)
    return b"".join(chunks)


# --------------------------------------------------------------------------- internals


def _archived_objects(client: Any, bucket: str, stack: str) -> dict[str, dict[str, RemoteObject]]:
    """Every archived object of the stack, grouped by run key."""
    grouped: dict[str, dict[str, RemoteObject]] = {}
    for rel, obj in list_objects(client, bucket, layout.runs_root(stack)).items():
        run_key, _, name = rel.partition("/")
        if name:
            grouped.setdefault(run_key, {})[name] = obj
    return grouped


def _last_written(objects: dict[str, RemoteObject]) -> str:
    return max(obj.last_modified for obj in objects.values())


def _record(
    remote: Remote, run_key: str, objects: dict[str, RemoteObject], *, published: str | None
) -> RunRecord:
    summary = _read_summary(remote, run_key) if RUN_RECORD_NAME in objects else None
    manifest = (
        remote.artifacts.read_manifest(remote.artifacts.runs_prefix(run_key))
        if MANIFEST_NAME in objects
        else None
    )
    if manifest is not None:
        files = tuple(
            ArchivedFile(name, int(info["size"])) for name, info in manifest["files"].items()
        )
    else:  # archiving broke off: show what is there
        files = tuple(
            ArchivedFile(name, obj.size)
            for name, obj in sorted(objects.items())
            if name != MANIFEST_NAME
        )
    summary = summary or {}
    status = summary.get("status") or (manifest or {}).get("status") or "incomplete"
    return RunRecord(
        run_key=run_key,
        status=str(status),
        started_at=_text(summary.get("started_at")),
        ended_at=_text(summary.get("ended_at")),
        seconds=_number(summary.get("seconds")),
        data_interval=_mapping(summary.get("data_interval")),
        origin=_mapping(summary.get("origin")),
        error=_text(summary.get("error")),
        stages=tuple(_stages(summary)),
        files=files,
        complete=manifest is not None,
        published=run_key == published,
        archived_at=_last_written(objects),
    )


def _read_summary(remote: Remote, run_key: str) -> dict[str, Any] | None:
    """The archived ``run.json``; None when it is not a JSON object (a reader must not
    fail on one bad archive)."""
    try:
        data = json.loads(read_artifact(remote, run_key, RUN_RECORD_NAME))
    except (ValueError, StoreError):
        return None
    return data if isinstance(data, dict) else None


def _stages(summary: dict[str, Any]) -> Iterator[StageBytes]:
    for task in summary.get("tasks") or []:
        if not isinstance(task, dict):
            continue
        for stage in task.get("stages") or []:
            if not isinstance(stage, dict):
                continue
            yield StageBytes(
                task=str(task.get("name", "")),
                index=int(stage.get("index", 0) or 0),
                command=str(stage.get("command", "")),
                status=str(stage.get("status", "")),
                exit_code=_int(stage.get("exit_code")),
                bytes_out=_int(stage.get("bytes_out")),
            )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _mapping(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None
