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
  the glob's fixed part (``artifacts/**/*.csv`` -> ``<directory>/sub/x.csv``).
* **flag files** (:func:`touch_flag`): an empty object written after every upload of an
  output spec succeeded, so downstream systems know the drop is complete. Never touched
  when an upload failed (the function raises before).
* **ACL**: every object this module writes (uploads, archive copies, flags) carries
  ``ACL="bucket-owner-full-control"`` so a bucket owned by another account can read it,
  unless the spec sets ``disable_bucket_owner_acl: true`` (OTF's
  ``disableBucketOwnerControlACL``), e.g. for buckets with ACLs disabled (Object Ownership
  "bucket owner enforced" accepts this canned ACL; only a few setups reject it).

Specs are validated by :meth:`TransfersSpec.from_mapping` (unknown keys are an error naming
their path); the project loader calls it for the ``transfers:`` section of project.yml.
No Airflow here: every function takes a plain boto3 S3 client.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from handoff_provider.core.aws.errors import aws_error_types, failure_code
from handoff_provider.core.aws.s3_watch import (
    WatchCriteria,
    describe_count,
    find_with_criteria,
    normalize_prefix,
)
from handoff_provider.core.errors import HandoffError, ProjectError, TransferError

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
POST_COPY_ACTIONS = ("move", "rename", "delete")
_CHUNK = 1024 * 1024


# --------------------------------------------------------------------------- specs


def _fail(path: str, message: str) -> ProjectError:
    return ProjectError(f"{path}: {message}")


# OTF spells these in camelCase; point users coming from it at our names.
OTF_KEY_HINTS = {
    "fileRegex": "file_regex",
    "fileWatch": "a watch task (HandoffS3FileSensor / handoff watch)",
    "postCopyAction": "post_copy",
    "disableBucketOwnerControlACL": "disable_bucket_owner_acl",
    "fullPath": "flag",
    "functionArn": "function",
    "invocationType": "invocation_type",
    "destination": "archive_directory",
    "minSize": "min_size",
    "maxSize": "max_size",
    "minAge": "min_age",
    "maxAge": "max_age",
    "minCount": "min_count",
    "maxCount": "max_count",
    "sub": "pattern",
    "replace": "replacement",
}


def check_mapping_keys(
    data: Any, path: str, *, allowed: Iterable[str], required: Iterable[str] = ()
) -> Mapping[str, Any]:
    """``data`` as a mapping with only ``allowed`` keys and every ``required`` one set;
    else :class:`ProjectError` naming the key path (with a suggestion for typos and OTF's
    camelCase names)."""
    if not isinstance(data, Mapping):
        raise _fail(path, f"expected a mapping, got {type(data).__name__}")
    allowed = tuple(allowed)
    for key in data:
        if key not in allowed:
            import difflib  # error path only

            hint = OTF_KEY_HINTS.get(str(key)) or next(
                iter(difflib.get_close_matches(str(key), allowed, n=1)), None
            )
            suggestion = f" (did you mean {hint!r}?)" if hint else ""
            raise _fail(
                f"{path}.{key}",
                f"unknown key{suggestion}; allowed: {', '.join(sorted(allowed))}",
            )
    for key in required:
        if data.get(key) in (None, ""):
            raise _fail(f"{path}.{key}", "required")
    return data


def _opt_str(data: Mapping[str, Any], key: str, path: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(f"{path}.{key}", f"expected a string, got {type(value).__name__}")
    return value


def _str(data: Mapping[str, Any], key: str, path: str, default: str = "") -> str:
    value = _opt_str(data, key, path)
    return default if value is None else value


def _bool(data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise _fail(f"{path}.{key}", f"expected true or false, got {type(value).__name__}")
    return value


def _number(data: Mapping[str, Any], key: str, path: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise _fail(f"{path}.{key}", "expected a non-negative number")
    return value


def _count(data: Mapping[str, Any], key: str, path: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(f"{path}.{key}", "expected a whole number of at least 1")
    return value


def _regex(data: Mapping[str, Any], key: str, path: str) -> str | None:
    value = _opt_str(data, key, path)
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise _fail(f"{path}.{key}", f"invalid regular expression ({exc})") from None
    return value


def _relative_path(value: str, path: str, *, allow_empty: bool = True) -> str:
    """A workspace-relative POSIX path that cannot climb out (no absolute path, no ``..``)."""
    if not value and allow_empty:
        return ""
    pure = PurePosixPath(value)
    if not value or pure.is_absolute() or ".." in pure.parts or "\\" in value:
        raise _fail(path, "must be a relative path inside the workspace (no '..', no leading '/')")
    return value


def _key(value: str, path: str) -> str:
    key = value.lstrip("/")
    if not key or key.endswith("/"):
        raise _fail(path, "must be an object key (not empty, not ending with '/')")
    return key


@dataclass(frozen=True)
class PostCopy:
    """What to do with an input's source objects after a successful run.

    ``rename`` copies each source to ``re.sub(pattern, replacement, relative_key)`` (Python
    replacement syntax: ``\\1``, ``\\g<name>``) under ``archive_directory`` (default: the
    input's own directory) in ``archive_bucket`` (default: the source bucket)."""

    action: str
    archive_directory: str | None = None
    archive_bucket: str | None = None
    pattern: str | None = None
    replacement: str | None = None

    @classmethod
    def from_mapping(cls, data: Any, *, path: str) -> PostCopy:
        data = check_mapping_keys(
            data,
            path,
            allowed=("action", "archive_directory", "archive_bucket", "pattern", "replacement"),
            required=("action",),
        )
        action = _str(data, "action", path)
        if action not in POST_COPY_ACTIONS:
            raise _fail(f"{path}.action", f"must be one of {', '.join(POST_COPY_ACTIONS)}")
        archive = _opt_str(data, "archive_directory", path)
        if action == "move" and not archive:
            raise _fail(f"{path}.archive_directory", "required when action is 'move'")
        if action == "delete" and (archive or data.get("archive_bucket")):
            raise _fail(path, "archive_directory/archive_bucket only apply to 'move'/'rename'")
        pattern = _regex(data, "pattern", path)
        replacement = _opt_str(data, "replacement", path)
        if action == "rename":
            if not pattern:
                raise _fail(f"{path}.pattern", "required when action is 'rename'")
            if replacement is None:
                raise _fail(f"{path}.replacement", "required when action is 'rename'")
            try:
                re.compile(pattern).sub(replacement, "")  # checks the group references
            except (re.error, IndexError) as exc:
                raise _fail(f"{path}.replacement", f"invalid replacement ({exc})") from None
        elif pattern is not None or replacement is not None:
            raise _fail(path, "pattern/replacement only apply to action 'rename'")
        return cls(action, archive, _opt_str(data, "archive_bucket", path), pattern, replacement)


@dataclass(frozen=True)
class InputSpec:
    """Objects to download into ``files/<dest>/`` before the run."""

    bucket: str
    file_regex: str
    directory: str = ""
    dest: str = ""
    min_size: int | None = None
    max_size: int | None = None
    min_age: float | None = None
    max_age: float | None = None
    min_count: int | None = None
    max_count: int | None = None
    required: bool = True
    post_copy: PostCopy | None = None
    disable_bucket_owner_acl: bool = False

    _FIELDS = (
        "bucket",
        "directory",
        "file_regex",
        "dest",
        "min_size",
        "max_size",
        "min_age",
        "max_age",
        "min_count",
        "max_count",
        "required",
        "post_copy",
        "disable_bucket_owner_acl",
    )

    @classmethod
    def from_mapping(cls, data: Any, *, path: str) -> InputSpec:
        data = check_mapping_keys(
            data, path, allowed=cls._FIELDS, required=("bucket", "file_regex")
        )
        sizes = [_number(data, key, path) for key in ("min_size", "max_size")]
        counts = [_count(data, key, path) for key in ("min_count", "max_count")]
        post = data.get("post_copy")
        spec = cls(
            bucket=_str(data, "bucket", path),
            directory=_str(data, "directory", path),
            file_regex=_regex(data, "file_regex", path) or "",
            dest=_relative_path(_str(data, "dest", path), f"{path}.dest"),
            min_size=None if sizes[0] is None else int(sizes[0]),
            max_size=None if sizes[1] is None else int(sizes[1]),
            min_age=_number(data, "min_age", path),
            max_age=_number(data, "max_age", path),
            min_count=counts[0],
            max_count=counts[1],
            required=_bool(data, "required", path, True),
            post_copy=None
            if post is None
            else PostCopy.from_mapping(post, path=f"{path}.post_copy"),
            disable_bucket_owner_acl=_bool(data, "disable_bucket_owner_acl", path, False),
        )
        try:
            spec.criteria()
        except HandoffError as exc:  # e.g. min_size > max_size
            raise _fail(path, str(exc)) from None
        return spec

    def criteria(self) -> WatchCriteria:
        return WatchCriteria.from_fields(self, prefix=self.directory)


@dataclass(frozen=True)
class OutputSpec:
    """Workspace files to upload under ``bucket``/``directory`` after a successful run."""

    source: str
    bucket: str
    directory: str = ""
    file_regex: str | None = None
    flag: str | None = None
    required: bool = True
    disable_bucket_owner_acl: bool = False

    _FIELDS = (
        "source",
        "bucket",
        "directory",
        "file_regex",
        "flag",
        "required",
        "disable_bucket_owner_acl",
    )

    @classmethod
    def from_mapping(cls, data: Any, *, path: str) -> OutputSpec:
        data = check_mapping_keys(data, path, allowed=cls._FIELDS, required=("source", "bucket"))
        flag = _opt_str(data, "flag", path)
        return cls(
            source=_relative_path(_str(data, "source", path), f"{path}.source", allow_empty=False),
            bucket=_str(data, "bucket", path),
            directory=_str(data, "directory", path),
            file_regex=_regex(data, "file_regex", path),
            flag=None if flag is None else _key(flag, f"{path}.flag"),
            required=_bool(data, "required", path, True),
            disable_bucket_owner_acl=_bool(data, "disable_bucket_owner_acl", path, False),
        )


@dataclass(frozen=True)
class TransfersSpec:
    """The ``transfers:`` section of project.yml: ``inputs`` and ``outputs`` lists."""

    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[OutputSpec, ...] = ()

    @classmethod
    def from_mapping(cls, data: Any, *, path: str = "transfers") -> TransfersSpec:
        """Validate a mapping (``None`` = no transfers); errors name the key path."""
        if data is None:
            return cls()
        data = check_mapping_keys(data, path, allowed=("inputs", "outputs"))
        lists = {}
        for name in ("inputs", "outputs"):
            items = data.get(name) or []
            if not isinstance(items, list):
                raise _fail(f"{path}.{name}", f"expected a list, got {type(items).__name__}")
            lists[name] = items
        return cls(
            inputs=tuple(
                InputSpec.from_mapping(item, path=f"{path}.inputs[{index}]")
                for index, item in enumerate(lists["inputs"])
            ),
            outputs=tuple(
                OutputSpec.from_mapping(item, path=f"{path}.outputs[{index}]")
                for index, item in enumerate(lists["outputs"])
            ),
        )

    def render(self, render: Callable[[str, str], str]) -> TransfersSpec:
        """Apply ``render(text, field_path)`` (e.g. Jinja with the run's variables) to the
        location fields (buckets, directories, dest, source, flag, archive folder), so
        ``directory: "in/{{ ds }}"`` works. Regexes are not rendered (``{n}`` quantifiers).
        The result is re-validated."""

        def _render_input(index: int, spec: InputSpec) -> InputSpec:
            path = f"transfers.inputs[{index}]"
            post = spec.post_copy
            if post is not None:
                post = replace(
                    post,
                    archive_directory=_maybe(render, post.archive_directory, path),
                    archive_bucket=_maybe(render, post.archive_bucket, path),
                )
            rendered = replace(
                spec,
                bucket=render(spec.bucket, f"{path}.bucket"),
                directory=render(spec.directory, f"{path}.directory"),
                dest=_relative_path(render(spec.dest, f"{path}.dest"), f"{path}.dest"),
                post_copy=post,
            )
            _require(rendered.bucket, f"{path}.bucket")
            return rendered

        def _render_output(index: int, spec: OutputSpec) -> OutputSpec:
            path = f"transfers.outputs[{index}]"
            flag = _maybe(render, spec.flag, f"{path}.flag")
            rendered = replace(
                spec,
                source=_relative_path(
                    render(spec.source, f"{path}.source"), f"{path}.source", allow_empty=False
                ),
                bucket=render(spec.bucket, f"{path}.bucket"),
                directory=render(spec.directory, f"{path}.directory"),
                flag=None if flag is None else _key(flag, f"{path}.flag"),
            )
            _require(rendered.bucket, f"{path}.bucket")
            return rendered

        return TransfersSpec(
            inputs=tuple(_render_input(i, spec) for i, spec in enumerate(self.inputs)),
            outputs=tuple(_render_output(i, spec) for i, spec in enumerate(self.outputs)),
        )


def _maybe(render: Callable[[str, str], str], value: str | None, path: str) -> str | None:
    return None if value is None else render(value, path)


def _require(value: str, path: str) -> None:
    if not value:
        raise _fail(path, "rendered to an empty string")


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
            raise TransferError(
                f"inputs: cannot download s3://{match.bucket}/{match.key} ({failure_code(exc)})"
            ) from None
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
    then touch ``spec.flag`` if set. Every write carries the bucket-owner ACL unless
    ``spec.disable_bucket_owner_acl``. Raises :class:`TransferError` if nothing matched
    (when ``spec.required``) or any upload failed, in which case the flag is not touched.
    """
    acl = not spec.disable_bucket_owner_acl
    files = _local_outputs(spec, source_dir)
    if not files and spec.required:
        raise TransferError(f"outputs: no file matches {spec.source!r} in the workspace")
    prefix = normalize_prefix(spec.directory)
    results: list[Transferred] = []
    for path, relative in files:
        key = prefix + relative
        try:
            s3.upload_file(str(path), spec.bucket, key, ExtraArgs=_acl_args(acl) or None)
        except aws_error_types() as exc:
            raise TransferError(
                f"outputs: cannot upload {relative} to s3://{spec.bucket}/{key} "
                f"({failure_code(exc)})"
            ) from None
        results.append(Transferred(spec.bucket, key, relative, path, path.stat().st_size))
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
        raise TransferError(
            f"flag file: cannot write s3://{bucket}/{key} ({failure_code(exc)})"
        ) from None
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
            s3.copy(
                {"Bucket": item.bucket, "Key": item.key},
                target_bucket,
                target_key,
                ExtraArgs=copy_args or None,
            )
            archive_uri = f"s3://{target_bucket}/{target_key}"
        s3.delete_object(Bucket=item.bucket, Key=item.key)
    except aws_error_types() as exc:
        code = failure_code(exc)
        if code in ("PreconditionFailed", "412"):
            return PostCopyResult(item.bucket, item.key, action, "changed")
        raise TransferError(
            f"post-copy {action}: failed on s3://{item.bucket}/{item.key} ({code})"
        ) from None
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
        raise TransferError(
            f"post-copy: cannot check s3://{item.bucket}/{item.key} ({failure_code(exc)})"
        ) from None
    if item.etag and head.get("ETag") != item.etag:
        return "changed"
    return None
