"""S3 transfers around a run: inputs in, outputs out, post-copy actions and flag files.

These are Open Task Framework's S3 transfer features, reshaped for a handoff project:

* **inputs** (:func:`download_inputs`): objects under ``bucket``/``directory`` whose key
  (relative to the directory) fully matches ``file_regex`` are downloaded into
  ``files/<dest>/`` of the workspace, keeping their relative path. Keys that would land
  outside that directory are refused. The matching rules are those of
  :mod:`handoff_provider.core.aws.s3_watch` (sizes, ages and the ``min_count``/``max_count``
  bounds on how many objects match included: a count outside them fails the run before
  any command starts; ``required: false`` only lets an input match nothing at all).
* **post-copy** (:func:`apply_post_copy`): ``move`` (copy to an archive folder, then delete),
  ``rename`` (copy to the key ``re.sub(pattern, replacement, <relative key>)`` under the
  archive folder, default the input's own directory, then delete) or ``delete`` the
  *source* objects of the inputs. **Contract: the caller applies it only
  after the run succeeded** (and after its outputs were uploaded), never on failure, so a
  failed run can simply be retried on the same inputs. An object that changed after it was
  downloaded (different ETag) or vanished is left alone and reported, never deleted.
* **outputs** (:func:`upload_outputs`): workspace files matching a glob (optionally filtered
  by a regex) are uploaded under ``bucket``/``directory``, keeping their path relative to
  the glob's fixed part (``artifacts/**/*.csv`` -> ``<directory>/sub/x.csv``), in
  parallel through one transfer manager, the one ``files push`` uses.
* **flag files** (:func:`touch_flag`): an empty object written after every upload of an
  output spec succeeded, so downstream systems know the drop is complete. Never touched
  when an upload failed (the function raises before).
* **ACL**: every object this module writes (uploads, archive copies, flags) carries
  ``ACL="bucket-owner-full-control"`` so a bucket owned by another account can read it,
  unless the spec sets ``disable_bucket_owner_acl: true`` (OTF's
  ``disableBucketOwnerControlACL``), e.g. for buckets with ACLs disabled (Object Ownership
  "bucket owner enforced" accepts this canned ACL; only a few setups reject it).

The specs themselves (:class:`TransfersSpec` and its parts, validated by
``TransfersSpec.from_mapping``) are pure values in
:mod:`handoff_provider.core.model.transfers`, re-exported here.
No Airflow here: every function takes a plain S3 client, botocore's (the CLI's) or boto3's
(the hook's): uploads and copies go through boto3's transfer classes given that client,
which is what boto3's own ``client.upload_file``/``client.copy`` do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from handoff_provider.core.aws.errors import aws_error_types, failure_code, translate
from handoff_provider.core.aws.s3_watch import (
    describe_count,
    find_with_criteria,
    normalize_prefix,
)
from handoff_provider.core.errors import HandoffError, TransferError
from handoff_provider.core.model.transfers import (
    OTF_KEY_HINTS,
    POST_COPY_ACTIONS,
    InputSpec,
    OutputSpec,
    PostCopy,
    TransfersSpec,
    check_mapping_keys,
)

__all__ = [
    "BUCKET_OWNER_FULL_CONTROL",
    "OTF_KEY_HINTS",
    "InputSpec",
    "OutputSpec",
    "PostCopy",
    "PostCopyResult",
    "Transferred",
    "TransfersSpec",
    "apply_input_post_copy",
    "apply_post_copy",
    "check_mapping_keys",
    "download_inputs",
    "touch_flag",
    "upload_outputs",
]

BUCKET_OWNER_FULL_CONTROL = "bucket-owner-full-control"
_CHUNK = 1024 * 1024


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Transferred:
    """One object downloaded or uploaded. ``relative_key`` is the key below the spec's
    directory (what a ``move`` keeps under the archive folder)."""

    bucket: str
    key: str
    relative_key: str
    path: Path
    size: int
    etag: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "path": str(self.path), "size": self.size}


@dataclass(frozen=True)
class PostCopyResult:
    """Outcome of a post-copy action on one source object.

    ``status``: ``moved``, ``renamed``, ``deleted``, ``changed`` (the object was replaced
    after the download: left alone), ``missing`` (already gone) or ``unchanged`` (renamed to
    its own key: left alone)."""

    bucket: str
    key: str
    action: str
    status: str
    archive_uri: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"uri": f"s3://{self.bucket}/{self.key}", "action": self.action}
        data["status"] = self.status
        if self.archive_uri:
            data["archive_uri"] = self.archive_uri
        return data


def _copy(
    s3: Any, source: dict[str, str], bucket: str, key: str, extra_args: dict[str, Any]
) -> None:
    """A managed server-side copy (multipart when large), as boto3's ``client.copy``."""
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    with create_transfer_manager(s3, TransferConfig()) as manager:
        manager.copy(source, bucket, key, extra_args=extra_args or None).result()


def _transfer_error(exc: BaseException, what: str, action: str, uri: str) -> TransferError:
    """An AWS failure as ``<what>: <action> <uri>: <why>``, the why worded by the shared
    translation (:func:`~handoff_provider.core.aws.errors.translate`)."""
    try:
        translate(exc, action=action, resource=uri, service="s3")
    except HandoffError as translated:
        return TransferError(f"{what}: {translated}")


def _acl_args(enabled: bool) -> dict[str, str]:
    return {"ACL": BUCKET_OWNER_FULL_CONTROL} if enabled else {}


# --------------------------------------------------------------------------- operations


def _inside(base: Path, relative: str) -> Path:
    """``base/relative``, refusing anything that would resolve outside ``base``."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or "\\" in relative or not pure.parts:
        raise TransferError(f"refusing S3 key {relative!r}: it would escape {base}")
    target = (base / Path(*pure.parts)).resolve()
    root = base.resolve()
    if target != root and root not in target.parents:
        raise TransferError(f"refusing S3 key {relative!r}: it would escape {base}")
    return target


def download_inputs(
    s3: Any, spec: InputSpec, dest_dir: Path, *, now: datetime | None = None
) -> list[Transferred]:
    """Download the objects matching ``spec`` into ``dest_dir/<spec.dest>/`` (``dest_dir`` is
    the workspace's ``files/``). Returns them sorted by key, with the ETag actually read
    (what :func:`apply_post_copy` checks before touching the source).

    Raises :class:`TransferError` when nothing matches and ``spec.required`` is true, when a
    key would land outside the destination, or when a download fails (partial files are
    never left behind: each object is written to a temporary file then renamed).
    """
    criteria = spec.criteria()
    target_root = dest_dir / spec.dest if spec.dest else dest_dir
    matches = find_with_criteria(s3, criteria, now=now)
    where = f"s3://{criteria.bucket}/{criteria.prefix}"
    if not matches and spec.required:
        raise TransferError(f"inputs: no object matching {spec.file_regex!r} under {where}")
    if matches and not criteria.count_ok(len(matches)):
        raise TransferError(f"inputs: {describe_count(criteria, len(matches))}")
    planned = [
        (match, _inside(target_root, match.key[len(criteria.prefix) :])) for match in matches
    ]
    results: list[Transferred] = []
    for match, target in planned:
        relative = match.key[len(criteria.prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            response = s3.get_object(Bucket=match.bucket, Key=match.key)
            size = _stream_to(response["Body"], target)
        except aws_error_types() as exc:
            uri = f"s3://{match.bucket}/{match.key}"
            raise _transfer_error(exc, "inputs", "download", uri) from None
        results.append(
            Transferred(
                bucket=match.bucket,
                key=match.key,
                relative_key=relative,
                path=target,
                size=size,
                etag=response.get("ETag"),
            )
        )
    return results


def _stream_to(body: Any, target: Path) -> int:
    import tempfile  # here, not at module level: loading a project needs no tempfile

    descriptor, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    size = 0
    try:
        with os.fdopen(descriptor, "wb") as handle:
            for chunk in iter(lambda: body.read(_CHUNK), b""):
                handle.write(chunk)
                size += len(chunk)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    finally:
        body.close()
    return size


def _glob_base(pattern: str) -> str:
    """The leading components of a glob without wildcards (``artifacts/**/*.csv`` ->
    ``artifacts``; a plain path -> its parent)."""
    parts = PurePosixPath(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if any(char in part for char in "*?["):
            return "/".join(fixed)
        fixed.append(part)
    return "/".join(fixed[:-1])


def _local_outputs(spec: OutputSpec, source_dir: Path) -> list[tuple[Path, str]]:
    root = source_dir.resolve()
    base = _glob_base(spec.source)
    base_dir = (root / base) if base else root
    found: list[tuple[Path, str]] = []
    for candidate in sorted(root.glob(spec.source)):
        resolved = candidate.resolve()
        if not resolved.is_file():
            continue
        if root not in resolved.parents:
            raise TransferError(f"outputs: refusing {candidate}: it resolves outside {source_dir}")
        relative = candidate.relative_to(base_dir).as_posix()
        if spec.file_regex is not None and re.fullmatch(spec.file_regex, relative) is None:
            continue
        found.append((resolved, relative))
    return found


def upload_outputs(s3: Any, spec: OutputSpec, source_dir: Path) -> list[Transferred]:
    """Upload the workspace files matching ``spec`` (``source_dir`` is the workspace root),
    in parallel (:func:`handoff_provider.core.stores.s3sync.run_transfers`, multipart when
    large), then touch ``spec.flag`` if set. Every write carries the bucket-owner ACL
    unless ``spec.disable_bucket_owner_acl``. Raises :class:`TransferError` if nothing
    matched (when ``spec.required``) or any upload failed (naming the first failed file;
    the others are cancelled or may have completed), in which case the flag is not touched.
    """
    # here, not at module level: a run with no outputs needs none of the sync machinery
    from handoff_provider.core.stores.s3sync import Transfer, run_transfers

    acl = not spec.disable_bucket_owner_acl
    files = _local_outputs(spec, source_dir)
    if not files and spec.required:
        raise TransferError(f"outputs: no file matches {spec.source!r} in the workspace")
    prefix = normalize_prefix(spec.directory)
    uploads = [
        Transfer(kind="upload", key=prefix + relative, path=path, extra_args=_acl_args(acl))
        for path, relative in files
    ]
    try:
        run_transfers(s3, spec.bucket, uploads)
    except HandoffError as exc:  # already translated, naming the object
        raise TransferError(f"outputs: {exc}") from None
    results = [
        Transferred(spec.bucket, prefix + relative, relative, path, path.stat().st_size)
        for path, relative in files
    ]
    if spec.flag:
        touch_flag(s3, spec.bucket, spec.flag, acl=acl)
    return results


def touch_flag(s3: Any, bucket: str, key: str, *, acl: bool = True) -> str:
    """Write an empty object (a ``.fin``/``.flg`` completion flag); returns its URI.

    Call it only after the uploads it vouches for succeeded (``upload_outputs`` does)."""
    key = key.lstrip("/")
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"", **_acl_args(acl))
    except aws_error_types() as exc:
        raise _transfer_error(exc, "flag file", "write", f"s3://{bucket}/{key}") from None
    return f"s3://{bucket}/{key}"


def apply_post_copy(
    s3: Any,
    downloaded: Sequence[Transferred],
    *,
    action: str,
    archive_prefix: str | None = None,
    archive_bucket: str | None = None,
    acl: bool = True,
    rename: tuple[str, str] | None = None,
    source_prefix: str = "",
) -> list[PostCopyResult]:
    """Move (to ``archive_bucket``/``archive_prefix``/<relative key>), rename or delete the
    source objects of ``downloaded``. **Call only after the run succeeded** (module doc).

    ``rename`` is ``(pattern, replacement)``: the target is ``re.sub(pattern, replacement,
    relative key)`` under ``archive_prefix`` (default ``source_prefix``, the input's own
    directory). Every target is computed first: a rename giving an empty key, a folder key,
    the same key to two sources or the key of another source fails before anything is
    touched; a source renamed (or moved) to itself is left alone (``unchanged``).

    Each source is checked first: if its ETag differs from the one downloaded (a newer drop
    replaced it) it is left alone (``changed``); if it is gone, ``missing``. A move or rename
    copies with ``CopySourceIfMatch`` (so only the downloaded version is kept) and deletes
    the source only after the copy succeeded.
    """
    if action not in POST_COPY_ACTIONS:
        raise TransferError(f"post-copy: unknown action {action!r}")
    if action == "move" and not archive_prefix:
        raise TransferError("post-copy: 'move' needs an archive directory")
    if action == "rename" and rename is None:
        raise TransferError("post-copy: 'rename' needs a pattern and a replacement")
    targets = _post_copy_targets(
        downloaded, action, archive_prefix, archive_bucket, rename, source_prefix
    )
    return [
        _post_copy_one(s3, item, target, action=action, acl=acl)
        for item, target in zip(downloaded, targets, strict=True)
    ]


def _post_copy_one(
    s3: Any, item: Transferred, target: tuple[str, str] | None, *, action: str, acl: bool
) -> PostCopyResult:
    """The post-copy action on one downloaded object (``target``: where a move/rename
    puts it; ``None`` for a delete)."""
    if target == (item.bucket, item.key):
        return PostCopyResult(item.bucket, item.key, action, "unchanged")
    status = _source_status(s3, item)
    if status is not None:
        return PostCopyResult(item.bucket, item.key, action, status)
    archive_uri = None
    try:
        if target is not None:
            target_bucket, target_key = target
            copy_args = _acl_args(acl)
            if item.etag:
                copy_args["CopySourceIfMatch"] = item.etag
            _copy(
                s3, {"Bucket": item.bucket, "Key": item.key}, target_bucket, target_key, copy_args
            )
            archive_uri = f"s3://{target_bucket}/{target_key}"
        s3.delete_object(Bucket=item.bucket, Key=item.key)
    except aws_error_types() as exc:
        if failure_code(exc) in ("PreconditionFailed", "412"):
            return PostCopyResult(item.bucket, item.key, action, "changed")
        uri = f"s3://{item.bucket}/{item.key}"
        raise _transfer_error(exc, "post-copy", action, uri) from None
    done = {"move": "moved", "rename": "renamed", "delete": "deleted"}[action]
    return PostCopyResult(item.bucket, item.key, action, done, archive_uri)


def _post_copy_targets(
    downloaded: Sequence[Transferred],
    action: str,
    archive_prefix: str | None,
    archive_bucket: str | None,
    rename: tuple[str, str] | None,
    source_prefix: str,
) -> list[tuple[str, str] | None]:
    """Where each source goes (``None``: deleted only); validated before any change."""
    if action == "delete":
        return [None] * len(downloaded)
    prefix = normalize_prefix(archive_prefix if archive_prefix else source_prefix)
    targets: list[tuple[str, str] | None] = []
    claimed: dict[tuple[str, str], str] = {}
    sources = {(item.bucket, item.key) for item in downloaded}
    for item in downloaded:
        relative = item.relative_key
        if rename is not None:
            pattern, replacement = rename
            try:
                relative = re.sub(pattern, replacement, relative)
            except (re.error, IndexError) as exc:
                raise TransferError(f"post-copy rename: invalid replacement ({exc})") from None
            if not relative or relative.endswith("/"):
                raise TransferError(
                    f"post-copy rename: s3://{item.bucket}/{item.key} would be renamed to "
                    f"{relative!r}, not an object name; nothing was renamed"
                )
        target = (archive_bucket or item.bucket, prefix + relative.lstrip("/"))
        if target in sources and target != (item.bucket, item.key):
            raise TransferError(
                f"post-copy {action}: s3://{item.bucket}/{item.key} would overwrite "
                f"s3://{target[0]}/{target[1]}, another input; nothing was {action}d"
            )
        if target in claimed:
            raise TransferError(
                f"post-copy {action}: {claimed[target]} and s3://{item.bucket}/{item.key} "
                f"would both become s3://{target[0]}/{target[1]}; nothing was {action}d"
            )
        claimed[target] = f"s3://{item.bucket}/{item.key}"
        targets.append(target)
    return targets


def apply_input_post_copy(
    s3: Any, spec: InputSpec, downloaded: Sequence[Transferred]
) -> list[PostCopyResult]:
    """:func:`apply_post_copy` with the spec's ``post_copy`` settings (no-op without one)."""
    if spec.post_copy is None:
        return []
    post = spec.post_copy
    return apply_post_copy(
        s3,
        downloaded,
        action=post.action,
        archive_prefix=post.archive_directory,
        archive_bucket=post.archive_bucket,
        acl=not spec.disable_bucket_owner_acl,
        rename=(post.pattern or "", post.replacement or "") if post.action == "rename" else None,
        source_prefix=spec.directory,
    )


def _source_status(s3: Any, item: Transferred) -> str | None:
    """``None`` when the source is still the downloaded version, else why to skip it."""
    try:
        head = s3.head_object(Bucket=item.bucket, Key=item.key)
    except aws_error_types() as exc:
        if failure_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return "missing"
        uri = f"s3://{item.bucket}/{item.key}"
        raise _transfer_error(exc, "post-copy", "check", uri) from None
    if item.etag and head.get("ETag") != item.etag:
        return "changed"
    return None
