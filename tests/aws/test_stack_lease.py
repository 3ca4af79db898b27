"""The stack lease against the moto server: conditional create/renew/release, waiting,
expiry takeover, the heartbeat, and the S3 round trips it costs."""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest

from handoff_provider.core.errors import ConfigurationError, LeaseHeld, LeaseLost
from handoff_provider.core.stores import Remote
from handoff_provider.core.stores.conditional import enable_conditional_put, is_condition_failure
from handoff_provider.core.stores.lease import lease_options
from tests.aws.conftest import REGION, Recorder, read


def lease_record(s3: Any, bucket: str, stack: str) -> dict[str, Any]:
    return json.loads(read(s3, bucket, f"{stack}/lease.json"))


def test_acquire_creates_lease_next_to_the_stack_and_release_marks_it(
    remote: Remote, s3: Any, bucket: str
) -> None:
    with remote.lease("run-a", ttl=30) as lease:
        assert lease.held
        record = lease_record(s3, bucket, remote.stack)
        assert record["run_key"] == "run-a" and not record["released"] and record["ttl"] == 30
    assert lease_record(s3, bucket, remote.stack)["released"] is True
    assert remote.describe()["lease_uri"] == f"s3://{bucket}/{remote.stack}/lease.json"


def test_second_contender_fails_with_one_line_naming_the_holder(remote: Remote) -> None:
    with remote.lease("run-a", ttl=30), pytest.raises(LeaseHeld) as raised:
        remote.lease("run-b", wait=0).acquire()
    message = str(raised.value)
    assert "\n" not in message
    assert "held by run run-a on host " in message and "(pid " in message and " since " in message
    assert "--lock-wait" in message


def test_waiter_gets_the_lease_when_the_holder_releases(remote: Remote) -> None:
    lines: list[str] = []
    holder = remote.lease("run-a", ttl=30)
    holder.acquire()
    threading.Timer(1.0, holder.release).start()
    started = time.monotonic()
    with remote.lease("run-b", wait=20, log=lines.append) as waiter:
        assert waiter.held
    assert 0.9 < time.monotonic() - started < 15
    assert any("held by run run-a" in line and "waiting" in line for line in lines)


def test_expired_lease_is_taken_over_and_the_old_holder_cannot_renew(
    remote: Remote, s3: Any, bucket: str
) -> None:
    """A holder killed with kill -9 never releases: its lease expires (S3's clock) and is
    taken over; if it comes back, its renewal is refused (If-Match on a stale ETag)."""
    stale = remote.lease("run-killed", ttl=2)
    stale.acquire()  # no heartbeat, no release: as if the process died
    with pytest.raises(LeaseHeld):
        remote.lease("run-b", wait=0).acquire()
    lines: list[str] = []
    with remote.lease("run-b", wait=15, ttl=30, log=lines.append) as taker:
        assert taker.held
        assert any("took over an expired lease" in line for line in lines)
        assert lease_record(s3, bucket, remote.stack)["run_key"] == "run-b"
        with pytest.raises(LeaseLost, match="taken over"):
            stale.renew()
    assert lease_record(s3, bucket, remote.stack)["released"] is True


def test_heartbeat_keeps_a_short_lease_alive(remote: Remote) -> None:
    with remote.lease("run-a", ttl=2) as lease:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # well past the TTL
            with pytest.raises(LeaseHeld):
                remote.lease("run-b", wait=0).acquire()
            time.sleep(0.5)
        assert lease.held
        lease.check()


def test_lease_costs_two_round_trips_at_start_and_two_at_end(
    remote: Remote, recorder: Recorder
) -> None:
    with remote.lease("run-0"):
        pass  # leaves a released lease object, as every run does
    recorder.clear()
    lease = remote.lease("run-1", ttl=60)
    lease.acquire()
    assert [c.operation for c in recorder.calls] == ["GetObject", "PutObject"]
    taking_over = recorder.calls[1]
    assert taking_over.headers.get("if-match"), "taking over the released lease is conditional"
    recorder.clear()
    lease.check()
    lease.release()
    assert [c.operation for c in recorder.calls] == ["PutObject", "PutObject"]
    assert all(c.headers.get("if-match") for c in recorder.calls)


def test_first_lease_is_created_with_if_none_match(remote: Remote, recorder: Recorder) -> None:
    with remote.lease("run-1"):
        put = recorder.ops("PutObject")[0]
        assert put.headers.get("if-none-match") == "*" and "if-match" not in put.headers


def test_cancel_stops_the_wait(remote: Remote) -> None:
    with remote.lease("run-a", ttl=30):
        waiter = remote.lease("run-b", wait=60)
        threading.Timer(0.5, waiter.cancel, args=("SIGTERM",)).start()
        started = time.monotonic()
        with pytest.raises(LeaseHeld, match=r"stopped \(SIGTERM\) while waiting"):
            waiter.acquire()
        assert time.monotonic() - started < 10


def test_lease_options_from_environment_and_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDOFF_LOCK_WAIT", "7")
    monkeypatch.setenv("HANDOFF_LOCK_TTL", "9")
    assert lease_options() == {"wait": 7.0, "ttl": 9.0}
    assert lease_options(wait=1)["wait"] == 1.0
    monkeypatch.setenv("HANDOFF_LOCK_WAIT", "soon")
    with pytest.raises(ConfigurationError, match="HANDOFF_LOCK_WAIT: 'soon' is not a number"):
        lease_options()


def _client_without_conditional_members(tmp_path: Path) -> Any:
    """An S3 client whose service model lacks PutObject's IfMatch/IfNoneMatch, as older
    botocore releases do (1.35.36, the oldest MWAA pin, has IfNoneMatch only): the model is
    botocore's own with those members removed, loaded from a data path of its own."""
    session = botocore.session.get_session()
    loader = session.get_component("data_loader")
    version = loader.determine_latest_version("s3", "service-2")
    model = copy.deepcopy(loader.load_service_model("s3", "service-2", version))
    members = model["shapes"]["PutObjectRequest"]["members"]
    for name in ("IfMatch", "IfNoneMatch"):
        members.pop(name, None)
    target = tmp_path / "models" / "s3" / version
    target.mkdir(parents=True)
    (target / "service-2.json").write_text(json.dumps(model))
    old = botocore.session.get_session()
    old.get_component("data_loader").search_paths.insert(0, str(tmp_path / "models"))
    client = boto3.session.Session(botocore_session=old).client("s3", region_name=REGION)
    shape = client.meta.service_model.operation_model("PutObject").input_shape
    assert "IfMatch" not in shape.members and "IfNoneMatch" not in shape.members
    return client


def test_conditions_are_sent_as_headers_when_the_model_lacks_them(
    aws: str, bucket: str, tmp_path: Path
) -> None:
    client = enable_conditional_put(_client_without_conditional_members(tmp_path))
    enable_conditional_put(client)  # idempotent
    first = client.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(Exception) as raised:
        client.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert is_condition_failure(raised.value)
    with pytest.raises(Exception) as raised:
        client.put_object(Bucket=bucket, Key="k", Body=b"2", IfMatch='"0123"')
    assert is_condition_failure(raised.value)
    client.put_object(Bucket=bucket, Key="k", Body=b"3", IfMatch=first["ETag"])
    client.put_object(Bucket=bucket, Key="plain", Body=b"x")  # no condition: untouched
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"3"
