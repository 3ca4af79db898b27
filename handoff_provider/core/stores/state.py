"""Operating a stack's state: ``handoff state get|set|clear|list|rollback``.

The state is ``last/state`` of the last published run (``stores/artifacts.py``). Changing
it means publishing a run, so every change goes through the same conditional publish as a
run, under the stack lease (it waits for a running run, and a run waits for it):

* ``set`` / ``clear`` archive a small run of their own, ``runs/<key>.state-set/`` (or
  ``.state-clear``) holding ``state`` (not for clear) and ``state-operation.json`` (what was
  done, and which run was published before), and publish it;
* ``rollback --to RUN_KEY`` publishes the archived run ``RUN_KEY`` again (it must be
  complete and hold a state); its other artifacts come back to ``last/`` with it;
* ``get`` and ``list`` only read (through the manifest, like every reader: they never see
  a publish in progress), so they don't take the lease and work while a run holds it.

``lock=False`` (``--no-lock``, unsafe, e.g. to fix the state while a hung run still renews
its lease): no lease, only the conditional publish. A run in flight then fails its own
publish as a conflict (its ``runs/<key>/`` kept), or, if it publishes first, this change
fails as one; the raw keys under ``last/`` may be a mix until the next publish.

``list`` shows the runs that published state, newest first: the current one, then the
``history`` the ``last/`` manifest carries (up to ``HISTORY_LENGTH`` runs).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handoff_provider.core.errors import ConfigurationError
from handoff_provider.core.layout import STATE_NAME
from handoff_provider.core.model.callbacks import LogFn
from handoff_provider.core.model.run_key import check_run_key, new_run_key

if TYPE_CHECKING:
    from handoff_provider.core.stores import ArtifactsLocation, Remote

OPERATION_FILE = "state-operation.json"


@dataclass(frozen=True)
class PublishedRun:
    """One row of ``handoff state list``."""

    run_key: str
    current: bool
    completed_at: str | None
    status: str | None
    state_bytes: int | None  # None: the run has no state file

    def line(self) -> str:
        mark = "*" if self.current else " "
        state = "no state" if self.state_bytes is None else f"state {self.state_bytes} bytes"
        if self.status is None:
            return f"{mark} {self.run_key}  (archive expired or removed)"
        return f"{mark} {self.run_key}  {self.completed_at}  {self.status}  {state}"


@dataclass(frozen=True)
class StateChange:
    """What a state operation published, and what ``last/`` held before."""

    what: str
    location: ArtifactsLocation
    previous_run: str | None

    def __str__(self) -> str:
        was = f"run {self.previous_run}" if self.previous_run else "nothing published"
        line = f"state {self.what}: last/ now holds run {self.location.run_key} (was {was})"
        if self.location.last_pending:
            line += (
                f"; copying its files into last/ broke off ({self.location.last_pending}): "
                "`handoff artifacts repair` finishes it"
            )
        return line


def get_state(remote: Remote) -> tuple[bytes | None, str | None]:
    """(the published state, the run that published it); (None, key) when that run has no
    state, (None, None) when nothing was published."""
    artifacts = remote.artifacts
    last = artifacts.read_last()
    if last.manifest is None:
        return None, None
    with tempfile.TemporaryDirectory(prefix=".handoff-state-") as tmp:
        target = Path(tmp) / "state"
        if not artifacts.restore_state(target, last):
            return None, last.run_key
        return target.read_bytes(), last.run_key


def list_published(remote: Remote) -> list[PublishedRun]:
    """The runs that published state, newest first (see the module docstring)."""
    artifacts = remote.artifacts
    last = artifacts.read_last()
    if last.manifest is None or last.run_key is None:
        return []
    keys = [last.run_key, *[k for k in last.manifest.get("history", []) if isinstance(k, str)]]
    rows = []
    for index, key in enumerate(keys):
        manifest = (
            last.manifest if index == 0 else artifacts.read_manifest(artifacts.runs_prefix(key))
        )
        files = (manifest or {}).get("files", {})
        rows.append(
            PublishedRun(
                run_key=key,
                current=index == 0,
                completed_at=(manifest or {}).get("completed_at"),
                status=(manifest or {}).get("status"),
                state_bytes=int(files[STATE_NAME]["size"]) if STATE_NAME in files else None,
            )
        )
    return rows


def check_state_value(value: bytes, *, state_format: str, source: str) -> None:
    """A state for ``set``: UTF-8; valid JSON (each non-blank line, as Singer state files
    are JSON lines) when the project says ``state_format: json``."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigurationError(f"{source}: the state is not UTF-8 text") from None
    if state_format != "json":
        return
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ConfigurationError(f"{source}: empty state (use `handoff state clear` to drop it)")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"{source}: line {number} is not JSON ({exc.msg} at column {exc.colno}); the "
                "project says state_format: json"
            ) from None


def set_state(
    remote: Remote, value: bytes | None, *, log: LogFn, lock: bool = True, **lease_options: Any
) -> StateChange:
    """Publish ``value`` as the state (None: clear it), under the lease (unless ``lock``
    is False, see the module docstring)."""
    operation = "clear" if value is None else "set"
    run_key = new_run_key(f"{new_run_key()}.state-{operation}")
    with _lease(remote, run_key, f"state {operation}", log, lock, lease_options) as check:
        artifacts = remote.artifacts
        base = _repaired_base(remote, log)
        staging = Path(tempfile.mkdtemp(prefix=".handoff-state-"))
        try:
            if value is not None:
                (staging / STATE_NAME).write_bytes(value)
            record = {
                "operation": f"state {operation}",
                "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "previous_run": base.run_key,
            }
            (staging / OPERATION_FILE).write_text(json.dumps(record, indent=1) + "\n")
            location = artifacts.push(
                staging, run_key, succeeded=True, base=base, before_publish=check
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return StateChange(operation, location, base.run_key)


def rollback_state(
    remote: Remote, to_run_key: str, *, log: LogFn, lock: bool = True, **lease_options: Any
) -> StateChange:
    """Publish the archived run ``to_run_key`` again, under the lease (unless ``lock`` is
    False, see the module docstring)."""
    try:
        check_run_key(to_run_key)
    except ConfigurationError as exc:
        raise ConfigurationError(f"--to: {exc}") from None
    artifacts = remote.artifacts
    manifest = artifacts.read_manifest(artifacts.runs_prefix(to_run_key))
    if manifest is None:
        raise ConfigurationError(
            f"--to {to_run_key}: no complete run archived under s3://{remote.require_bucket()}/"
            f"{artifacts.runs_prefix(to_run_key)} (see `handoff state list`)"
        )
    if STATE_NAME not in manifest["files"]:
        raise ConfigurationError(f"--to {to_run_key}: that run has no state file to roll back to")
    run_key = new_run_key(f"{new_run_key()}.state-rollback")
    with _lease(remote, run_key, "state rollback", log, lock, lease_options) as check:
        base = _repaired_base(remote, log)
        location = artifacts.publish_run(to_run_key, base=base, before_publish=check)
    return StateChange(f"rollback to {to_run_key}", location, base.run_key)


@contextlib.contextmanager
def _lease(
    remote: Remote,
    run_key: str,
    operation: str,
    log: LogFn,
    lock: bool,
    lease_options: dict[str, Any],
) -> Iterator[Callable[[], None] | None]:
    """The stack lease around a state change; yields the check to run just before the
    switch of ``last/`` (None without the lease)."""
    if not lock:
        log(
            f"lease: --no-lock: NOT holding the stack lease; {operation} relies on the "
            "conditional publish alone (a run publishing meanwhile makes one of the two "
            "fail as a conflict)"
        )
        yield None
        return
    with remote.lease(run_key, operation=operation, log=log, **lease_options) as lease:
        yield lease.check


def _repaired_base(remote: Remote, log: LogFn) -> Any:
    """``last/`` after finishing an interrupted publish (we hold the lease)."""
    artifacts = remote.artifacts
    repair = artifacts.repair_last()
    if repair.repaired:
        log(f"artifacts: {artifacts.last_uri}: {repair}")
    return repair.last


__all__ = [
    "PublishedRun",
    "StateChange",
    "check_state_value",
    "get_state",
    "list_published",
    "rollback_state",
    "set_state",
]
