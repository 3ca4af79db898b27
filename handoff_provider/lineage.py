"""OpenLineage for ``HandoffRunOperator`` and ``HandoffEcsRunOperator``.

Airflow's OpenLineage provider (``apache-airflow-providers-openlineage``) asks an operator
for ``get_openlineage_facets_on_start/_on_complete/_on_failure`` and turns the returned
``OperatorLineage`` into the run's START/COMPLETE/FAIL events. Both operators delegate to
:func:`run_lineage`; every OpenLineage import happens inside it, so a deployment without
the provider pays nothing (the methods are never called, nothing is imported).

Datasets follow OpenLineage's S3 naming (``namespace="s3://<bucket>"``, ``name=<key or
prefix>``):

* **inputs**: the stack's ``<stack>/files`` (runs from the remote config: the ECS
  container, ``HandoffRunOperator`` without ``project_dir``), the restored
  ``<stack>/last/state``, and each object the project's ``transfers.inputs`` downloaded;
* **outputs**: ``<stack>/runs/<run-key>`` (every try archives there), ``<stack>/last``
  (replaced only by a success) and each object ``transfers.outputs`` uploaded.

Facets once the run is over (complete or failed): ``handoff_run`` (run facet: run key,
status, per stage the task, command as written, exit code, status, seconds and bytes out,
and the totals) and ``handoff_commands`` (job facet: the project's commands as written,
passed through Airflow's secrets masker). Neither holds a rendered value, a config value or
the state's content. At START only the datasets known in advance are reported (no
transfer objects yet).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

__all__ = ["RunLineageMixin", "run_key_of", "run_lineage", "s3_dataset"]

#: Where the custom facets are described (their ``_schemaURL``): docs/lineage.md of this
#: package's documentation.
FACETS_DOC = "handoff-provider:docs/lineage.md"


def run_key_of(task_instance: Any) -> str | None:
    """The try's run key from the task instance the listener passes (None at START)."""
    from handoff_provider._compat import run_key_from_context

    return run_key_from_context({"ti": task_instance}) if task_instance is not None else None


def s3_dataset(bucket: str, key: str) -> Any:
    """An OpenLineage dataset for ``s3://bucket/key`` (a trailing ``/`` is dropped)."""
    from openlineage.client.event_v2 import Dataset

    return Dataset(namespace=f"s3://{bucket}", name=key.rstrip("/") or "/")


def _from_uri(uri: Any) -> Any:
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        return None
    bucket, _, key = uri[len("s3://") :].partition("/")
    return s3_dataset(bucket, key) if bucket else None


@functools.cache
def _facet_types() -> tuple[type, type]:
    """The custom facet classes, built on first use (they subclass OpenLineage's)."""
    import attr
    from openlineage.client.facet_v2 import JobFacet, RunFacet

    @attr.define
    class HandoffRunFacet(RunFacet):  # type: ignore[misc]
        """What a handoff run did: run key, status, every stage's outcome, totals."""

        runKey: str = ""
        status: str | None = None
        stages: list[dict[str, Any]] = attr.Factory(list)
        bytesOut: int = 0
        artifactsBytes: int | None = None

        @staticmethod
        def _get_schema() -> str:
            return f"{FACETS_DOC}#handoff_run"

    @attr.define
    class HandoffCommandsJobFacet(JobFacet):  # type: ignore[misc]
        """The project's commands as written (templates unrendered, secrets masked)."""

        commands: list[str] = attr.Factory(list)

        @staticmethod
        def _get_schema() -> str:
            return f"{FACETS_DOC}#handoff_commands"

    return HandoffRunFacet, HandoffCommandsJobFacet


def _stages(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    stages = []
    for task in summary.get("tasks") or []:
        for stage in task.get("stages") or []:
            stages.append(
                {
                    "task": task.get("name"),
                    "index": stage.get("index"),
                    "command": stage.get("command"),
                    "exitCode": stage.get("exit_code"),
                    "status": stage.get("status"),
                    "seconds": stage.get("seconds"),
                    "bytesOut": stage.get("bytes_out"),
                }
            )
    return stages


def _planned_datasets(
    stack: str | None,
    bucket: str | None,
    run_key: str | None,
    reads_remote_files: bool,
    archives: bool,
    summary: Mapping[str, Any] | None,
    failed: bool,
) -> tuple[list[Any], list[Any]]:
    """The stack's datasets a run reads and writes (``files/``, ``last/state``, its
    ``runs/<key>``, ``last/``), as far as ``summary`` (None at START) tells."""
    from handoff_provider.core import layout

    inputs: list[Any] = []
    outputs: list[Any] = []
    if not (bucket and stack):
        return inputs, outputs
    if reads_remote_files:
        inputs.append(s3_dataset(bucket, layout.files_prefix(stack).rstrip("/")))
    restores = reads_remote_files or archives  # a run with a remote restores its state
    if restores and (summary is None or summary.get("state_restored", True)):
        inputs.append(s3_dataset(bucket, layout.last_state_key(stack)))
    if archives and run_key:
        outputs.append(s3_dataset(bucket, layout.runs_prefix(stack, run_key).rstrip("/")))
    published = summary is None or (
        not failed and bool((summary.get("artifacts") or {}).get("last_uri"))
    )
    if archives and published:
        outputs.append(s3_dataset(bucket, layout.last_prefix(stack).rstrip("/")))
    return inputs, outputs


def run_lineage(
    *,
    stack: str | None,
    bucket: str | None,
    run_key: str | None,
    reads_remote_files: bool,
    archives: bool = True,
    summary: Mapping[str, Any] | None = None,
    failed: bool = False,
    redact: Any = None,
) -> Any:
    """The ``OperatorLineage`` of a run (module doc). ``summary`` is the run's summary
    (``RunOutcome.to_dict()`` or the container's ``run.json`` plus its location); without
    one (START) only the planned datasets are given. ``reads_remote_files``: the run mirrors
    ``<stack>/files``; ``archives``: it pushes its artifacts (``runs/``, ``last/``).
    ``redact`` masks the job facet's commands (Airflow's secrets masker)."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    inputs, outputs = _planned_datasets(
        stack, bucket, run_key, reads_remote_files, archives, summary, failed
    )
    if summary is None:
        return OperatorLineage(inputs=inputs, outputs=outputs)

    transfers = summary.get("transfers") or {}
    for kind, target in (("inputs", inputs), ("outputs", outputs)):
        for item in transfers.get(kind) or []:
            dataset = _from_uri(item.get("uri") if isinstance(item, Mapping) else item)
            if dataset is not None and dataset not in target:
                target.append(dataset)

    run_facet_type, job_facet_type = _facet_types()
    stages = _stages(summary)
    commands = [str(stage["command"]) for stage in stages if stage.get("command")]
    if redact is not None:
        commands = [str(redact(command)) for command in commands]
    artifacts = summary.get("artifacts") or {}
    run_facet = run_facet_type(
        runKey=str(summary.get("run_key") or run_key or ""),
        status=summary.get("status"),
        stages=stages,
        bytesOut=sum(int(stage["bytesOut"] or 0) for stage in stages),
        artifactsBytes=artifacts.get("bytes"),
    )
    return OperatorLineage(
        inputs=inputs,
        outputs=outputs,
        run_facets={"handoff_run": run_facet},
        job_facets={"handoff_commands": job_facet_type(commands=commands)},
    )


class RunLineageMixin:
    """The OpenLineage methods of both run operators: each says where its run reads and
    writes (:meth:`_lineage_target`) and records its summary in ``_lineage_summary``."""

    #: The finished try's summary (XCom or failed-run summary), None until then.
    _lineage_summary: dict[str, Any] | None = None

    def _lineage_target(self, summary: Mapping[str, Any] | None) -> dict[str, Any]:
        """``stack``, ``bucket``, ``reads_remote_files`` and ``archives`` of the run."""
        raise NotImplementedError

    def _lineage(self, task_instance: Any, summary: Mapping[str, Any] | None, failed: bool) -> Any:
        from handoff_provider._compat import airflow_redact

        return run_lineage(
            **self._lineage_target(summary),
            run_key=(summary or {}).get("run_key") or run_key_of(task_instance),
            summary=summary,
            failed=failed,
            redact=airflow_redact,
        )

    def get_openlineage_facets_on_start(self) -> Any:
        """Planned inputs/outputs (module doc); the run key, and so ``runs/<key>``, is not
        known to the provider yet at START."""
        return self._lineage(None, None, failed=False)

    def get_openlineage_facets_on_complete(self, task_instance: Any = None) -> Any:
        """Inputs/outputs of the finished run, with the ``handoff_run``/``handoff_commands``
        facets."""
        return self._lineage(task_instance, self._lineage_summary, failed=False)

    def get_openlineage_facets_on_failure(self, task_instance: Any = None) -> Any:
        """As on complete, for a failed run (no ``last/`` output)."""
        return self._lineage(task_instance, self._lineage_summary, failed=True)
