"""The run context: when a run happens and which data interval it covers.

Airflow fills it from the task's ``data_interval_start``/``data_interval_end``; the CLI
from ``--start-at``/``--end-at`` (or ``HANDOFF_START_AT``/``HANDOFF_END_AT`` in the
container). Templates see it as variables, commands as environment variables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from handoff_provider.core.errors import ConfigurationError

#: Environment variables a run exports to every command (and that the container reads back).
ENV_START_AT = "HANDOFF_START_AT"
ENV_END_AT = "HANDOFF_END_AT"
ENV_RUN_KEY = "HANDOFF_RUN_KEY"
ENV_LOGICAL_DATE = "HANDOFF_LOGICAL_DATE"
#: Who started the run, as a JSON object (Airflow: dag_id, run_id, task_id, map_index,
#: try_number); recorded in ``run.json`` so that a reader can link a run to its task try.
ENV_ORIGIN = "HANDOFF_ORIGIN"


def parse_timestamp(value: str, *, name: str) -> datetime:
    """Parse an ISO 8601 timestamp (a date alone means midnight UTC); naive means UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(
            f"{name}: {value!r} is not an ISO 8601 timestamp (e.g. 2024-01-31T00:00:00+00:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


@dataclass(frozen=True)
class RunContext:
    """When the run started and which data interval it processes (both ends optional)."""

    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    start_at: datetime | None = None
    end_at: datetime | None = None
    logical_date: datetime | None = None
    run_key: str | None = None
    #: Who started the run (see ``ENV_ORIGIN``): plain strings and numbers, never a secret.
    origin: Mapping[str, str | int] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.start_at and self.end_at and self.start_at > self.end_at:
            raise ConfigurationError(
                f"start_at ({self.start_at.isoformat()}) is after "
                f"end_at ({self.end_at.isoformat()})"
            )

    @classmethod
    def from_strings(
        cls,
        *,
        start_at: str | None = None,
        end_at: str | None = None,
        logical_date: str | None = None,
        run_key: str | None = None,
        origin: str | None = None,
    ) -> RunContext:
        """Build from CLI options, falling back to the ``HANDOFF_*`` environment variables."""
        start = start_at or os.environ.get(ENV_START_AT) or None
        end = end_at or os.environ.get(ENV_END_AT) or None
        logical = logical_date or os.environ.get(ENV_LOGICAL_DATE) or None
        origin_text = origin or os.environ.get(ENV_ORIGIN) or None
        return cls(
            start_at=parse_timestamp(start, name="start_at") if start else None,
            end_at=parse_timestamp(end, name="end_at") if end else None,
            logical_date=parse_timestamp(logical, name="logical_date") if logical else None,
            run_key=run_key or os.environ.get(ENV_RUN_KEY) or None,
            origin=parse_origin(origin_text) if origin_text else None,
        )

    def as_variables(self) -> dict[str, object]:
        """Template variables: ``run_started_at``, ``start_at``, ``end_at``, ``ds``, ..."""
        variables: dict[str, object] = {
            "run_started_at": self.started_at.isoformat(),
            "start_at": self.start_at.isoformat() if self.start_at else None,
            "end_at": self.end_at.isoformat() if self.end_at else None,
            "data_interval_start": self.start_at.isoformat() if self.start_at else None,
            "data_interval_end": self.end_at.isoformat() if self.end_at else None,
            "run_key": self.run_key,
        }
        logical = self.logical_date or self.start_at
        variables["logical_date"] = logical.isoformat() if logical else None
        variables["ds"] = logical.date().isoformat() if logical else None
        return variables

    def data_interval(self) -> dict[str, str | None]:
        """``{"start", "end"}`` as ISO strings (None when open), for ``run.json``."""
        return {
            "start": self.start_at.isoformat() if self.start_at else None,
            "end": self.end_at.isoformat() if self.end_at else None,
        }

    def as_env(self) -> dict[str, str]:
        """Environment variables exported to every command (only those that are set)."""
        env: dict[str, str] = {}
        if self.start_at:
            env[ENV_START_AT] = self.start_at.isoformat()
        if self.end_at:
            env[ENV_END_AT] = self.end_at.isoformat()
        if self.logical_date:
            env[ENV_LOGICAL_DATE] = self.logical_date.isoformat()
        if self.run_key:
            env[ENV_RUN_KEY] = self.run_key
        if self.origin:
            env[ENV_ORIGIN] = origin_text(self.origin)
        return env


def origin_text(origin: Mapping[str, str | int]) -> str:
    """``origin`` as the value of ``HANDOFF_ORIGIN``."""
    return json.dumps(dict(origin), sort_keys=True, separators=(",", ":"))


def parse_origin(text: str) -> dict[str, str | int]:
    """``HANDOFF_ORIGIN``: a JSON object of strings and integers."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int)) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise ConfigurationError(
            f"{ENV_ORIGIN}: not a JSON object of strings and integers "
            '(e.g. {"dag_id": "d", "run_id": "r", "task_id": "t"})'
        )
    return value
