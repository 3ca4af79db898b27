"""Airflow hooks of the handoff provider."""
