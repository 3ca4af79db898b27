"""The ``transfers:`` section of a project inside one run (used by the runner).

:mod:`handoff_provider.core.aws.s3_transfers` has the building blocks; this module applies a
project's :class:`TransfersSpec` in the order a run needs (see ``runner.py``)::

    phase = TransferPhase.rendered(project.transfers, render, s3_client=..., ...)
    phase.download()      # inputs -> files/<dest>/ (after files/ templates were rendered)
    ...                   # the tasks run
    phase.publish()       # only if every task succeeded: outputs, then flags, then post-copy

``publish`` uploads **every** output first and writes the flag files only once all of them
are uploaded, then applies the inputs' post-copy actions: any failure stops it there, so a
failed run (or a failed upload) leaves no flag and every source where it was. Errors are
:class:`TransferError` naming the spec (``transfers.outputs[1]: ...``).

:meth:`TransferPhase.to_dict` is what the run summary records: URIs and statuses only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from handoff_provider.core.aws.s3_transfers import (
    PostCopyResult,
    Transferred,
    TransfersSpec,
    apply_input_post_copy,
    download_inputs,
    touch_flag,
    upload_outputs,
)
from handoff_provider.core.aws.s3_watch import normalize_prefix
from handoff_provider.core.errors import TransferError
from handoff_provider.core.model.callbacks import LogFn

__all__ = ["TransferPhase"]


class TransferPhase:
    """One run's transfers; see the module docstring. Not thread-safe (one runner)."""

    def __init__(
        self,
        spec: TransfersSpec,
        *,
        s3_client: Callable[[], Any],
        workspace_root: Path,
        files_dir: Path,
        log: LogFn,
    ) -> None:
        self.spec = spec
        self._s3 = s3_client
        self.workspace_root = workspace_root
        self.files_dir = files_dir
        self.log = log
        self.downloaded: list[list[Transferred]] = [[] for _ in spec.inputs]
        self.uploaded: list[Transferred] = []
        self.flags: list[str] = []
        self.post_copy: list[PostCopyResult] = []

    @classmethod
    def rendered(
        cls, spec: TransfersSpec, render: Callable[[str, str], str], **kwargs: Any
    ) -> TransferPhase:
        """The phase for ``spec`` with its locations rendered (``render(text, path)``)."""
        return cls(spec.render(render), **kwargs)

    @property
    def empty(self) -> bool:
        return not (self.spec.inputs or self.spec.outputs)

    def download(self) -> None:
        """Download every input into ``files/<dest>/``. Downloaded files are data: they are
        never rendered as templates (this runs after ``files/`` was rendered)."""
        for index, spec in enumerate(self.spec.inputs):
            where = f"transfers.inputs[{index}]"
            try:
                items = download_inputs(self._s3(), spec, self.files_dir)
            except TransferError as exc:
                raise TransferError(f"{where}: {exc}") from None
            self.downloaded[index] = items
            dest = f"files/{spec.dest}" if spec.dest else "files"
            self.log(
                f"{where}: downloaded {len(items)} object(s) from "
                f"s3://{spec.bucket}/{spec.criteria().prefix} into {dest}/"
            )

    def publish(self) -> None:
        """After every task succeeded: outputs, then flag files, then post-copy actions."""
        flags: list[tuple[int, str, str, bool]] = []
        for index, spec in enumerate(self.spec.outputs):
            where = f"transfers.outputs[{index}]"
            try:
                items = upload_outputs(
                    self._s3(), dataclasses.replace(spec, flag=None), self.workspace_root
                )
            except TransferError as exc:
                raise TransferError(f"{where}: {exc}; no flag file written") from None
            self.uploaded.extend(items)
            folder = f"s3://{spec.bucket}/{normalize_prefix(spec.directory)}"
            self.log(f"{where}: uploaded {len(items)} file(s) to {folder}")
            if spec.flag:
                flags.append((index, spec.bucket, spec.flag, not spec.disable_bucket_owner_acl))
        for index, bucket, key, acl in flags:
            try:
                uri = touch_flag(self._s3(), bucket, key, acl=acl)
            except TransferError as exc:
                raise TransferError(f"transfers.outputs[{index}]: {exc}") from None
            self.flags.append(uri)
            self.log(f"transfers.outputs[{index}]: flag {uri}")
        for index, source in enumerate(self.spec.inputs):
            if source.post_copy is None or not self.downloaded[index]:
                continue
            where = f"transfers.inputs[{index}].post_copy"
            try:
                results = apply_input_post_copy(self._s3(), source, self.downloaded[index])
            except TransferError as exc:
                raise TransferError(f"{where}: {exc}") from None
            self.post_copy.extend(results)
            counts: dict[str, int] = {}
            for result in results:
                counts[result.status] = counts.get(result.status, 0) + 1
            shown = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
            self.log(f"{where}: {source.post_copy.action}: {shown}")

    def to_dict(self) -> dict[str, Any]:
        """URIs and statuses (no local paths, no sizes, no content)."""
        return {
            "inputs": [
                {"uri": item.uri, "status": "downloaded"}
                for items in self.downloaded
                for item in items
            ],
            "outputs": [{"uri": item.uri, "status": "uploaded"} for item in self.uploaded],
            "flags": [{"uri": uri, "status": "written"} for uri in self.flags],
            "post_copy": [result.to_dict() for result in self.post_copy],
        }
