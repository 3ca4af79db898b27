"""Running a project: the flows (orchestrate), the runner, pipelines, workspace and venvs."""
