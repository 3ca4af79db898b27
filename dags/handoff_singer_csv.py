"""Airflow DAG for the Singer example (tap | stats | CSV target, incremental via its state).

Scheduled from the project's own ``schedules`` (``0 6 * * ? *``, AWS syntax -> ``0 6 * * *``).
Each run processes its data interval: the project's ``start_date`` var is
``{{ start_at }}``, the run's ``data_interval_start``; ``vars`` here could override it.
"""

import os
from datetime import timedelta

from handoff_provider.dag_factory import handoff_dag

dag = handoff_dag(
    "../examples/projects/02_singer_csv",
    dag_id="handoff_singer_csv",
    stack=os.environ.get("HANDOFF_STACK_PREFIX", "") + "singer-csv",
    bucket=os.environ.get("HANDOFF_BUCKET", "handoff-demo"),
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    run_kwargs={"execution_timeout": timedelta(hours=1)},
)
