"""Push a project to its stack: config to SSM, ``files/`` to S3.

``HandoffConfigPushOperator`` compiles ``project.yml`` + ``config/`` (validating it) and
stores the document as the stack's SSM SecureString; ``HandoffFilesPushOperator`` syncs
``files/`` to ``s3://<bucket>/<stack>/files/`` by content. Both return a small summary
(parameter name, tier, sizes, file counts), never a config value, and register every
config value with the secrets masker before doing anything else.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from handoff_provider._compat import (
    AirflowException,
    airflow_sensitive_words,
    aws_template_fields,
)
from handoff_provider.masking import mask_values
from handoff_provider.operators.base import HandoffBaseOperator


class _HandoffPushOperator(HandoffBaseOperator):
    """A push of ``project_dir`` to the stack's stores; subclasses say what it pushes."""

    ui_color = "#f4f0e8"

    #: what the operator pushes, in its log line and failure message
    _what: str
    #: the project directory (each subclass's ``__init__`` sets it: see ``HandoffBaseOperator``)
    project_dir: str

    def execute(self, context: Any) -> dict[str, Any]:
        from handoff_provider.core.errors import HandoffError

        project_dir = Path(self.project_dir).expanduser()
        try:
            result = self._push(project_dir)
        except HandoffError as exc:
            raise AirflowException(f"handoff {self._what} push failed: {exc}") from None
        self.log.info("%s of %s pushed: %s", self._what, project_dir, result)
        return result.to_dict()

    def _push(self, project_dir: Path) -> Any:
        """Push ``project_dir``; returns the store's result (``to_dict()`` is the XCom)."""
        raise NotImplementedError


class HandoffConfigPushOperator(_HandoffPushOperator):
    """Compile a project (``project.yml`` + ``config/``) and store it in SSM.

    :param project_dir: the project directory.
    :param stack: the stack (``HANDOFF_STACK``/``STACK_NAME``); the parameter is
        ``/handoff/<stack>/config`` unless ``config_name`` says otherwise.
    :param bucket: the S3 bucket (``HANDOFF_BUCKET``/``S3_BUCKET_NAME``): only used for
        documents too large for SSM (stored as an SSE-KMS object referenced from SSM).
    :param allow_advanced_tier: allow SSM's Advanced tier (up to 8 KB, billed) instead of
        moving a 4-8 KB document to S3.
    :param kms_key_id: KMS key for the SecureString (and the S3 object); default the
        account's ``alias/aws/ssm``.
    :param config_name: the SSM parameter (default ``/handoff/<stack>/config``).

    The AWS arguments (``aws_conn_id``, ``region_name``, ``verify``, ``botocore_config``)
    are those of :class:`~handoff_provider.operators.base.HandoffBaseOperator`.

    Returns (XCom) ``{"name", "tier", "bytes", "object_uri", "version"}``.
    """

    template_fields: Sequence[str] = aws_template_fields(
        "project_dir", "stack", "bucket", "config_name", "botocore_config"
    )
    _what = "config"

    def __init__(
        self,
        *,
        project_dir: str | os.PathLike[str],
        allow_advanced_tier: bool = False,
        stack: str | None = None,
        bucket: str | None = None,
        config_name: str | None = None,
        kms_key_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project_dir = os.fspath(project_dir)
        self.allow_advanced_tier = allow_advanced_tier
        self._name_stores(stack, bucket, config_name, kms_key_id)

    def _push(self, project_dir: Path) -> Any:
        from handoff_provider.core.load.project import load_project

        project = load_project(project_dir)
        mask_values(project.secret_values(airflow_sensitive_words()))
        return self.remote().config.push(
            dict(project.document), allow_advanced_tier=self.allow_advanced_tier
        )


class HandoffFilesPushOperator(_HandoffPushOperator):
    """Sync a project's ``files/`` to ``s3://<bucket>/<stack>/files/`` (by content).

    Unchanged files are not uploaded again; files deleted locally are deleted remotely.
    A project without ``files/`` syncs an empty folder (removing stale remote files).

    Returns (XCom) counts: ``uploaded``, ``deleted``, ``unchanged``, ``bytes_transferred``.
    """

    template_fields: Sequence[str] = aws_template_fields(
        "project_dir", "stack", "bucket", "botocore_config"
    )
    _what = "files"

    def __init__(
        self,
        *,
        project_dir: str | os.PathLike[str],
        stack: str | None = None,
        bucket: str | None = None,
        config_name: str | None = None,
        kms_key_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project_dir = os.fspath(project_dir)
        self._name_stores(stack, bucket, config_name, kms_key_id)

    def _push(self, project_dir: Path) -> Any:
        return self.remote().files.push(project_dir / "files")
