"""Airflow 2.10 / 3.x compatibility: the one place that knows where things live.

Everything in the Airflow layer imports Airflow's own names (``airflow.*``, ``airflow.sdk``)
from here, never directly, so supporting a new Airflow line is a change to this module
only. The version flags follow the Amazon provider's ``version_compat.py``; this module
deliberately does not depend on ``apache-airflow-providers-common-compat``'s ``sdk`` module.
The Amazon provider's base classes that every handoff operator, hook and link builds on
are imported here too (present, in this shape, in every supported version: 9.0.0 and
later); its service-specific classes (ECS, S3, logs) are imported by the one module that
uses them.

Besides the gated imports it holds the small accessors the operators share (ours and the
ECS one): reading the run's data interval and identity from a task context whatever the
Airflow line, the per-try run key, and the provider settings (``[handoff]`` section).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION

# The Amazon provider's shape of an AWS operator: ``aws_hook_class``, a cached ``hook``
# built from aws_conn_id/region_name/verify/botocore_config, ``aws_template_fields()``.
from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

# Triggers run in the triggerer; their base class has stayed in airflow.triggers.base.
from airflow.triggers.base import BaseTrigger, TriggerEvent


@functools.cache
def get_base_airflow_version_tuple() -> tuple[int, int, int]:
    """``(major, minor, micro)`` of the installed Airflow, pre-release suffixes dropped."""
    from packaging.version import Version

    version = Version(AIRFLOW_VERSION)
    return version.major, version.minor, version.micro


AIRFLOW_V_3_0_PLUS: bool = get_base_airflow_version_tuple() >= (3, 0, 0)
AIRFLOW_V_3_1_PLUS: bool = get_base_airflow_version_tuple() >= (3, 1, 0)

if AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import (
        DAG,
        Asset,
        BaseOperator,
        BaseOperatorLink,
        BaseSensorOperator,
        PokeReturnValue,
        TaskGroup,
    )

    try:
        from airflow.sdk.exceptions import AirflowException
    except ImportError:  # 3.0
        from airflow.exceptions import AirflowException  # type: ignore[no-redef]
    try:
        from airflow.sdk.exceptions import AirflowSensorTimeout
    except ImportError:  # 3.0, 3.1
        from airflow.exceptions import AirflowSensorTimeout  # type: ignore[no-redef,assignment]
else:
    from airflow.datasets import Dataset as Asset  # type: ignore[no-redef,assignment]
    from airflow.exceptions import (  # type: ignore[no-redef,assignment]
        AirflowException,
        AirflowSensorTimeout,
    )
    from airflow.models.baseoperator import BaseOperator  # type: ignore[no-redef,assignment]
    from airflow.models.baseoperatorlink import (  # type: ignore[no-redef,assignment]
        BaseOperatorLink,
    )
    from airflow.models.dag import DAG  # type: ignore[no-redef,assignment]
    from airflow.sensors.base import (  # type: ignore[no-redef,assignment]
        BaseSensorOperator,
        PokeReturnValue,
    )
    from airflow.utils.task_group import TaskGroup  # type: ignore[no-redef,assignment]

try:  # Airflow 3.1+: the Task SDK's exceptions (airflow.exceptions keeps deprecated aliases)
    from airflow.sdk.exceptions import AirflowSkipException, AirflowTaskTimeout
except ImportError:  # 2.x, 3.0
    from airflow.exceptions import (  # type: ignore[no-redef,assignment]
        AirflowSkipException,
        AirflowTaskTimeout,
    )

try:  # interval timetables: the data interval is the whole period (2.x cron semantics)
    from airflow.sdk import CronDataIntervalTimetable, DeltaDataIntervalTimetable
except ImportError:  # 2.x, 3.0
    from airflow.timetables.interval import (  # type: ignore[no-redef,assignment]
        CronDataIntervalTimetable,
        DeltaDataIntervalTimetable,
    )

if AIRFLOW_V_3_1_PLUS:
    from airflow.sdk import BaseHook
else:  # airflow.sdk.BaseHook does not exist before 3.1
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,assignment]

if AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import Context
else:
    from airflow.utils.context import Context  # type: ignore[no-redef,assignment]


def plugin_views_in_the_ui() -> bool:
    """Whether the Airflow 3 UI lists plugin pages (``AirflowPlugin.external_views``, 3.1+).

    That UI opens such a page with its login in the ``_token`` cookie, which Airflow's own
    ``get_user`` reads. Airflow 3.0's UI moves the cookie into the browser's local storage
    and sends it only as a header of its own API calls, so a plugin page opened in the
    browser carries no login and cannot be served behind it. Imported on first use (only
    the runs view's plugin needs it).
    """
    from airflow.plugins_manager import AirflowPlugin

    return hasattr(AirflowPlugin, "external_views")


def _import_mask_secret() -> Any:
    """Airflow's ``mask_secret`` for this line (the task SDK one also tells the supervisor)."""
    if AIRFLOW_V_3_0_PLUS:
        try:
            from airflow.sdk.log import mask_secret
        except ImportError:  # 3.0
            from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore
    else:
        from airflow.utils.log.secrets_masker import mask_secret  # type: ignore[no-redef]
    return mask_secret


airflow_mask_secret = _import_mask_secret()


def airflow_redact(value: Any) -> Any:
    """Airflow's secrets masker applied to ``value`` (strings, nested dicts/lists): what the
    task log would show. Imported on first use (only lineage needs it)."""
    if AIRFLOW_V_3_0_PLUS:
        try:
            from airflow.sdk.log import redact
        except ImportError:  # 3.0
            from airflow.sdk.execution_time.secrets_masker import redact  # type: ignore
    else:
        from airflow.utils.log.secrets_masker import redact  # type: ignore[no-redef]
    return redact(value)


def _default_sensitive_fields() -> frozenset[str]:
    """Airflow's ``DEFAULT_SENSITIVE_FIELDS`` (the core's copy if it moved again)."""
    try:
        from airflow.sdk._shared.secrets_masker import DEFAULT_SENSITIVE_FIELDS
    except ImportError:
        try:
            from airflow.utils.log.secrets_masker import (  # type: ignore[no-redef,import-not-found]
                DEFAULT_SENSITIVE_FIELDS,
            )
        except ImportError:
            from handoff_provider.core.model.secrets import SENSITIVE_KEY_WORDS

            return SENSITIVE_KEY_WORDS
    return frozenset(DEFAULT_SENSITIVE_FIELDS)


def default_deferrable() -> bool:
    """``[operators] default_deferrable`` as Airflow's own operators read it (its boolean
    rule: ``true``/``t``/``1``), but when the operator is built rather than imported, and
    False for a value Airflow would refuse."""
    try:
        return bool(_conf().getboolean("operators", "default_deferrable", fallback=False))
    except Exception:  # not a boolean: Airflow's operators would fail to import
        return False


def airflow_sensitive_words() -> frozenset[str]:
    """The key words Airflow hides connection extras and variables by: its defaults plus
    ``[core] sensitive_var_conn_names`` (comma-separated)."""
    extra = airflow_setting("core", "sensitive_var_conn_names", "") or ""
    words = {word.strip().lower() for word in extra.split(",") if word.strip()}
    return _default_sensitive_fields() | words


def _conf() -> Any:
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # Airflow 2.x and 3.0/3.1
        from airflow.configuration import conf
    return conf


#: Provider settings: ``[handoff] <key>`` in airflow.cfg or ``AIRFLOW__HANDOFF__<KEY>``.
PROVIDER_SECTION = "handoff"


def provider_setting(key: str, fallback: str | None = None) -> str | None:
    """A ``[handoff]`` setting; ``fallback`` when unset or empty (never raises)."""
    try:
        value = _conf().get(PROVIDER_SECTION, key, fallback=fallback)
    except Exception:  # a broken config must not break a task over an optional setting
        return fallback
    return value if value not in (None, "") else fallback


def airflow_setting(section: str, key: str, fallback: str | None = None) -> str | None:
    """Any Airflow setting, ``fallback`` when unset (never raises)."""
    try:
        return _conf().get(section, key, fallback=fallback)
    except Exception:
        return fallback


# --------------------------------------------------------------------------- context


def _as_utc(value: Any) -> datetime | None:
    """A context timestamp (pendulum or datetime, maybe None) as an aware stdlib datetime."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:  # Airflow's are always aware; be safe with hand-made contexts
        value = value.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(value.timestamp(), tz=timezone.utc)


def context_data_interval(context: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The run's ``(data_interval_start, data_interval_end)``.

    A run without a data interval (an Airflow 3 manual run has no logical date and so no
    interval) gets the empty interval at :func:`context_run_time`: ``start == end``, the
    run's logical date if it has one, else the time it was triggered.
    """
    start = _as_utc(context.get("data_interval_start"))
    end = _as_utc(context.get("data_interval_end"))
    if start is None and end is None and (dag_run := context.get("dag_run")) is not None:
        start = _as_utc(getattr(dag_run, "data_interval_start", None))
        end = _as_utc(getattr(dag_run, "data_interval_end", None))
    if start is None and end is None:
        start = end = context_run_time(context)
    return start, end


def context_run_time(context: Mapping[str, Any]) -> datetime | None:
    """The logical date of the run, else when it was triggered (``run_after`` on Airflow 3),
    else when it was queued or started."""
    logical = context_logical_date(context)
    if logical is not None:
        return logical
    dag_run = context.get("dag_run")
    for name in ("run_after", "queued_at", "start_date"):
        value = _as_utc(getattr(dag_run, name, None))
        if value is not None:
            return value
    return None


def fill_missing_data_interval(context: Any) -> None:
    """Give a context without a data interval (an Airflow 3 manual run) the one of
    :func:`context_data_interval`, so ``{{ data_interval_start | ds }}`` and ``{{ ds }}``
    render in operator templates as on a scheduled run. A no-op when it has one."""
    if context.get("data_interval_start") is not None:
        return
    start, end = context_data_interval(context)
    if start is None or end is None:
        return
    import pendulum  # Airflow's own datetime type: its template filters expect it

    context["data_interval_start"] = pendulum.instance(start)
    context["data_interval_end"] = pendulum.instance(end)
    if context.get("ds") is None:
        context["ds"] = start.strftime("%Y-%m-%d")
        context["ds_nodash"] = start.strftime("%Y%m%d")


def context_logical_date(context: Mapping[str, Any]) -> datetime | None:
    """The run's logical date (``execution_date`` on 2.x); ``None`` when the run has none."""
    value = context.get("logical_date")
    if value is None and (dag_run := context.get("dag_run")) is not None:
        value = getattr(dag_run, "logical_date", None)
    return _as_utc(value)


def context_task_identity(context: Mapping[str, Any]) -> dict[str, Any]:
    """``dag_id``, ``run_id``, ``task_id``, ``try_number`` and ``map_index`` of the running try."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", None)
    return {
        "dag_id": ti.dag_id,
        "run_id": ti.run_id,
        "task_id": ti.task_id,
        "try_number": int(getattr(ti, "try_number", None) or 1),
        "map_index": -1 if map_index is None else int(map_index),
    }


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Longest run key: S3 allows 1024-byte keys, but keys are also read by humans in consoles.
_MAX_READABLE = 160


def _sanitise(part: str) -> str:
    return _UNSAFE.sub("_", part).strip("._-") or "x"


def run_key_for(
    dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1
) -> str:
    """The artifacts run key of one task try: readable, S3-safe, unique per try.

    ``<dag_id>/<run_id>/<task_id>[.<map_index>]/try-<n>`` flattened with ``__`` and
    sanitised to ``[A-Za-z0-9._-]``; as sanitising could make two run ids equal (``:``
    and ``+`` both become ``_``), a short hash of the exact identity is appended. So a
    retry (new ``try_number``), a mapped task instance and concurrent backfill runs (new
    ``run_id``) never write to the same ``runs/<key>/`` prefix.
    """
    task = task_id if map_index is None or map_index < 0 else f"{task_id}.{map_index}"
    readable = "__".join(_sanitise(p) for p in (dag_id, run_id, task)) + f"__try{int(try_number)}"
    identity = "\0".join((dag_id, run_id, task_id, str(map_index), str(int(try_number))))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
    return f"{readable[:_MAX_READABLE].rstrip('._-')}-{digest}"


def run_key_from_context(context: Mapping[str, Any]) -> str:
    """:func:`run_key_for` the try the context belongs to."""
    return run_key_for(**context_task_identity(context))


def context_run_fields(context: Mapping[str, Any]) -> dict[str, Any]:
    """What a run knows of the try that starts it: ``start_at``/``end_at`` (the data
    interval), ``logical_date``, ``run_key`` and ``origin`` (the try's identity): the
    fields of the core's ``RunContext`` and of the container's environment alike."""
    start, end = context_data_interval(context)
    return {
        "start_at": start,
        "end_at": end,
        "logical_date": context_logical_date(context),
        "run_key": run_key_from_context(context),
        "origin": context_task_identity(context),
    }


__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_1_PLUS",
    "DAG",
    "PROVIDER_SECTION",
    "AirflowException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "AirflowTaskTimeout",
    "Asset",
    "AwsBaseHook",
    "AwsBaseOperator",
    "AwsBaseSensor",
    "BaseAwsLink",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "BaseTrigger",
    "Context",
    "CronDataIntervalTimetable",
    "DeltaDataIntervalTimetable",
    "PokeReturnValue",
    "TaskGroup",
    "TriggerEvent",
    "airflow_mask_secret",
    "airflow_redact",
    "airflow_sensitive_words",
    "airflow_setting",
    "aws_template_fields",
    "context_data_interval",
    "context_logical_date",
    "context_run_fields",
    "context_run_time",
    "context_task_identity",
    "default_deferrable",
    "fill_missing_data_interval",
    "plugin_views_in_the_ui",
    "provider_setting",
    "run_key_for",
    "run_key_from_context",
]
