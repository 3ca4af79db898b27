"""A handoff project as one step of a bigger DAG, and a DAG scheduled on its result.

``HandoffTaskGroup`` adds the project's tasks (push config, push files, run) to an existing
DAG. The run declares ``s3://<bucket>/<stack>/last/`` as an outlet asset, so
``handoff_after_word_count`` runs whenever a word-count run published new artifacts.
"""

import os
from datetime import datetime, timezone

from handoff_provider._compat import DAG, Asset
from handoff_provider.dag_factory import HandoffTaskGroup

try:  # Airflow 3
    from airflow.providers.standard.operators.empty import EmptyOperator
except ImportError:  # Airflow 2.10
    from airflow.operators.empty import EmptyOperator

BUCKET = os.environ.get("HANDOFF_BUCKET", "handoff-demo")
STACK = os.environ.get("HANDOFF_STACK_PREFIX", "") + "composed-word-count"
START = datetime(2024, 1, 1, tzinfo=timezone.utc)

with DAG("handoff_in_a_dag", schedule=None, start_date=START, catchup=False, tags=["handoff"]):
    before = EmptyOperator(task_id="before")
    word_count = HandoffTaskGroup(
        "../examples/projects/01_word_count", group_id="word_count", stack=STACK, bucket=BUCKET
    )
    after = EmptyOperator(task_id="after")
    before >> word_count >> after

with DAG(
    "handoff_after_word_count",
    schedule=[Asset(f"s3://{BUCKET}/{STACK}/last/")],
    start_date=START,
    catchup=False,
    tags=["handoff"],
):
    EmptyOperator(task_id="use_the_new_artifacts")
