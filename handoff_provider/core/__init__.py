"""The Airflow-free core of handoff: project model, templating, workspace, runner, stores, CLI."""
