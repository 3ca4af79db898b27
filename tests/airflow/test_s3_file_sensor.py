"""HandoffS3FileSensor and its trigger against the moto server, through the Amazon
provider's real S3Hook (connection ``aws_default`` from the environment): poke results and
XCom value, deferral (TaskDeferred, trigger serialize round-trip), the trigger's async
``run()`` yielding success / timeout / error events, and resuming from each event."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from datetime import timedelta
from typing import Any

import boto3
import pytest
from af_helpers import capture_task_log

from handoff_provider._compat import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
)
from handoff_provider.sensors.s3_file import HandoffS3FileSensor
from handoff_provider.triggers.s3_file import HandoffS3FileTrigger

try:  # Airflow 3
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 2.x
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

pytestmark = pytest.mark.airflow


@pytest.fixture
def s3(aws: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws"}))
    return boto3.client("s3")


def make_sensor(bucket: str, **kwargs: Any) -> HandoffS3FileSensor:
    options: dict[str, Any] = {
        "task_id": "watch",
        "bucket": bucket,
        "prefix": "in",
        "file_regex": r"data_\d+\.csv",
        "poke_interval": 1,
        "timeout": 30,
    }
    options.update(kwargs)
    return HandoffS3FileSensor(**options)


def first_event(trigger: HandoffS3FileTrigger) -> dict[str, Any]:
    async def _first() -> Any:
        generator = trigger.run()
        try:
            return await generator.__anext__()
        finally:
            await generator.aclose()

    return asyncio.run(asyncio.wait_for(_first(), timeout=30)).payload


def test_poke_returns_the_matches_as_xcom(s3: Any, bucket: str) -> None:
    sensor = make_sensor(bucket, min_size=2)
    assert sensor.poke({}).is_done is False
    s3.put_object(Bucket=bucket, Key="in/data_2.csv", Body=b"22")
    s3.put_object(Bucket=bucket, Key="in/data_1.csv", Body=b"1")  # too small
    s3.put_object(Bucket=bucket, Key="in/notes.txt", Body=b"nope")
    result = sensor.poke({})
    assert result.is_done is True
    (match,) = result.xcom_value
    assert match["uri"] == f"s3://{bucket}/in/data_2.csv" and match["size"] == 2
    json.dumps(result.xcom_value)  # XCom-safe


def test_poke_waits_for_min_count(s3: Any, bucket: str) -> None:
    sensor = make_sensor(bucket, min_count=2)
    s3.put_object(Bucket=bucket, Key="in/data_1.csv", Body=b"1")
    assert sensor.poke({}).is_done is False
    s3.put_object(Bucket=bucket, Key="in/data_2.csv", Body=b"2")
    assert [m["key"] for m in sensor.poke({}).xcom_value] == ["in/data_1.csv", "in/data_2.csv"]


def test_poke_logs_how_many_matched_of_how_many_wanted(s3: Any, bucket: str) -> None:
    sensor = make_sensor(bucket, min_count=1)
    s3.put_object(Bucket=bucket, Key="in/data_1.csv", Body=b"1")
    s3.put_object(Bucket=bucket, Key="in/data_2.csv", Body=b"2")
    with capture_task_log() as log:
        assert sensor.poke({}).is_done is True
    assert "2 object(s) matching" in log.text() and "(wanted at least 1)" in log.text()
    assert "2 of 1" not in log.text()


def test_deferrable_defers_to_a_serializable_trigger(s3: Any, bucket: str) -> None:
    sensor = make_sensor(bucket, deferrable=True, timeout=600, max_age=timedelta(hours=1))
    before = time.time()
    with pytest.raises(TaskDeferred) as caught:
        sensor.execute({})
    deferred = caught.value
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout > timedelta(seconds=600)  # backstop behind the trigger's own deadline
    trigger = deferred.trigger
    assert isinstance(trigger, HandoffS3FileTrigger)
    assert before + 600 <= trigger.deadline <= time.time() + 600

    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert kwargs["max_age"] == 3600 and kwargs["poke_interval"] == 1


def test_deferrable_returns_at_once_when_already_there(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="in/data_7.csv", Body=b"7")
    value = make_sensor(bucket, deferrable=True).execute({})
    assert [m["key"] for m in value] == ["in/data_7.csv"]


def test_trigger_run_yields_success_against_moto(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="in/data_1.csv", Body=b"abc")
    trigger = make_sensor(bucket).make_trigger(deadline=time.time() + 30)
    event = first_event(trigger)
    assert event["status"] == "success"
    assert [(m["key"], m["size"]) for m in event["matches"]] == [("in/data_1.csv", 3)]


def test_trigger_polls_until_the_object_arrives(s3: Any, bucket: str) -> None:
    trigger = make_sensor(bucket, poke_interval=0.2).make_trigger(deadline=time.time() + 20)

    async def scenario() -> Any:
        async def drop_later() -> None:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(s3.put_object, Bucket=bucket, Key="in/data_9.csv", Body=b"late")

        dropper = asyncio.create_task(drop_later())
        generator = trigger.run()
        try:
            return await generator.__anext__()
        finally:
            await generator.aclose()
            await dropper

    event = asyncio.run(asyncio.wait_for(scenario(), timeout=30)).payload
    assert event["status"] == "success" and event["matches"][0]["key"] == "in/data_9.csv"


def test_trigger_reports_timeout_and_errors(s3: Any, bucket: str) -> None:
    timed_out = first_event(make_sensor(bucket).make_trigger(deadline=time.time() - 1))
    assert timed_out["status"] == "timeout"
    assert f"s3://{bucket}/in" in timed_out["message"]

    missing = first_event(make_sensor("no-such-bucket-here").make_trigger(deadline=None))
    assert missing["status"] == "error" and "no-such-bucket-here" in missing["message"]


def test_execute_complete_maps_events() -> None:
    sensor = make_sensor("b")
    matches = [{"key": "in/data_1.csv"}]
    assert sensor.execute_complete({}, {"status": "success", "matches": matches}) == matches
    with pytest.raises(AirflowSensorTimeout, match="gone"):
        sensor.execute_complete({}, {"status": "timeout", "message": "gone"})
    with pytest.raises(AirflowSkipException):
        make_sensor("b", soft_fail=True).execute_complete({}, {"status": "timeout"})
    with pytest.raises(AirflowException, match="AccessDenied"):
        sensor.execute_complete({}, {"status": "error", "message": "AccessDenied"})


def test_poke_mode_execute_returns_matches_or_times_out(s3: Any, bucket: str) -> None:
    """The standard sensor loop (poke mode) around our poke: XCom value and ``timeout``."""
    s3.put_object(Bucket=bucket, Key="in/data_3.csv", Body=b"333")
    value = make_sensor(bucket, mode="poke").execute({})
    assert [(m["key"], m["size"]) for m in value] == [("in/data_3.csv", 3)]

    started = time.monotonic()
    with pytest.raises(AirflowSensorTimeout):
        make_sensor(
            bucket, mode="poke", file_regex="never", timeout=0.6, poke_interval=0.2
        ).execute({})
    assert time.monotonic() - started < 10


def test_max_count_keeps_poke_and_trigger_waiting(s3: Any, bucket: str) -> None:
    """Open Task Framework's file-count condition: between min_count and max_count matches."""
    for n in (1, 2, 3):
        s3.put_object(Bucket=bucket, Key=f"in/data_{n}.csv", Body=b"x")
    sensor = make_sensor(bucket, min_count=2, max_count=2)
    assert sensor.poke({}).is_done is False  # three is too many
    trigger = sensor.make_trigger(deadline=time.time() - 1)
    _classpath, kwargs = trigger.serialize()
    assert kwargs["min_count"] == 2 and kwargs["max_count"] == 2
    timed_out = first_event(trigger)
    assert timed_out["status"] == "timeout"
    assert "3 object(s) matching" in timed_out["message"]
    assert "(wanted exactly 2)" in timed_out["message"]

    s3.delete_object(Bucket=bucket, Key="in/data_3.csv")
    assert [m["key"] for m in sensor.poke({}).xcom_value] == ["in/data_1.csv", "in/data_2.csv"]
    event = first_event(sensor.make_trigger(deadline=time.time() + 30))
    assert event["status"] == "success" and len(event["matches"]) == 2
    with pytest.raises(ValueError, match="max_count at least min_count"):
        make_sensor(bucket, min_count=3, max_count=2)
