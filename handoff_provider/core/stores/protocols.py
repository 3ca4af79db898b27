"""What the rest of handoff asks of each store, as structural protocols.

``Remote`` (``stores/__init__.py``) hands out its stores typed as these protocols, so
callers (orchestrate, the CLI, the operators) depend on the methods below and not on
the SSM/S3 classes. A second backend for one kind of store (say config documents in S3
objects, or a local directory for tests and air-gapped tries) is one new module with a
class that has these members, plus the line in ``Remote`` that builds it; mypy checks the
class against the protocol where ``Remote`` returns it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from handoff_provider.core.stores.artifacts import ArtifactsLocation, LastRef, RepairResult
    from handoff_provider.core.stores.config import ConfigPushResult
    from handoff_provider.core.stores.s3sync import SyncResult


class ConfigBackend(Protocol):
    """The compiled project document of one stack (today: an SSM SecureString)."""

    @property
    def name(self) -> str:
        """The document's name where it is stored (for logs and summaries)."""
        ...

    @property
    def resource(self) -> str:
        """How errors name the store (``SSM parameter /handoff/<stack>/config``)."""
        ...

    def push(
        self, document: dict[str, Any], *, allow_advanced_tier: bool = False
    ) -> ConfigPushResult: ...

    def fetch(self) -> dict[str, Any]: ...


class FilesBackend(Protocol):
    """The stack's run-time files (today: ``s3://<bucket>/<stack>/files/``)."""

    @property
    def uri(self) -> str: ...

    def push(self, local_dir: Path) -> SyncResult:
        """Make the remote copy an exact mirror of ``local_dir``."""
        ...

    def get(self, dest_dir: Path) -> SyncResult:
        """Make ``dest_dir`` an exact mirror of the remote copy."""
        ...


class ArtifactsBackend(Protocol):
    """Every run's archive and the last good run (today: ``runs/`` and ``last/`` in S3)."""

    @property
    def last_uri(self) -> str: ...

    def runs_prefix(self, run_key: str) -> str: ...

    def push(
        self,
        artifacts_dir: Path,
        run_key: str,
        *,
        succeeded: bool,
        publish: bool | None = None,
        base: LastRef | None = None,
        before_publish: Callable[[], None] | None = None,
    ) -> ArtifactsLocation: ...

    def publish_run(
        self, run_key: str, *, base: LastRef, before_publish: Callable[[], None] | None = None
    ) -> ArtifactsLocation:
        """Publish an archived run again (``handoff state rollback``)."""
        ...

    def read_last(self) -> LastRef: ...

    def read_manifest(self, prefix: str | None = None) -> dict[str, Any] | None: ...

    def get_last(self, dest_dir: Path) -> SyncResult: ...

    def restore_state(self, state_path: Path, last: LastRef | None = None) -> bool: ...

    def repair_last(self) -> RepairResult: ...
