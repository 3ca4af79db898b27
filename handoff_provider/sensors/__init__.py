"""Sensors of the handoff provider."""
