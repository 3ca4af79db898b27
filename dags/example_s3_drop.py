"""Airflow DAG: wait for CSV drops in S3, then run the ``03_s3_drop`` project on them.

``watch`` (``HandoffS3FileSensor``) waits until ``s3://$HANDOFF_BUCKET/<stack>/inbox/``
holds a ``*.csv`` file at least 30 seconds old (its writer is done). ``process``
(``HandoffRunOperator``) then runs ``examples/projects/03_s3_drop``, whose ``transfers``
download the drops into ``files/inbox/``, sum their ``amount`` column, upload the totals to
``<stack>/outbox/`` followed by the flag ``<stack>/outbox/_SUCCESS.flg``, and only then move
the drops to ``<stack>/archive/<run key>/``. A failed run publishes nothing and leaves the
drops in ``inbox/``: clearing the task retries on the same files.

Stack and bucket come from the environment (``HANDOFF_BUCKET``; ``HANDOFF_STACK_PREFIX``
prefixes the stack name) like the other example DAGs; the project reads them as the
``{{ stack }}`` and ``{{ bucket }}`` template variables.
"""

import os
from datetime import datetime, timezone
from pathlib import Path

from handoff_provider._compat import DAG
from handoff_provider.operators.run import HandoffRunOperator
from handoff_provider.sensors.s3_file import HandoffS3FileSensor

PROJECT = Path(__file__).resolve().parent.parent / "examples" / "projects" / "03_s3_drop"
BUCKET = os.environ.get("HANDOFF_BUCKET", "handoff-demo")
STACK = os.environ.get("HANDOFF_STACK_PREFIX", "") + "s3-drop"

with DAG(
    "handoff_s3_drop",
    schedule="@hourly",
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # two runs must not pick up the same drops
    tags=["handoff", "s3"],
    doc_md=__doc__,
) as dag:
    watch = HandoffS3FileSensor(
        task_id="watch",
        bucket=BUCKET,
        prefix=f"{STACK}/inbox",
        file_regex=r"[\w.-]+\.csv",  # the project's transfers.inputs[0].file_regex
        min_age=30,
        mode="reschedule",  # frees the worker slot between checks (or deferrable=True)
        poke_interval=120,
        timeout=6 * 3600,
        soft_fail=True,  # no drop this hour: skipped, not failed
    )
    process = HandoffRunOperator(
        task_id="process",
        project_dir=str(PROJECT),
        stack=STACK,
        bucket=BUCKET,
    )
    watch >> process
