"""Content-based S3 sync primitives: digests, listings, safe keys, parallel transfers.

How "unchanged" is decided without downloading or re-uploading anything:

1. sizes differ -> changed;
2. the object's ETag equals the ETag we compute locally -> unchanged. For a single-part
   upload the ETag is the MD5 of the content; for a multipart upload it is
   ``md5(part md5s)-N``, which we can compute because we know the part size our transfer
   manager uses (:data:`TRANSFER_CONFIG`);
3. otherwise (an SSE-KMS bucket, whose ETags are not MD5s, or an object uploaded by
   another tool with another part size) one ``HeadObject`` reads the SHA-256 we store in
   every object's metadata (``x-amz-meta-handoff-sha256``); equal -> unchanged. No such
   metadata -> changed (uploaded again, after which step 3 succeeds next time);
4. the content being the same, the executable bit recorded in ``x-amz-meta-handoff-mode``
   must match the local file's, or the file counts as changed (a ``chmod +x`` alone is
   synced). A listing doesn't return metadata: what it said is remembered per object
   (:mod:`.sync_cache`) and used while the listing shows the object unchanged (same ETag
   and size, LastModified no later than when we learned it); otherwise one ``HeadObject``
   asks. What our own uploads wrote is remembered from S3's answers to them
   (:class:`UploadReceipts`: the ETag and the response's Date), so a first sync lists
   once and the re-sync after it reads no metadata either.

Local digests are remembered too (by ``size, mtime_ns, ctime_ns, inode``), so a re-sync
with nothing changed is one listing and a ``stat`` per file: nothing is hashed.

Transfers go through boto3's transfer manager (``s3transfer``) so uploads, downloads and
server-side copies run in parallel with multipart handled for us; sizes known from the
listing are handed to it so it doesn't ``HeadObject`` each object again. It is imported
when there is something to transfer: a no-change re-sync never loads it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import mimetypes
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from handoff_provider.core.aws.clients import MAX_CONCURRENCY
from handoff_provider.core.aws.errors import aws_errors
from handoff_provider.core.errors import ConfigurationError, StoreError
from handoff_provider.core.layout import s3_uri
from handoff_provider.core.load.safe_tree import walk_tree
from handoff_provider.core.stores.sync_cache import RemoteRecord, SyncCache

#: Object metadata holding the hex SHA-256 of the content (``x-amz-meta-handoff-sha256``).
META_SHA256 = "handoff-sha256"
#: Object metadata holding the file's permission bits in octal (``x-amz-meta-handoff-mode``).
META_MODE = "handoff-mode"

log = logging.getLogger(__name__)
T = TypeVar("T")

MB = 1024 * 1024
MULTIPART_THRESHOLD = 8 * MB
MULTIPART_CHUNKSIZE = 8 * MB
_READ_CHUNK = MB
_DELETE_BATCH = 1000


def transfer_config() -> Any:
    """The transfer manager settings; part size and threshold also define local ETags."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD,
        multipart_chunksize=MULTIPART_CHUNKSIZE,
        max_concurrency=MAX_CONCURRENCY,
        use_threads=True,
        preferred_transfer_client="classic",
    )


# ---------------------------------------------------------------------------- digests


@dataclass(frozen=True)
class FileDigest:
    """Size, SHA-256 and the S3 ETag our transfer manager would produce for a file."""

    size: int
    sha256: str
    etag: str


def digest_file(path: Path) -> FileDigest:
    """Hash a file once: SHA-256 of the whole and MD5 per multipart part (for the ETag)."""
    sha = hashlib.sha256()
    part_md5s: list[bytes] = []
    part = hashlib.md5(usedforsecurity=False)
    part_filled = 0
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            size += len(chunk)
            sha.update(chunk)
            view = memoryview(chunk)
            while view:
                take = min(len(view), MULTIPART_CHUNKSIZE - part_filled)
                part.update(view[:take])
                part_filled += take
                view = view[take:]
                if part_filled == MULTIPART_CHUNKSIZE:
                    part_md5s.append(part.digest())
                    part = hashlib.md5(usedforsecurity=False)
                    part_filled = 0
    if part_filled or not part_md5s:
        part_md5s.append(part.digest())
    if size < MULTIPART_THRESHOLD:
        # One PutObject: the ETag is the content's MD5, i.e. its only part's (a file under
        # the threshold fits in one part, MULTIPART_THRESHOLD <= MULTIPART_CHUNKSIZE).
        etag = part_md5s[0].hex()
    else:
        combined = hashlib.md5(b"".join(part_md5s), usedforsecurity=False).hexdigest()
        etag = f"{combined}-{len(part_md5s)}"
    return FileDigest(size=size, sha256=sha.hexdigest(), etag=etag)


def cached_digest(cache: SyncCache, relative: str, path: Path, st: os.stat_result) -> FileDigest:
    """The digest of ``path`` (whose stat is ``st``), from the cache if its stat is
    unchanged, else hashed (and remembered)."""
    entry = cache.digest(relative, st)
    if entry is not None:
        return FileDigest(size=entry.size, sha256=entry.sha256, etag=entry.etag)
    digest = digest_file(path)
    cache.remember_digest(relative, st, digest.sha256, digest.etag, time.time_ns())
    return digest


def cached_digests(
    cache: SyncCache, files: Mapping[str, Path], stats: Mapping[str, os.stat_result]
) -> dict[str, FileDigest]:
    """:func:`cached_digest` of every file; those not in the cache are hashed in parallel
    (hashlib releases the GIL), the cache itself is only touched from this thread."""
    digests: dict[str, FileDigest] = {}
    misses: list[str] = []
    for relative in files:
        entry = cache.digest(relative, stats[relative])
        if entry is None:
            misses.append(relative)
        else:
            digests[relative] = FileDigest(size=entry.size, sha256=entry.sha256, etag=entry.etag)

    def hash_one(relative: str) -> tuple[FileDigest, int]:
        return digest_file(files[relative]), time.time_ns()

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for relative, (digest, hashed_at) in zip(misses, pool.map(hash_one, misses), strict=True):
            st = stats[relative]
            cache.remember_digest(relative, st, digest.sha256, digest.etag, hashed_at)
            digests[relative] = digest
    return {relative: digests[relative] for relative in files}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- listings


@dataclass(frozen=True)
class RemoteObject:
    key: str
    size: int
    etag: str
    last_modified: str = ""  # ISO 8601, whole seconds (a listing's and a HEAD's agree)


def timestamp(value: object) -> str:
    """An S3 LastModified (datetime) as ISO 8601 UTC in whole seconds: listings give
    milliseconds, ``HeadObject``'s HTTP header only seconds."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(microsecond=0).isoformat()
    return str(value or "")


def list_objects(client: Any, bucket: str, prefix: str) -> dict[str, RemoteObject]:
    """Every object under ``prefix`` (paginated), keyed by the key relative to the prefix."""
    objects: dict[str, RemoteObject] = {}
    with aws_errors("list", s3_uri(bucket, prefix), service="s3"):
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                objects[key[len(prefix) :]] = RemoteObject(
                    key=key,
                    size=int(item["Size"]),
                    etag=str(item.get("ETag", "")).strip('"'),
                    last_modified=timestamp(item.get("LastModified")),
                )
    return objects


def in_background(function: Callable[..., T], *args: Any) -> Future[T]:
    """``function(*args)`` started in a thread of its own (to wait on S3 while the
    caller works): ``.result()`` returns its value or raises its error."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(function, *args)
    finally:
        pool.shutdown(wait=False)  # the thread ends when the call returns


def local_files(
    root: Path, *, outside_links: str = "error", problems: list[str] | None = None
) -> dict[str, Path]:
    """Regular files under ``root``, keyed by POSIX relative path (see
    :func:`~handoff_provider.core.load.safe_tree.walk_tree`).

    ``outside_links="error"`` (for ``files/``): a symlink pointing outside the root, a
    loop, a special file or a name S3 can't carry is a :class:`ConfigurationError`
    before anything is transferred. ``"skip"`` (for ``artifacts/``, which commands
    fill): such entries are left out, each logged as a warning and appended to
    ``problems``.
    """
    tree = walk_tree(root, strict=outside_links == "error", error=ConfigurationError)
    for line in tree.problems:
        log.warning("%s: skipped", line)
    if problems is not None:
        problems.extend(tree.problems)
    return tree.files


def safe_relative_key(relative: str, *, full_key: str) -> PurePosixPath:
    """Check that an object key maps to a path inside the destination directory.

    Refuses absolute keys, ``..``/``.`` segments, empty segments (``a//b``), backslashes
    and NUL bytes, with an error naming the key.
    """
    segments = relative.split("/")
    bad = (
        not relative
        or relative.startswith("/")
        or "\\" in relative
        or "\0" in relative
        or any(segment in ("", ".", "..") for segment in segments)
    )
    if bad:
        raise StoreError(
            f"refusing object key {full_key!r}: it would not map to a file inside the "
            "destination directory (absolute path, '..', '.' or empty path segment)"
        )
    return PurePosixPath(relative)


def is_directory_marker(relative: str, obj: RemoteObject) -> bool:
    """A zero-byte ``folder/`` object as created by the S3 console: not a file."""
    return relative.endswith("/") and obj.size == 0


# ----------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class ObjectHead:
    size: int
    etag: str
    metadata: dict[str, str]
    last_modified: str = ""
    observed_at: str = ""  # the response's Date (S3's clock), as :func:`timestamp`

    def record(self) -> RemoteRecord | None:
        """What the object's metadata says, for the sync cache; None when the object was
        changed in the very second S3 answered: another change within that second would
        keep its LastModified, so a listing could not tell it from this one."""
        if not self.last_modified or not self.observed_at > self.last_modified:
            return None
        return RemoteRecord(
            etag=self.etag,
            size=self.size,
            last_modified=self.last_modified,
            sha256=self.metadata.get(META_SHA256),
            mode=self.metadata.get(META_MODE),
        )


def head_object(client: Any, bucket: str, key: str) -> ObjectHead:
    with aws_errors("read metadata of", s3_uri(bucket, key), service="s3"):
        response = client.head_object(Bucket=bucket, Key=key)
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    return ObjectHead(
        size=int(response["ContentLength"]),
        etag=str(response.get("ETag", "")).strip('"'),
        metadata=dict(response.get("Metadata", {})),
        last_modified=timestamp(response.get("LastModified")),
        observed_at=timestamp(parsedate_to_datetime(date)) if date else "",
    )


def is_executable(recorded: object) -> bool:
    """Whether a recorded octal mode (``"755"``; None or junk: no) is owner-executable."""
    try:
        return bool(int(str(recorded or "0"), 8) & 0o100)
    except ValueError:
        return False


def local_mode(recorded: object) -> int:
    """Local permissions for a recorded octal mode: 0755 if it was executable, else 0644."""
    return 0o755 if is_executable(recorded) else 0o644


@dataclass(frozen=True)
class Candidate:
    """A local file that exists remotely too, to be compared: is it unchanged?"""

    relative: str
    remote: RemoteObject
    digest: FileDigest
    mode: int  # the local permission bits


def _same(seen: RemoteRecord | ObjectHead, item: Candidate) -> bool:
    """Same content (recorded SHA-256, else our ETag), size and executable bit."""
    if isinstance(seen, ObjectHead):
        sha256, mode = seen.metadata.get(META_SHA256), seen.metadata.get(META_MODE)
    else:
        sha256, mode = seen.sha256, seen.mode
    content = sha256 == item.digest.sha256 or seen.etag == item.digest.etag
    executable = is_executable(mode) == bool(item.mode & 0o100)
    return content and executable and seen.size == item.digest.size


def find_unchanged(
    client: Any, bucket: str, candidates: Iterable[Candidate], cache: SyncCache
) -> set[str]:
    """The relative paths whose object has the local content and executable bit.

    Sizes differ: changed. Else the object's metadata as remembered by ``cache`` (valid
    while the listing shows the same ETag, size and LastModified) or, failing that, as
    one ``HeadObject`` (in parallel) reads it, which ``cache`` then remembers.
    """
    unchanged: set[str] = set()
    need_head: list[Candidate] = []
    for item in candidates:
        obj = item.remote
        if obj.size != item.digest.size:
            continue
        record = cache.record(item.relative, obj.etag, obj.size, obj.last_modified)
        if record is None:
            need_head.append(item)
        elif _same(record, item):
            unchanged.add(item.relative)
    if need_head:
        with ThreadPoolExecutor(max_workers=MAX_CONCURRENCY) as pool:
            heads = pool.map(lambda item: head_object(client, bucket, item.remote.key), need_head)
            for item, head in zip(need_head, heads, strict=True):
                cache.remember_remote(item.relative, head.record())
                if _same(head, item):
                    unchanged.add(item.relative)
    return unchanged


# ------------------------------------------------------------------------ transfers


class _KnownSize:
    """Hands a size (and ETag) we already know from a listing to the transfer manager,
    which would otherwise ``HeadObject`` every source first. (s3transfer calls a
    subscriber's ``on_<event>`` methods; its ``BaseSubscriber`` base adds only a check of
    their signatures.)"""

    def __init__(self, size: int, etag: str | None = None) -> None:
        self.size = size
        self.etag = etag

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self.size)
        # s3transfer >= 0.13 checks each ranged GET of a download against the ETag
        # (IfMatch); older versions have no such check and nothing to hand it to.
        if self.etag is not None and hasattr(future.meta, "provide_object_etag"):
            future.meta.provide_object_etag(f'"{self.etag}"')


@dataclass(frozen=True)
class UploadReceipt:
    """What S3 answered an upload with: the object's ETag and the response's Date."""

    etag: str
    answered_at: str  # S3's clock, as :func:`timestamp`: the object is no newer


class UploadReceipts:
    """The :class:`UploadReceipt` of every upload (``PutObject``, or the
    ``CompleteMultipartUpload`` of a multipart one) into ``bucket`` made through
    ``client`` inside the ``with`` block, keyed by object key.

    Read from botocore's events on this client only (``before-parameter-build`` puts the
    key in the call's context, ``after-call`` reads the parsed answer), registered under
    ids of this instance and unregistered on exit: the caller's other uses of the client,
    and other instances in other threads, are left alone. A failed call is not received.
    """

    _OPERATIONS = ("PutObject", "CompleteMultipartUpload")
    _CONTEXT_KEY = "handoff_upload_key"

    def __init__(self, client: Any, bucket: str) -> None:
        self._events = client.meta.events
        self._bucket = bucket
        self._context_key = f"{self._CONTEXT_KEY}_{id(self)}"
        self._lock = threading.Lock()
        self.by_key: dict[str, UploadReceipt] = {}

    def _handlers(self) -> list[tuple[str, Any, str]]:
        handlers = []
        for operation in self._OPERATIONS:
            for event, handler in (
                ("before-parameter-build", self._note_key),
                ("after-call", self._note_answer),
            ):
                name = f"{event}.s3.{operation}"
                handlers.append((name, handler, f"{self._context_key}-{name}"))
        return handlers

    def __enter__(self) -> UploadReceipts:
        for name, handler, unique_id in self._handlers():
            self._events.register(name, handler, unique_id=unique_id)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name, handler, unique_id in self._handlers():
            self._events.unregister(name, handler, unique_id=unique_id)

    def _note_key(self, params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        if params.get("Bucket") == self._bucket and isinstance(params.get("Key"), str):
            context[self._context_key] = params["Key"]

    def _note_answer(self, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        key = context.get(self._context_key)
        etag = str(parsed.get("ETag") or "").strip('"')
        date = parsed.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        if key is None or not etag or not date:
            return
        receipt = UploadReceipt(etag, timestamp(parsedate_to_datetime(date)))
        with self._lock:
            self.by_key[key] = receipt


def upload_extra_args(path: Path, sha256: str, mode: int | None = None) -> dict[str, Any]:
    """Metadata (SHA-256, permission bits: ``mode`` or the file's) and content type."""
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    mode = stat.S_IMODE(path.stat().st_mode if mode is None else mode)
    return {
        "Metadata": {META_SHA256: sha256, META_MODE: f"{mode:o}"},
        "ContentType": content_type,
    }


@dataclass
class Transfer:
    """One transfer for :func:`run_transfers`: ``kind`` is upload, download or copy."""

    kind: str
    key: str
    path: Path | None = None
    source_key: str | None = None
    size: int | None = None
    etag: str | None = None
    extra_args: dict[str, Any] = field(default_factory=dict)


def run_transfers(client: Any, bucket: str, transfers: Iterable[Transfer]) -> None:
    """Run transfers in parallel through the transfer manager; the first failure cancels
    the rest and is raised as a :class:`StoreError` naming the object. ``transfers`` may
    be made as they are taken (a generator): each is submitted as it comes, while the
    ones before it run."""
    pending = iter(transfers)
    first = next(pending, None)
    if first is None:
        return
    from boto3.s3.transfer import create_transfer_manager

    manager = create_transfer_manager(client, transfer_config())
    submitted: list[tuple[Transfer, Any]] = []
    failed = True
    try:
        for item in itertools.chain([first], pending):
            submitted.append((item, _submit(manager, bucket, item)))
        for item, future in submitted:
            action = {"upload": "upload to", "download": "download", "copy": "copy to"}[item.kind]
            with aws_errors(action, s3_uri(bucket, item.key), service="s3"):
                future.result()
        failed = False
    finally:
        if failed:
            # Cancel through the futures: s3transfer 0.19's shutdown(cancel=True) passes its
            # arguments to _shutdown in the wrong order and raises a TypeError of its own.
            for _item, future in submitted:
                future.cancel()
        manager.shutdown()


def _submit(manager: Any, bucket: str, item: Transfer) -> Any:
    subscribers = [_KnownSize(item.size, item.etag)] if item.size is not None else None
    if item.kind == "upload":
        return manager.upload(
            str(item.path), bucket, item.key, extra_args=item.extra_args, subscribers=subscribers
        )
    if item.kind == "download":
        assert item.path is not None
        item.path.parent.mkdir(parents=True, exist_ok=True)
        return manager.download(
            bucket, item.key, str(item.path), extra_args=item.extra_args, subscribers=subscribers
        )
    if item.kind == "copy":
        return manager.copy(
            {"Bucket": bucket, "Key": item.source_key},
            bucket,
            item.key,
            extra_args=item.extra_args,
            subscribers=subscribers,
        )
    raise ValueError(f"unknown transfer kind {item.kind!r}")


def delete_keys(client: Any, bucket: str, keys: Iterable[str]) -> list[str]:
    """Delete keys in batches of 1000 (the DeleteObjects limit); returns the deleted keys."""
    pending = sorted(set(keys))
    for start in range(0, len(pending), _DELETE_BATCH):
        batch = pending[start : start + _DELETE_BATCH]
        with aws_errors(
            "delete objects under", s3_uri(bucket, _common_prefix(batch)), service="s3"
        ):
            response = client.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise StoreError(
                f"delete {s3_uri(bucket, first.get('Key', ''))}: AWS error "
                f"{first.get('Code', 'unknown')} ({len(errors)} object(s) not deleted)"
            )
    return pending


def _common_prefix(keys: list[str]) -> str:
    """The longest shared ``a/b/`` directory prefix of keys (for error messages)."""
    first = keys[0].split("/")[:-1]
    for key in keys[1:]:
        parts = key.split("/")[:-1]
        n = 0
        while n < min(len(first), len(parts)) and first[n] == parts[n]:
            n += 1
        first = first[:n]
    return "/".join(first) + "/" if first else ""


def remove_empty_dirs(root: Path, start: Iterable[Path]) -> None:
    """Remove now-empty parent directories of removed files, up to (not including) root."""
    for path in sorted({p.parent for p in start}, key=lambda p: len(p.parts), reverse=True):
        current = path
        while current != root and root in current.parents:
            try:
                current.rmdir()
            except OSError:
                break
            current = current.parent


# --------------------------------------------------------------------------- results


@dataclass
class SyncResult:
    """What a sync did; ``str()`` is the one-line summary the CLI prints."""

    source: str
    target: str
    direction: str = "push"
    uploaded: list[str] = field(default_factory=list)
    downloaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    bytes_transferred: int = 0
    seconds: float = 0.0

    @property
    def transferred(self) -> list[str]:
        return self.uploaded or self.downloaded

    def to_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "source": self.source,
            "target": self.target,
            "uploaded": len(self.uploaded),
            "downloaded": len(self.downloaded),
            "deleted": len(self.deleted),
            "unchanged": len(self.unchanged),
            "bytes_transferred": self.bytes_transferred,
            "seconds": round(self.seconds, 3),
        }

    def __str__(self) -> str:
        moved = (
            f"{len(self.uploaded)} uploaded"
            if self.direction == "push"
            else f"{len(self.downloaded)} downloaded"
        )
        return (
            f"{self.source} -> {self.target}: {moved}, {len(self.deleted)} deleted, "
            f"{len(self.unchanged)} unchanged ({format_bytes(self.bytes_transferred)} "
            f"in {self.seconds:.2f}s)"
        )


def format_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start
