"""The artifacts store: ``<stack>/runs/<run-key>/`` for every run, ``<stack>/last/`` for the
last published one.

S3 has no multi-object transaction. ``last/`` is published from the immutable run prefix,
with the manifest switched **first** and conditionally, so that the switch is the one
atomic step and everything after it can be finished by anyone:

1. ``WORKSPACE/artifacts/`` is uploaded to ``runs/<run-key>/`` (every run, failed ones too:
   ``run.json`` says how it went), then ``runs/<run-key>/_HANDOFF_COMPLETE`` is written.
   From then on ``runs/<run-key>/`` is never changed (a re-push under the same key aside).
2. Only if the run is to be published (it succeeded, or it kept a partial state, see
   ``state_on_failure``): the **switch**, one ``PutObject`` of ``last/_HANDOFF_COMPLETE``
   naming the new run with ``"last_sync": "pending"``, conditional on the manifest's ETag
   being the one this run restored (``If-Match``; ``If-None-Match: *`` when there was
   none). A refused condition is a :class:`PublishConflict`: another run published
   meanwhile; nothing of ``last/`` was touched, ``runs/<run-key>/`` is kept.
3. The **sync**: ``last/`` objects are made equal to the manifest (server-side copies from
   ``runs/<run-key>/``, keys the manifest doesn't name deleted), then the manifest is
   rewritten with ``"last_sync": "complete"`` (``If-Match`` on the switch's ETag).

Readers (:meth:`ArtifactsStore.get_last`, :meth:`ArtifactsStore.restore_state`, an Asset
consumer that uses them) never list ``last/``: they read the manifest and fetch its files
from ``runs/<run-key>/`` (falling back to ``last/`` if the run was expired by a lifecycle
rule), verifying every SHA-256, so they never see a mix. A raw listing of ``last/`` is
exactly the manifest's files whenever its ``last_sync`` is ``complete``. A publish that
broke off in step 3 (crash, S3 error) leaves ``pending``; :meth:`ArtifactsStore.repair_last`
(run by the next run before it restores state, and by ``handoff artifacts repair``)
finishes it. Stale keys are only ever removed by the holder of the stack lease
(``stores/lease.py``), so two syncs never interleave.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from handoff_provider.core import layout
from handoff_provider.core.atomic_files import READABLE, replace_file
from handoff_provider.core.aws.errors import aws_errors, error_code
from handoff_provider.core.errors import ConfigurationError, PublishConflict, StoreError
from handoff_provider.core.layout import MANIFEST_NAME, RUN_RECORD_NAME, STATE_NAME, s3_uri
from handoff_provider.core.model.run_key import check_run_key
from handoff_provider.core.stores.conditional import enable_conditional_put, is_condition_failure
from handoff_provider.core.stores.s3sync import (
    META_MODE,
    META_SHA256,
    RemoteObject,
    Stopwatch,
    SyncResult,
    Transfer,
    delete_keys,
    digest_file,
    list_objects,
    local_files,
    local_mode,
    run_transfers,
    safe_relative_key,
    sha256_file,
    upload_extra_args,
)

log = logging.getLogger(__name__)

#: Key of run.json listing what the archive had to leave out.
SKIPPED_KEY = "archive_skipped"


class _Unconditional:
    """Marker: an unconditional write (the immutable ``runs/<key>/`` manifest)."""


_UNCONDITIONAL = _Unconditional()


@dataclass(frozen=True)
class LastRef:
    """``last/``'s manifest as read, with its ETag (None/None: nothing published yet).

    A run keeps the one it restored its state from; the publish is conditional on it."""

    manifest: dict[str, Any] | None
    etag: str | None

    @property
    def run_key(self) -> str | None:
        return self.manifest["run_key"] if self.manifest else None

    @property
    def synced(self) -> bool:
        """Whether ``last/`` objects are known to equal the manifest (see step 3)."""
        return self.manifest is None or self.manifest.get("last_sync", "complete") == "complete"


@dataclass(frozen=True)
class RepairResult:
    """What :meth:`ArtifactsStore.repair_last` did."""

    last: LastRef
    repaired: bool
    copied: int = 0
    deleted: int = 0

    def __str__(self) -> str:
        if self.last.manifest is None:
            return "nothing published yet"
        if not self.repaired:
            return f"consistent (run {self.last.run_key})"
        return (
            f"finished the interrupted publish of run {self.last.run_key}: "
            f"{self.copied} file(s) copied, {self.deleted} stale key(s) deleted"
        )


@dataclass(frozen=True)
class ArtifactsLocation:
    """Where a run's artifacts went; ``last_uri`` is None when last/ was not replaced.

    ``last_pending`` says why the copy into ``last/`` is unfinished although the run was
    published (the next run, or ``handoff artifacts repair``, finishes it)."""

    run_key: str
    runs_uri: str
    last_uri: str | None
    files: int = 0
    bytes: int = 0
    #: Entries of artifacts/ that could not be archived (special files, loops, links
    #: out, bad names), one line each; also recorded in the archived run.json.
    skipped: tuple[str, ...] = ()
    last_pending: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_key": self.run_key,
            "runs_uri": self.runs_uri,
            "last_uri": self.last_uri,
            "files": self.files,
            "bytes": self.bytes,
            "skipped": list(self.skipped),
            "last_pending": self.last_pending,
        }

    def __str__(self) -> str:
        last = f"last/ replaced: {self.last_uri}" if self.last_uri else "last/ left unchanged"
        if self.last_pending:
            last += (
                f" (copying its files into last/ broke off: {self.last_pending}; the next run "
                "or `handoff artifacts repair` finishes it)"
            )
        text = f"{self.runs_uri} ({self.files} files, {self.bytes} bytes); {last}"
        if self.skipped:
            text += f"; {len(self.skipped)} entries not archived (see run.json)"
        return text


class ArtifactsStore:
    """``s3://<bucket>/<stack>/runs/`` and ``last/``; see the module docstring."""

    def __init__(self, get_client: Callable[[], Any], bucket: str, stack: str) -> None:
        self._client = get_client
        self.bucket = bucket
        self.stack = stack
        self.last_prefix = layout.last_prefix(stack)

    def runs_prefix(self, run_key: str) -> str:
        return layout.runs_prefix(self.stack, run_key)

    @property
    def last_uri(self) -> str:
        return s3_uri(self.bucket, self.last_prefix)

    @property
    def manifest_uri(self) -> str:
        return s3_uri(self.bucket, self.last_prefix + MANIFEST_NAME)

    # ------------------------------------------------------------------------ push

    def push(
        self,
        artifacts_dir: Path,
        run_key: str,
        *,
        succeeded: bool,
        publish: bool | None = None,
        base: LastRef | None = None,
        before_publish: Callable[[], None] | None = None,
    ) -> ArtifactsLocation:
        """Archive ``artifacts_dir`` to ``runs/<run_key>/``, then publish it to ``last/``
        when ``publish`` (default: ``succeeded``).

        ``base`` is the ``last/`` this run restored (:meth:`read_last`); the switch is
        conditional on it (default: ``last/`` as it is just before the switch).
        ``before_publish`` runs right before the switch (the lease's final renewal).
        Raises :class:`PublishConflict` when ``last/`` changed since ``base``.
        """
        prefix = self.runs_prefix(run_key)
        skipped: list[str] = []
        local = local_files(Path(artifacts_dir), outside_links="skip", problems=skipped)
        if skipped and RUN_RECORD_NAME in local:
            _record_skipped(local[RUN_RECORD_NAME], skipped)
        if MANIFEST_NAME in local:
            raise StoreError(
                f"{local[MANIFEST_NAME]}: {MANIFEST_NAME} is reserved for the completion "
                "manifest; rename the artifact"
            )
        digests = {rel: digest_file(path) for rel, path in local.items()}
        client = self._client()
        stored = self._upload_run(client, prefix, local, digests)
        manifest = _manifest(run_key, succeeded, local, digests)
        self._put_manifest(client, prefix, manifest)
        total = sum(d.size for d in digests.values())
        last_uri = None
        pending = None
        if succeeded if publish is None else publish:
            pending = self._publish_last(client, manifest, stored, base, before_publish)
            last_uri = self.last_uri
        return ArtifactsLocation(
            run_key=run_key,
            runs_uri=s3_uri(self.bucket, prefix),
            last_uri=last_uri,
            files=len(local),
            bytes=total,
            skipped=tuple(skipped),
            last_pending=pending,
        )

    def _upload_run(
        self, client: Any, prefix: str, local: Mapping[str, Path], digests: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Make ``runs/<key>/`` hold exactly ``local`` (unchanged objects are kept, others
        uploaded or deleted; an old manifest goes first); returns the listing after, having
        checked every file arrived whole."""
        # A re-push under the same run key (a retried task) replaces what was there.
        existing = list_objects(client, self.bucket, prefix)
        existing.pop(MANIFEST_NAME, None)
        uploads = [
            Transfer(
                kind="upload",
                key=prefix + rel,
                path=path,
                extra_args=upload_extra_args(path, digests[rel].sha256),
            )
            for rel, path in local.items()
            if not (
                rel in existing
                and existing[rel].size == digests[rel].size
                and existing[rel].etag == digests[rel].etag
            )
        ]
        if existing:
            # The old manifest must not vouch for a half-replaced run.
            self._delete_manifest(client, prefix)
        run_transfers(client, self.bucket, uploads)
        delete_keys(client, self.bucket, [o.key for rel, o in existing.items() if rel not in local])

        stored = list_objects(client, self.bucket, prefix)
        for rel, digest in digests.items():
            if rel not in stored or stored[rel].size != digest.size:
                raise StoreError(f"upload to {s3_uri(self.bucket, prefix + rel)} did not complete")
        return stored

    def _publish_last(
        self,
        client: Any,
        manifest: dict[str, Any],
        stored: dict[str, RemoteObject],
        base: LastRef | None,
        before_publish: Callable[[], None] | None,
    ) -> str | None:
        """Steps 2 and 3 of the module docstring; returns why the sync is unfinished
        (None when ``last/`` is complete)."""
        if base is None:
            base = self.read_last()
        if before_publish is not None:
            before_publish()
        etag = self._switch(client, {**manifest, **_history(base), "last_sync": "pending"}, base)
        try:
            self._sync_last(client, manifest, stored)
            complete = {**manifest, **_history(base), "last_sync": "complete"}
            self._put_manifest(client, self.last_prefix, complete, if_match=etag)
        except PublishConflict:
            raise
        except StoreError as exc:
            log.warning(
                "%s: copying run %s into last/ broke off: %s",
                self.last_uri,
                manifest["run_key"],
                exc,
            )
            return str(exc)
        return None

    def publish_run(
        self, run_key: str, *, base: LastRef, before_publish: Callable[[], None] | None = None
    ) -> ArtifactsLocation:
        """Publish the archived run ``run_key`` again (``handoff state rollback``)."""
        prefix = self.runs_prefix(run_key)
        manifest = self._read_manifest(prefix).manifest
        if manifest is None:
            raise ConfigurationError(
                f"run {run_key}: {s3_uri(self.bucket, prefix)} holds no complete run "
                f"({MANIFEST_NAME} is missing)"
            )
        client = self._client()
        stored = list_objects(client, self.bucket, prefix)
        if not _has_all(stored, manifest["files"], list(manifest["files"])):
            raise StoreError(
                f"run {run_key}: {s3_uri(self.bucket, prefix)} lacks some of its files"
            )
        manifest = {k: v for k, v in manifest.items() if k not in ("history", "last_sync")}
        pending = self._publish_last(client, manifest, stored, base, before_publish)
        files = manifest["files"]
        return ArtifactsLocation(
            run_key=run_key,
            runs_uri=s3_uri(self.bucket, prefix),
            last_uri=self.last_uri,
            files=len(files),
            bytes=sum(int(info["size"]) for info in files.values()),
            last_pending=pending,
        )

    def _switch(self, client: Any, manifest: dict[str, Any], base: LastRef) -> str:
        """The conditional manifest write that publishes a run; returns its ETag."""
        try:
            return self._put_manifest(client, self.last_prefix, manifest, if_match=base.etag)
        except PublishConflict:
            now = self.read_last().run_key
            expected = f"run {base.run_key}" if base.run_key else "nothing published"
            raise PublishConflict(
                f"{self.manifest_uri} changed since this run read it (expected {expected}, "
                f"now {'run ' + now if now else 'nothing published'}): another run published "
                f"meanwhile; run {manifest['run_key']} is kept in "
                f"{s3_uri(self.bucket, self.runs_prefix(manifest['run_key']))}, last/ untouched"
            ) from None

    def _sync_last(
        self, client: Any, manifest: dict[str, Any], stored: dict[str, RemoteObject]
    ) -> tuple[int, int]:
        """Make ``last/`` objects equal to ``manifest`` (copies from ``runs/<key>/``, stale
        keys deleted); returns (copied, deleted)."""
        files: dict[str, dict[str, Any]] = manifest["files"]
        current = list_objects(client, self.bucket, self.last_prefix)
        copies = []
        for rel, info in files.items():
            source = stored[rel]
            target = current.get(rel)
            if target and target.size == source.size and target.etag == source.etag:
                continue  # same content already (ETags equal for equal single-part content)
            copies.append(
                Transfer(
                    kind="copy",
                    key=self.last_prefix + rel,
                    source_key=source.key,
                    size=source.size,
                    etag=source.etag,
                    extra_args={
                        "Metadata": {META_SHA256: info["sha256"], META_MODE: info["mode"]},
                        "MetadataDirective": "REPLACE",
                    },
                )
            )
        run_transfers(client, self.bucket, copies)
        stale = [o.key for rel, o in current.items() if rel not in files and rel != MANIFEST_NAME]
        delete_keys(client, self.bucket, stale)
        return len(copies), len(stale)

    def repair_last(self) -> RepairResult:
        """Finish a publish that broke off after its switch (run under the stack lease)."""
        last = self.read_last()
        if last.synced:
            return RepairResult(last=last, repaired=False)
        assert last.manifest is not None and last.run_key is not None
        client = self._client()
        prefix = self.runs_prefix(last.run_key)
        stored = list_objects(client, self.bucket, prefix)
        if not _has_all(stored, last.manifest["files"], list(last.manifest["files"])):
            raise StoreError(
                f"cannot repair {self.last_uri}: {self.manifest_uri} names run {last.run_key} "
                f"but {s3_uri(self.bucket, prefix)} no longer holds all its files"
            )
        copied, deleted = self._sync_last(client, last.manifest, stored)
        complete = {**last.manifest, "last_sync": "complete"}
        etag = self._put_manifest(client, self.last_prefix, complete, if_match=last.etag)
        return RepairResult(
            last=LastRef(manifest=complete, etag=etag),
            repaired=True,
            copied=copied,
            deleted=deleted,
        )

    def _put_manifest(
        self,
        client: Any,
        prefix: str,
        manifest: dict[str, Any],
        *,
        if_match: str | _Unconditional | None = _UNCONDITIONAL,
    ) -> str:
        """Write a manifest; with ``if_match`` (an ETag, or None for "must not exist") the
        write is conditional and a refused condition raises :class:`PublishConflict`."""
        key = prefix + MANIFEST_NAME
        condition: dict[str, str] = {}
        if not isinstance(if_match, _Unconditional):
            condition = {"IfMatch": if_match} if if_match else {"IfNoneMatch": "*"}
            client = enable_conditional_put(client)
        try:
            response = client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"),
                ContentType="application/json",
                **condition,
            )
        except Exception as exc:
            if condition and is_condition_failure(exc):
                raise PublishConflict(f"{s3_uri(self.bucket, key)} changed meanwhile") from None
            with aws_errors("write", s3_uri(self.bucket, key), service="s3"):
                raise
        return str(response["ETag"])

    def _delete_manifest(self, client: Any, prefix: str) -> None:
        key = prefix + MANIFEST_NAME
        with aws_errors("delete", s3_uri(self.bucket, key), service="s3"):
            client.delete_object(Bucket=self.bucket, Key=key)

    # ----------------------------------------------------------------------- read

    def read_manifest(self, prefix: str | None = None) -> dict[str, Any] | None:
        """The completion manifest of ``last/`` (or of ``prefix``); None when absent."""
        return self._read_manifest(prefix or self.last_prefix).manifest

    def read_last(self) -> LastRef:
        """``last/``'s manifest and its ETag (the base of a conditional publish)."""
        return self._read_manifest(self.last_prefix)

    def _read_manifest(self, prefix: str) -> LastRef:
        key = prefix + MANIFEST_NAME
        client = self._client()
        try:
            response = client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"].read()
        except Exception as exc:
            if error_code(exc) in {"NoSuchKey", "404"}:
                return LastRef(manifest=None, etag=None)
            with aws_errors("read", s3_uri(self.bucket, key), service="s3"):
                raise
        try:
            manifest = json.loads(body)
            files = manifest["files"]
            check_run_key(manifest["run_key"])
            if not isinstance(files, dict):
                raise TypeError
            for rel, info in files.items():
                safe_relative_key(rel, full_key=self.last_prefix + rel)
                int(info["size"])
                if not re.fullmatch(r"[0-9a-f]{64}", str(info["sha256"])):
                    raise ValueError
        except (ValueError, KeyError, TypeError, ConfigurationError):
            raise StoreError(
                f"{s3_uri(self.bucket, key)} is not a valid completion manifest"
            ) from None
        return LastRef(manifest=manifest, etag=str(response["ETag"]))

    def get_last(self, dest_dir: Path) -> SyncResult:
        """Download the last successful run's artifacts into ``dest_dir`` (verified)."""
        clock = Stopwatch()
        manifest = self.read_manifest()
        if manifest is None:
            raise StoreError(
                f"no successful run archived under {self.last_uri} yet "
                f"({self.last_prefix}{MANIFEST_NAME} is missing)"
            )
        files = manifest["files"]
        self._fetch_verified(manifest, list(files), Path(dest_dir))
        return SyncResult(
            source=f"{self.last_uri} (run {manifest['run_key']})",
            target=str(dest_dir),
            direction="get",
            downloaded=sorted(files),
            bytes_transferred=sum(int(info["size"]) for info in files.values()),
            seconds=clock.elapsed(),
        )

    def restore_state(self, state_path: Path, last: LastRef | None = None) -> bool:
        """Restore ``last/state`` of the last published run into ``state_path``.

        ``last``: the manifest already read (:meth:`read_last`), else it is read here.
        Returns False (and leaves ``state_path`` alone) when no run was published or that
        run had no state file.
        """
        manifest = (last or self.read_last()).manifest
        if manifest is None:
            self._warn_unmanaged_state()
            return False
        if STATE_NAME not in manifest["files"]:
            return False
        state_path = Path(state_path)
        self._fetch_verified(
            manifest, [STATE_NAME], state_path.parent, rename={STATE_NAME: state_path.name}
        )
        return True

    def _warn_unmanaged_state(self) -> None:
        key = self.last_prefix + STATE_NAME
        client = self._client()
        try:
            client.head_object(Bucket=self.bucket, Key=key)
        except Exception:
            return
        log.warning(
            "%s exists but %s has no completion manifest (written by another tool, or the "
            "first publish was interrupted): not restored",
            s3_uri(self.bucket, key),
            self.last_uri,
        )

    def _fetch_verified(
        self,
        manifest: dict[str, Any],
        names: list[str],
        dest_dir: Path,
        *,
        rename: dict[str, str] | None = None,
    ) -> None:
        """Download ``names`` of a manifest from ``runs/<key>/`` (else ``last/``), check every
        SHA-256 in a staging directory, then move them into place."""
        files = manifest["files"]
        client = self._client()
        runs_prefix = self.runs_prefix(manifest["run_key"])
        source_prefix = runs_prefix
        available = list_objects(client, self.bucket, runs_prefix)
        if not _has_all(available, files, names):
            # runs/<key>/ expired (lifecycle rule?): last/ holds a copy.
            source_prefix = self.last_prefix
            available = list_objects(client, self.bucket, source_prefix)
            if not _has_all(available, files, names):
                raise StoreError(
                    f"files of run {manifest['run_key']} named by {self.last_uri}{MANIFEST_NAME} "
                    f"are missing from both {s3_uri(self.bucket, runs_prefix)} and {self.last_uri}"
                )
        dest_dir.mkdir(parents=True, exist_ok=True)
        # Staged beside dest_dir (same filesystem: atomic rename; never inside artifacts/,
        # which a later push would archive if we were killed here).
        staging = Path(tempfile.mkdtemp(prefix=".handoff-get-", dir=dest_dir.resolve().parent))
        try:
            run_transfers(
                client,
                self.bucket,
                [
                    Transfer(
                        kind="download",
                        key=source_prefix + name,
                        path=staging / name,
                        size=available[name].size,
                        etag=available[name].etag,
                    )
                    for name in names
                ],
            )
            for name in names:
                if sha256_file(staging / name) != files[name]["sha256"]:
                    raise StoreError(
                        f"{s3_uri(self.bucket, source_prefix + name)} does not match the "
                        f"SHA-256 in {self.last_uri}{MANIFEST_NAME} (replaced meanwhile?); retry"
                    )
            for name in names:
                target = dest_dir / (rename or {}).get(name, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(staging / name, local_mode(files[name].get("mode")))
                os.replace(staging / name, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


#: How many earlier published runs the ``last/`` manifest remembers (``state list``).
HISTORY_LENGTH = 100


def _history(base: LastRef) -> dict[str, list[str]]:
    """The ``history`` of a new ``last/`` manifest: the runs published before it, newest
    first (the one it replaces, then that one's history)."""
    if base.manifest is None:
        return {"history": []}
    earlier = [str(key) for key in base.manifest.get("history", []) if isinstance(key, str)]
    return {"history": [str(base.run_key), *earlier][:HISTORY_LENGTH]}


def _has_all(available: dict[str, RemoteObject], files: dict[str, Any], names: list[str]) -> bool:
    return all(
        name in available and available[name].size == int(files[name]["size"]) for name in names
    )


def _record_skipped(run_json: Path, skipped: list[str]) -> None:
    """Add the entries the archive left out to ``run.json`` (when it is a JSON object)."""
    try:
        data = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(data, dict):
        return
    data[SKIPPED_KEY] = skipped
    with contextlib.suppress(OSError):  # the record stays as the run wrote it
        replace_file(run_json, (json.dumps(data, indent=2) + "\n").encode(), mode=READABLE)


def _manifest(
    run_key: str, succeeded: bool, local: Mapping[str, Path], digests: Mapping[str, Any]
) -> dict[str, Any]:
    """The completion manifest of a run's archive (what ``last/`` is published from)."""
    return {
        "format": 1,
        "run_key": run_key,
        "status": "success" if succeeded else "failed",
        "completed_at": datetime.now(timezone.utc).isoformat(),
        "files": {
            rel: {
                "size": digests[rel].size,
                "sha256": digests[rel].sha256,
                "mode": f"{os.stat(local[rel]).st_mode & 0o777:o}",
            }
            for rel in sorted(local)
        },
    }
