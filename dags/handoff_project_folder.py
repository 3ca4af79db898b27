"""Airflow DAGs, one per project folder of ``examples/projects`` (subfolders with project.yml).

Adding a project folder adds a DAG; nothing else to write. These run each project
straight from its folder on the worker (``mode="run_local"``: no config in SSM), archiving
artifacts to ``s3://$HANDOFF_BUCKET/folder-<project>/``.
"""

import os

from handoff_provider.dag_factory import handoff_dags_for_folder

globals().update(
    handoff_dags_for_folder(
        "../examples/projects",
        dag_id_prefix="handoff_folder_",
        stack_prefix=os.environ.get("HANDOFF_STACK_PREFIX", "") + "folder-",
        bucket=os.environ.get("HANDOFF_BUCKET", "handoff-demo"),
        mode="run_local",
        schedule=None,
    )
)
