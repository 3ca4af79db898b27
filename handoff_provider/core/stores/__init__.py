"""The AWS stores of a stack: config (SSM), files and artifacts (S3).

``Remote(stack, bucket, client_factory=...)`` bundles them::

    remote = Remote.from_options(stack="etl", bucket="my-bucket")
    remote.config.push(document)          # SSM /handoff/etl/config
    remote.files.push(Path("project/files"))   # s3://my-bucket/etl/files/
    remote.artifacts.push(Path("ws/artifacts"), new_run_key(), succeeded=True)

Layout under the bucket (``core/layout.py``): ``<stack>/files/``,
``<stack>/runs/<run-key>/``, ``<stack>/last/``, ``<stack>/config/`` (config documents over
8 KB) and ``<stack>/lease.json`` (the stack lease, ``remote.lease(run_key)``). No Airflow
import here: the hook passes its own ``client_factory``; the CLI and the container use
botocore's default chain.
Creating a ``Remote`` makes no AWS call; clients are created on first use. Callers see
the stores as the protocols of ``stores/protocols.py``: a second backend is one module.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from handoff_provider.core import layout
from handoff_provider.core.aws.clients import ClientFactory, default_client_factory
from handoff_provider.core.aws.errors import translate
from handoff_provider.core.errors import ConfigurationError
from handoff_provider.core.layout import MANIFEST_NAME
from handoff_provider.core.model.run_key import new_run_key
from handoff_provider.core.stores.artifacts import (
    ArtifactsLocation,
    ArtifactsStore,
    LastRef,
    RepairResult,
)
from handoff_provider.core.stores.config import ConfigPushResult, ConfigStore
from handoff_provider.core.stores.files import FilesStore
from handoff_provider.core.stores.lease import StackLease
from handoff_provider.core.stores.protocols import ArtifactsBackend, ConfigBackend, FilesBackend
from handoff_provider.core.stores.s3sync import SyncResult

__all__ = [
    "MANIFEST_NAME",
    "ArtifactsBackend",
    "ArtifactsLocation",
    "ArtifactsStore",
    "ConfigBackend",
    "ConfigPushResult",
    "ConfigStore",
    "FilesBackend",
    "FilesStore",
    "LastRef",
    "Remote",
    "RepairResult",
    "StackLease",
    "SyncResult",
    "new_run_key",
]

_STACK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class Remote:
    """The stores of one stack; see the module docstring."""

    def __init__(
        self,
        stack: str,
        bucket: str | None,
        *,
        client_factory: ClientFactory,
        config_name: str | None = None,
        kms_key_id: str | None = None,
    ) -> None:
        if not stack or not _STACK_RE.match(stack) or ".." in stack:
            raise ConfigurationError(
                f"stack name {stack!r}: use letters, digits, '.', '_' and '-' (up to 128 "
                "characters; it names the SSM parameter and the S3 prefix)"
            )
        if bucket is not None and (
            bucket.startswith("s3://") or not bucket.strip() or bucket != bucket.strip()
        ):
            raise ConfigurationError(
                f"bucket {bucket!r}: give the bucket name alone (no s3://, no spaces)"
            )
        self.stack = stack
        self.bucket = bucket
        self.kms_key_id = kms_key_id
        self._factory = client_factory
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.config: ConfigBackend = ConfigStore(
            self.client,
            config_name or layout.config_parameter(stack),
            stack=stack,
            bucket=bucket,
            kms_key_id=kms_key_id,
        )

    @property
    def client_factory(self) -> ClientFactory:
        """The factory this remote makes its clients with (runs reuse it for ``ssm()``,
        transfers and Lambda steps)."""
        return self._factory

    @classmethod
    def from_options(
        cls,
        stack: str | None = None,
        bucket: str | None = None,
        config_name: str | None = None,
        kms_key_id: str | None = None,
        client_factory: ClientFactory | None = None,
    ) -> Remote:
        """Options first, then ``HANDOFF_STACK``/``STACK_NAME`` and
        ``HANDOFF_BUCKET``/``S3_BUCKET_NAME``. The stack is required; the bucket only by
        the S3 stores (an error names what to set when they are used without one)."""
        stack = layout.stack_name(stack)
        bucket = layout.bucket_name(bucket)
        if not stack:
            raise ConfigurationError(
                "no stack name: pass --stack or set HANDOFF_STACK (or STACK_NAME)"
            )
        return cls(
            stack,
            bucket or None,
            client_factory=client_factory or default_client_factory(),
            config_name=config_name,
            kms_key_id=kms_key_id,
        )

    def client(self, service_name: str) -> Any:
        """The (cached) botocore client for ``service_name``."""
        with self._lock:
            client = self._clients.get(service_name)
            if client is None:
                try:
                    client = self._factory(service_name)
                except Exception as exc:
                    translate(
                        exc, action="create client for", resource=service_name, service=service_name
                    )
                self._clients[service_name] = client
            return client

    def require_bucket(self) -> str:
        """The bucket, or the one-line error that names what to set."""
        if not self.bucket:
            raise ConfigurationError(
                "no S3 bucket: pass --bucket or set HANDOFF_BUCKET (or S3_BUCKET_NAME)"
            )
        return self.bucket

    @property
    def files(self) -> FilesBackend:
        """``s3://<bucket>/<stack>/files/``."""
        return FilesStore(
            lambda: self.client("s3"), self.require_bucket(), layout.files_prefix(self.stack)
        )

    @property
    def artifacts(self) -> ArtifactsBackend:
        """``s3://<bucket>/<stack>/runs/`` and ``last/``."""
        return ArtifactsStore(lambda: self.client("s3"), self.require_bucket(), self.stack)

    def lease(self, run_key: str, **options: Any) -> StackLease:
        """The stack lease ``s3://<bucket>/<stack>/lease.json`` for ``run_key``; ``options``
        are :class:`StackLease`'s (``operation``, ``ttl``, ``wait``, ``log``)."""
        return StackLease(
            lambda: self.client("s3"),
            self.require_bucket(),
            layout.lease_key(self.stack),
            run_key=run_key,
            **options,
        )

    def describe(self) -> dict[str, str | None]:
        """Where this stack's things live (no values): for logs, summaries, the demo."""
        bucket, stack = self.bucket, self.stack

        def uri(key: str) -> str | None:
            return layout.s3_uri(bucket, key) if bucket else None

        return {
            "stack": stack,
            "config_parameter": self.config.name,
            "files_uri": uri(layout.files_prefix(stack)),
            "runs_uri": uri(layout.runs_root(stack)),
            "last_uri": uri(layout.last_prefix(stack)),
            "lease_uri": uri(layout.lease_key(stack)),
        }

    def __repr__(self) -> str:
        return f"Remote(stack={self.stack!r}, bucket={self.bucket!r}, config={self.config.name!r})"
