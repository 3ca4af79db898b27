"""The DAG factory's error, in the package's one hierarchy (``HandoffError``)."""

from __future__ import annotations

from handoff_provider.core.errors import ConfigurationError

__all__ = ["HandoffDagError"]


class HandoffDagError(ConfigurationError, ValueError):
    """The factory's arguments or a project's schedule can't make a DAG. Raised at parse
    time, so the DAG file fails to import with this one line. (A ``ValueError`` too, as it
    was before it joined the hierarchy.)"""
