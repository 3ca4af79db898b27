"""Project schedules as Airflow schedules: the EventBridge cron converter and the timetable.

A project's ``schedules[].cron`` is an AWS EventBridge expression (6 fields with a year,
``?``, day-of-week 1-7 = SUN-SAT, ``rate(...)``); Airflow wants a 5-field cron or a
timedelta, and handoff wants whole periods as data intervals on every Airflow line.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from handoff_provider._compat import CronDataIntervalTimetable, DeltaDataIntervalTimetable
from handoff_provider.factory.errors import HandoffDagError

__all__ = ["airflow_schedule", "interval_timetable"]

_DOW_NUMBER = re.compile(r"\d+")
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$", re.I)


def _convert_dow(field: str, *, source: str) -> str:
    """AWS day-of-week numbers are 1-7 = SUN-SAT; cron's are 0-6 = SUN-SAT."""

    def shift(match: re.Match[str]) -> str:
        number = int(match.group())
        if not 1 <= number <= 7:
            raise HandoffDagError(
                f"{source}: day-of-week {number} out of range (AWS cron uses 1-7, SUN=1)"
            )
        return str(number - 1)

    converted = []
    for item in field.split(","):
        if "#" in item:  # 6#3: the third Friday; only the day is a day number
            day, nth = item.split("#", 1)
            converted.append(f"{_DOW_NUMBER.sub(shift, day)}#{nth}")
        elif "/" in item:  # 2/2 or 1-5/2: the step is a count, not a day
            days, step = item.split("/", 1)
            converted.append(f"{_DOW_NUMBER.sub(shift, days)}/{step}")
        else:
            converted.append(_DOW_NUMBER.sub(shift, item))
    return ",".join(converted)


def airflow_schedule(expression: str, *, source: str = "schedule") -> str | timedelta:
    """An EventBridge/handoff schedule expression as an Airflow ``schedule``.

    * ``0 0 * * ? *`` (AWS 6 fields: min hour day-of-month month day-of-week year) ->
      ``0 0 * * *``: ``?`` becomes ``*``, day-of-week numbers shift from 1-7 (SUN=1) to
      0-6 (SUN=0), the year must be ``*`` (Airflow crons have no year);
    * ``cron(...)`` is unwrapped; a 5-field cron or an Airflow preset (``@daily``) is kept;
    * ``rate(5 minutes)`` -> ``timedelta(minutes=5)``.
    """
    text = " ".join(str(expression).split())
    if not text:
        raise HandoffDagError(f"{source}: empty schedule expression")
    if text.startswith("@"):
        return text
    rate = _RATE.match(text)
    if rate:
        amount, unit = int(rate.group(1)), rate.group(2).lower().rstrip("s")
        return timedelta(**{f"{unit}s": amount})
    inner = re.match(r"^cron\((.*)\)$", text, re.I)
    if inner:
        text = " ".join(inner.group(1).split())
    fields = text.split(" ")
    if len(fields) == 5:
        return text
    if len(fields) != 6:
        raise HandoffDagError(
            f"{source}: {text!r} is not a cron expression (5 fields, or AWS's 6 with a year)"
        )
    minute, hour, dom, month, dow, year = fields
    if year not in ("*", "?"):
        raise HandoffDagError(
            f"{source}: {text!r} restricts the year ({year}); Airflow crons have no year field"
        )
    dom = "*" if dom == "?" else dom
    dow = "*" if dow == "?" else _convert_dow(dow, source=source)
    return " ".join((minute, hour, dom, month, dow))


def interval_timetable(schedule: str | timedelta) -> Any:
    """A timetable whose runs cover whole periods, on every Airflow line.

    Airflow 3 turns a cron string into a ``CronTriggerTimetable`` whose data interval is
    empty (start == end); handoff projects read ``start_at``/``end_at`` as the period to
    process, so project schedules get ``CronDataIntervalTimetable`` (the 2.x behaviour:
    the 06:00 run processes the previous day) or ``DeltaDataIntervalTimetable``. AWS
    schedules are UTC. Presets without a period (``@once``, ``@continuous``) stay as given.
    """
    if isinstance(schedule, timedelta):
        return DeltaDataIntervalTimetable(schedule)
    if schedule in ("@once", "@continuous", "@none"):
        return schedule
    return CronDataIntervalTimetable(schedule, timezone="UTC")
