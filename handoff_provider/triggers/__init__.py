"""Triggers of the handoff provider (run in the Airflow triggerer for deferrable tasks)."""
