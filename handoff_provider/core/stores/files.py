"""The files store: ``PROJECT/files/`` mirrored to ``s3://<bucket>/<stack>/files/`` by content.

``push`` uploads only new or changed files (see :mod:`.s3sync` for how "changed" is decided
without re-reading remote content), then deletes remote objects that no longer exist
locally: uploads first, so a reader during a push never misses a file present both before
and after. ``get`` mirrors the prefix into ``WORKSPACE/files/``: changed files are
downloaded, local files absent remotely are removed. Every key is checked before anything
is written, so a key that would escape the destination aborts the get with nothing done.

Permission bits travel in ``x-amz-meta-handoff-mode`` so an executable script in
``files/`` (``command: files/collect.py``) stays executable after a get; a change of the
executable bit alone is a change (uploaded, downloaded again).

What a sync learned (local digests, objects' metadata) is kept next to the synced
directory (``PROJECT/.handoff/``, ``WORKSPACE/.handoff/``, see :mod:`.sync_cache`): a
re-sync with nothing changed lists the prefix once and hashes nothing.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from handoff_provider.core.aws.clients import MAX_CONCURRENCY
from handoff_provider.core.errors import ConfigurationError, StoreError
from handoff_provider.core.layout import s3_uri
from handoff_provider.core.stores.s3sync import (
    META_MODE,
    META_SHA256,
    Candidate,
    FileDigest,
    RemoteObject,
    Stopwatch,
    SyncResult,
    Transfer,
    UploadReceipt,
    UploadReceipts,
    cached_digest,
    cached_digests,
    delete_keys,
    digest_file,
    find_unchanged,
    head_object,
    in_background,
    is_directory_marker,
    list_objects,
    local_files,
    local_mode,
    remove_empty_dirs,
    run_transfers,
    safe_relative_key,
    upload_extra_args,
)
from handoff_provider.core.stores.sync_cache import RemoteRecord, SyncCache

log = logging.getLogger(__name__)


class FilesStore:
    """``s3://<bucket>/<stack>/files/``; see the module docstring."""

    def __init__(self, get_client: Callable[[], Any], bucket: str, prefix: str) -> None:
        self._client = get_client
        self.bucket = bucket
        self.prefix = prefix

    @property
    def uri(self) -> str:
        return s3_uri(self.bucket, self.prefix)

    def push(self, local_dir: Path) -> SyncResult:
        """Make the remote prefix an exact copy of ``local_dir`` (missing dir = empty)."""
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            if not local_dir.parent.is_dir():
                raise ConfigurationError(f"{local_dir.parent}: project directory not found")
            if local_dir.exists():
                raise ConfigurationError(f"{local_dir}: not a directory")
            log.info(
                "%s does not exist: pushing an empty files/ (remote files are removed)", local_dir
            )
        clock = Stopwatch()
        result = SyncResult(source=str(local_dir), target=self.uri)
        client = self._client()
        # S3 works on the listing while the local side is walked (a problem found
        # locally is still the error raised).
        listing = in_background(list_objects, client, self.bucket, self.prefix)
        local = local_files(local_dir)
        cache = SyncCache.for_sync(local_dir, self.uri)
        try:
            stats = {rel: path.stat() for rel, path in local.items()}
            remote = listing.result()
            # What has an object to compare with is hashed now (in parallel); the rest is
            # hashed as its upload is handed to the transfer manager, while others upload.
            digests = cached_digests(
                cache, {rel: path for rel, path in local.items() if rel in remote}, stats
            )
            candidates = (
                Candidate(rel, remote[rel], digests[rel], stats[rel].st_mode)
                for rel in local
                if rel in remote
            )
            unchanged = find_unchanged(client, self.bucket, candidates, cache)
            uploads = [rel for rel in local if rel not in unchanged]

            def upload_jobs() -> Iterator[Transfer]:
                for rel in uploads:
                    if rel not in digests:
                        digests[rel] = cached_digest(cache, rel, local[rel], stats[rel])
                    yield Transfer(
                        kind="upload",
                        key=self.prefix + rel,
                        path=local[rel],
                        extra_args=upload_extra_args(
                            local[rel], digests[rel].sha256, stats[rel].st_mode
                        ),
                    )

            with UploadReceipts(client, self.bucket) as receipts:
                run_transfers(client, self.bucket, upload_jobs())
            self._remember_uploads(cache, uploads, digests, stats, receipts.by_key)
            stale = [obj.key for rel, obj in remote.items() if rel not in local]
            delete_keys(client, self.bucket, stale)
        finally:
            cache.save()
        result.uploaded = uploads
        result.deleted = sorted(key[len(self.prefix) :] for key in stale)
        result.unchanged = sorted(unchanged)
        result.bytes_transferred = sum(digests[rel].size for rel in result.uploaded)
        result.seconds = clock.elapsed()
        return result

    def _remember_uploads(
        self,
        cache: SyncCache,
        uploads: list[str],
        digests: dict[str, FileDigest],
        stats: dict[str, os.stat_result],
        receipts: dict[str, UploadReceipt],
    ) -> None:
        """Record the metadata just uploaded, with the ETag S3 answered each upload with
        and the answer's Date as the newest LastModified the record vouches for: the next
        sync then needs neither a HEAD nor, here, a second listing."""
        for rel in uploads:
            receipt = receipts.get(self.prefix + rel)
            if receipt is None:
                continue  # not answered (failed): ask next time
            mode = f"{stat.S_IMODE(stats[rel].st_mode):o}"
            size, sha256 = digests[rel].size, digests[rel].sha256
            record = RemoteRecord(receipt.etag, size, receipt.answered_at, sha256, mode)
            cache.remember_remote(rel, record)

    def get(self, dest_dir: Path) -> SyncResult:
        """Mirror the remote prefix into ``dest_dir``: download changed, remove extra files."""
        dest_dir = Path(dest_dir)
        clock = Stopwatch()
        result = SyncResult(source=self.uri, target=str(dest_dir), direction="get")
        client = self._client()
        remote: dict[str, RemoteObject] = {}
        for relative, obj in list_objects(client, self.bucket, self.prefix).items():
            if is_directory_marker(relative, obj):
                continue
            safe_relative_key(relative, full_key=obj.key)
            remote[relative] = obj
        _refuse_file_dir_clashes(remote)

        local = local_files(dest_dir, outside_links="skip")
        cache = SyncCache.for_sync(dest_dir, self.uri)
        try:
            candidates = []
            for rel, path in local.items():
                st = path.stat()
                if rel in remote and remote[rel].size == st.st_size:
                    digest = cached_digest(cache, rel, path, st)
                    candidates.append(Candidate(rel, remote[rel], digest, st.st_mode))
            unchanged = find_unchanged(client, self.bucket, candidates, cache)
            stale = [path for rel, path in local.items() if rel not in remote]
            for path in stale:
                path.unlink()
            remove_empty_dirs(dest_dir, stale)
            changed = [rel for rel in sorted(remote) if rel not in unchanged]
            self._download(client, dest_dir, {rel: remote[rel] for rel in changed}, cache)
        finally:
            cache.save()

        result.downloaded = changed
        result.deleted = sorted(path.relative_to(dest_dir).as_posix() for path in stale)
        result.unchanged = sorted(unchanged)
        result.bytes_transferred = sum(remote[rel].size for rel in changed)
        result.seconds = clock.elapsed()
        return result

    def _download(
        self, client: Any, dest_dir: Path, objects: dict[str, RemoteObject], cache: SyncCache
    ) -> None:
        if not objects:
            return
        # One HEAD per changed object: its SHA-256 (checked after the download), mode and
        # current ETag (the download is conditional on it: no torn read of a replaced object).
        with ThreadPoolExecutor(max_workers=MAX_CONCURRENCY) as pool:
            heads = dict(
                zip(
                    objects,
                    pool.map(lambda o: head_object(client, self.bucket, o.key), objects.values()),
                    strict=True,
                )
            )
        for relative, obj in objects.items():
            target = dest_dir / relative
            if target.is_dir():
                raise StoreError(
                    f"cannot download {s3_uri(self.bucket, obj.key)}: {target} is a directory"
                )
        dest_dir.mkdir(parents=True, exist_ok=True)
        run_transfers(
            client,
            self.bucket,
            [
                Transfer(
                    kind="download",
                    key=obj.key,
                    path=dest_dir / rel,
                    size=heads[rel].size,
                    etag=heads[rel].etag,
                )
                for rel, obj in objects.items()
            ],
        )
        for relative, obj in objects.items():
            target = dest_dir / relative
            meta = heads[relative].metadata
            os.chmod(target, local_mode(meta.get(META_MODE)))
            st = target.stat()
            digest = digest_file(target)
            expected = meta.get(META_SHA256)
            if expected and digest.sha256 != expected:
                target.unlink()
                raise StoreError(
                    f"download {s3_uri(self.bucket, obj.key)}: content does not match its "
                    "recorded SHA-256; retry"
                )
            cache.remember_digest(relative, st, digest.sha256, digest.etag, time.time_ns())
            cache.remember_remote(relative, heads[relative].record())


def _refuse_file_dir_clashes(remote: dict[str, RemoteObject]) -> None:
    """``a`` and ``a/b`` can both be keys but not both be local paths."""
    for relative in remote:
        parts = relative.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in remote:
                raise StoreError(
                    f"object keys {remote[parent].key!r} and {remote[relative].key!r} clash: "
                    "one would be a file and a directory at once"
                )
