"""The ``transfers:`` section of project.yml as pure values: what to download before a run
and upload after it (the S3 effects are :mod:`handoff_provider.core.aws.s3_transfers`).

Specs are validated by :meth:`TransfersSpec.from_mapping` (unknown keys are an error naming
their path, with a hint for Open Task Framework's camelCase names); the project loader
calls it for the ``transfers:`` section. Kept apart from the S3 code so that loading a
project (``handoff run -p`` of a local one, ``config print``) never imports the AWS
modules: the matching rules (:class:`~handoff_provider.core.aws.s3_watch.WatchCriteria`)
are imported only to check an input's bounds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from handoff_provider.core.errors import HandoffError, ProjectError

if TYPE_CHECKING:
    from handoff_provider.core.aws.s3_watch import WatchCriteria

POST_COPY_ACTIONS = ("move", "rename", "delete")


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
        from handoff_provider.core.aws.s3_watch import WatchCriteria

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
