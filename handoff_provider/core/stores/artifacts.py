"""The artifacts store: ``<stack>/runs/<run-key>/`` for every run, ``<stack>/last/`` for the
last successful one.

S3 has no multi-object transaction, so ``last/`` is replaced in an order that lets a reader
tell a complete copy from one in progress:

1. ``WORKSPACE/artifacts/`` is uploaded to ``runs/<run-key>/`` (every run, failed ones too:
   ``run.json`` says how it went), then ``runs/<run-key>/_HANDOFF_COMPLETE`` is written;
2. only if the run succeeded and step 1 completed: every file is copied server-side to
   ``last/`` (no re-upload), ``last/`` keys of the previous run that the new one doesn't
   have are deleted, and ``last/_HANDOFF_COMPLETE`` is written last. Its ``PUT`` is the
   atomic switch from one run to the next.

``last/`` is a real copy because users (and the original handoff docs) look for the files
there. Readers (:meth:`ArtifactsStore.get_last`, :meth:`ArtifactsStore.restore_state`)
never list ``last/``: they read the manifest (run key, file names, sizes, SHA-256s) and
fetch those files from the immutable ``runs/<run-key>/`` (falling back to ``last/`` if the
run was expired by a lifecycle rule), verifying every hash. So a reader never sees a mix
of two runs, even while another run is replacing ``last/`` or after a replacement failed
midway (the manifest still names the previous complete run).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from handoff_provider.core.errors import ConfigurationError, StoreError
from handoff_provider.core.run_key import check_run_key
from handoff_provider.core.stores._aws import aws_errors, error_code, s3_uri
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

#: The completion manifest, in ``runs/<key>/`` and ``last/``; never an artifact name.
MANIFEST_NAME = "_HANDOFF_COMPLETE"
#: The run's own record (written by the runner) in artifacts/.
RUN_SUMMARY_NAME = "run.json"
#: Key of run.json listing what the archive had to leave out.
SKIPPED_KEY = "archive_skipped"
STATE_NAME = "state"


@dataclass(frozen=True)
class ArtifactsLocation:
    """Where a run's artifacts went; ``last_uri`` is None when last/ was not replaced."""

    run_key: str
    runs_uri: str
    last_uri: str | None
    files: int = 0
    bytes: int = 0
    #: Entries of artifacts/ that could not be archived (special files, loops, links
    #: out, bad names), one line each; also recorded in the archived run.json.
    skipped: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_key": self.run_key,
            "runs_uri": self.runs_uri,
            "last_uri": self.last_uri,
            "files": self.files,
            "bytes": self.bytes,
            "skipped": list(self.skipped),
        }

    def __str__(self) -> str:
        last = f"last/ replaced: {self.last_uri}" if self.last_uri else "last/ left unchanged"
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
        self.last_prefix = f"{stack}/last/"

    def runs_prefix(self, run_key: str) -> str:
        return f"{self.stack}/runs/{check_run_key(run_key)}/"

    @property
    def last_uri(self) -> str:
        return s3_uri(self.bucket, self.last_prefix)

    # ------------------------------------------------------------------------ push

    def push(self, artifacts_dir: Path, run_key: str, *, succeeded: bool) -> ArtifactsLocation:
        """Archive ``artifacts_dir`` to ``runs/<run_key>/``; replace ``last/`` if succeeded."""
        prefix = self.runs_prefix(run_key)
        skipped: list[str] = []
        local = local_files(Path(artifacts_dir), outside_links="skip", problems=skipped)
        if skipped and RUN_SUMMARY_NAME in local:
            _record_skipped(local[RUN_SUMMARY_NAME], skipped)
        if MANIFEST_NAME in local:
            raise StoreError(
                f"{local[MANIFEST_NAME]}: {MANIFEST_NAME} is reserved for the completion "
                "manifest; rename the artifact"
            )
        digests = {rel: digest_file(path) for rel, path in local.items()}
        client = self._client()
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
        manifest = {
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
        self._put_manifest(client, prefix, manifest)
        total = sum(d.size for d in digests.values())
        last_uri = None
        if succeeded:
            self._publish_last(client, prefix, manifest, stored)
            last_uri = self.last_uri
        return ArtifactsLocation(
            run_key=run_key,
            runs_uri=s3_uri(self.bucket, prefix),
            last_uri=last_uri,
            files=len(local),
            bytes=total,
            skipped=tuple(skipped),
        )

    def _publish_last(
        self,
        client: Any,
        runs_prefix: str,
        manifest: dict[str, Any],
        stored: dict[str, RemoteObject],
    ) -> None:
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
        self._put_manifest(client, self.last_prefix, manifest)

    def _put_manifest(self, client: Any, prefix: str, manifest: dict[str, Any]) -> None:
        key = prefix + MANIFEST_NAME
        with aws_errors("write", s3_uri(self.bucket, key), service="s3"):
            client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"),
                ContentType="application/json",
            )

    def _delete_manifest(self, client: Any, prefix: str) -> None:
        key = prefix + MANIFEST_NAME
        with aws_errors("delete", s3_uri(self.bucket, key), service="s3"):
            client.delete_object(Bucket=self.bucket, Key=key)

    # ----------------------------------------------------------------------- read

    def read_manifest(self, prefix: str | None = None) -> dict[str, Any] | None:
        """The completion manifest of ``last/`` (or of ``prefix``); None when absent."""
        key = (prefix or self.last_prefix) + MANIFEST_NAME
        client = self._client()
        try:
            body = client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if error_code(exc) in {"NoSuchKey", "404"}:
                return None
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
        return manifest

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

    def restore_state(self, state_path: Path) -> bool:
        """Restore ``last/state`` of the last successful run into ``state_path``.

        Returns False (and leaves ``state_path`` alone) when no successful run was archived
        or that run had no state file.
        """
        manifest = self.read_manifest()
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
    tmp = run_json.with_name(f".{run_json.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, run_json)
    except OSError:
        tmp.unlink(missing_ok=True)
