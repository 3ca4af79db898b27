"""Operator extra links of the handoff provider."""

from handoff_provider.links.artifacts import HandoffArtifactsLink, artifacts_console_url

__all__ = ["HandoffArtifactsLink", "artifacts_console_url"]
