"""Airflow DAG for the seed project ``cat files/lines.txt | wc -l``: push config, files, run.

Stack and bucket come from the environment (``HANDOFF_BUCKET``; ``HANDOFF_STACK_PREFIX``
prefixes the stack name), so the same file works locally, in the demo and on MWAA.
"""

import os

from handoff_provider.dag_factory import handoff_dag

dag = handoff_dag(
    "../examples/projects/01_word_count",  # relative to this file
    dag_id="handoff_word_count",
    stack=os.environ.get("HANDOFF_STACK_PREFIX", "") + "word-count",
    bucket=os.environ.get("HANDOFF_BUCKET", "handoff-demo"),
    schedule=None,  # manual / backfill only
)
