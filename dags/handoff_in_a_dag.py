"""A handoff project as one step of a bigger DAG, and a DAG scheduled on its result.

``HandoffTaskGroup`` adds the project's tasks (push config, push files, run) to an existing
DAG. The run declares ``s3://<bucket>/<stack>/last/`` as an outlet asset, so
``handoff_after_word_count`` runs whenever a word-count run published new artifacts.

**Reading what happened.** The asset event of ``last/`` carries an ``extra`` (see
``handoff_provider.asset_events``): ``run_key``, ``data_interval`` (``start``/``end``),
``status``, ``tasks`` (name -> status), ``bytes_out``, ``artifacts`` (``uri``, ``files``,
``bytes``) and ``state`` (``size`` and ``sha256`` of the published state, never its
content). A downstream task gets them with ``triggering_extras(context)``, on Airflow 3
(``triggering_asset_events``) and 2.x (``triggering_dataset_events``) alike, as
``report_new_artifacts`` below does.
"""

import os
from datetime import datetime, timezone

from handoff_provider._compat import DAG, Asset
from handoff_provider.asset_events import triggering_extras
from handoff_provider.dag_factory import HandoffTaskGroup

try:  # Airflow 3
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import PythonOperator
except ImportError:  # Airflow 2.10
    from airflow.operators.empty import EmptyOperator
    from airflow.operators.python import PythonOperator

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


def report_new_artifacts(**context):
    """What the triggering word-count run(s) published, from the asset events alone."""
    for extra in triggering_extras(context):
        state = extra.get("state") or {}
        print(
            f"run {extra.get('run_key')} ({extra.get('status')}) for "
            f"{extra.get('data_interval')}: tasks {extra.get('tasks')}, "
            f"{extra.get('bytes_out')} bytes out; state {state.get('size')} bytes, "
            f"sha256 {state.get('sha256')}"
        )
    return triggering_extras(context)


with DAG(
    "handoff_after_word_count",
    schedule=[Asset(f"s3://{BUCKET}/{STACK}/last/")],
    start_date=START,
    catchup=False,
    tags=["handoff"],
):
    PythonOperator(task_id="use_the_new_artifacts", python_callable=report_new_artifacts)
