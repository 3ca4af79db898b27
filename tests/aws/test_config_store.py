"""The SSM config store against the moto server: tiers, byte counting, > 8 KB documents.

moto does not enforce SSM size limits, so the tier is asserted on the request the store
sends (``PutParameter`` parameters recorded through botocore) and read back with
``DescribeParameters``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from handoff_provider.core.errors import ConfigurationError, StoreError
from handoff_provider.core.stores import Remote
from handoff_provider.core.stores.config import REF_KEY, serialize
from tests.aws.conftest import Recorder, keys

SECRET = "p4ssw0rd-do-not-leak"


def document_of_bytes(size: int, *, char: str = "x") -> dict[str, Any]:
    """A config document whose stored JSON is exactly ``size`` UTF-8 bytes."""
    base = {"commands": [{"command": "cat"}], "files": [{"name": "c.json", "value": SECRET}]}
    overhead = len(serialize(base).encode("utf-8"))
    width = len(char.encode("utf-8"))
    filler, rest = divmod(size - overhead, width)
    document = json.loads(json.dumps(base))
    document["files"][0]["value"] = SECRET + char * filler + "y" * rest
    assert len(serialize(document).encode("utf-8")) == size
    return document


def put_tiers(recorder: Recorder) -> list[str]:
    return [call.params["Tier"] for call in recorder.ops("PutParameter")]


def stored_tier(ssm: Any, name: str) -> str:
    response = ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
    )
    return response["Parameters"][0]["Tier"]


def test_default_name_and_round_trip(remote: Remote, recorder: Recorder, ssm: Any) -> None:
    document = document_of_bytes(300)
    result = remote.config.push(document)
    assert remote.config.name == f"/handoff/{remote.stack}/config"
    assert result.tier == "Standard" and result.size_bytes == 300
    (put,) = recorder.ops("PutParameter")
    assert put.params["Type"] == "SecureString"
    assert put.params["Overwrite"] is True
    assert put.params["Tier"] == "Standard"
    assert "KeyId" not in put.params
    assert remote.config.fetch() == document
    assert SECRET not in str(result)


def test_exactly_4096_bytes_is_standard(remote: Remote, recorder: Recorder, ssm: Any) -> None:
    remote.config.push(document_of_bytes(4096))
    assert put_tiers(recorder) == ["Standard"]
    assert stored_tier(ssm, remote.config.name) == "Standard"


def test_over_4096_bytes_needs_the_flag(remote: Remote, recorder: Recorder, ssm: Any) -> None:
    document = document_of_bytes(4097)
    with pytest.raises(ConfigurationError) as raised:
        remote.config.push(document)
    message = str(raised.value)
    assert "--allow-advanced-tier" in message and "allow_advanced_tier=True" in message
    assert "4097 bytes" in message and "\n" not in message
    assert SECRET not in message
    assert recorder.count("PutParameter") == 0, "nothing is written when refused"

    result = remote.config.push(document, allow_advanced_tier=True)
    assert result.tier == "Advanced"
    assert put_tiers(recorder) == ["Advanced"]
    assert stored_tier(ssm, remote.config.name) == "Advanced"
    assert remote.config.fetch() == document


def test_exactly_8192_bytes_is_advanced(remote: Remote, recorder: Recorder) -> None:
    remote.config.push(document_of_bytes(8192), allow_advanced_tier=True)
    assert put_tiers(recorder) == ["Advanced"]
    assert recorder.count("PutObject") == 0, "8 KB still fits in the parameter"


def test_size_is_counted_in_utf8_bytes(remote: Remote, recorder: Recorder) -> None:
    # 'é' is 2 bytes: about 2100 characters but over 4096 bytes.
    document = document_of_bytes(4200, char="é")
    assert len(serialize(document)) < 4096 < len(serialize(document).encode("utf-8"))
    with pytest.raises(ConfigurationError, match="4200 bytes"):
        remote.config.push(document)
    remote.config.push(document, allow_advanced_tier=True)
    assert put_tiers(recorder) == ["Advanced"]
    assert remote.config.fetch() == document


def test_over_8192_bytes_goes_to_s3_behind_a_pointer(
    remote: Remote, recorder: Recorder, ssm: Any, s3: Any, bucket: str
) -> None:
    document = document_of_bytes(20_000, char="日")
    result = remote.config.push(document)  # no flag needed: the parameter stays small

    # The object was written (SSE-KMS) before the parameter switched to the pointer.
    order = [c.operation for c in recorder.calls if c.operation in ("PutObject", "PutParameter")]
    assert order == ["PutObject", "PutParameter"]
    (put_object,) = recorder.ops("PutObject")
    assert put_object.params["ServerSideEncryption"] == "aws:kms"
    (put_parameter,) = recorder.ops("PutParameter")
    assert put_parameter.params["Tier"] == "Standard"
    assert SECRET not in put_parameter.params["Value"]

    pointer = json.loads(
        ssm.get_parameter(Name=remote.config.name, WithDecryption=True)["Parameter"]["Value"]
    )
    ref = pointer[REF_KEY]
    assert ref["bytes"] == 20_000
    assert ref["uri"] == result.object_uri
    assert ref["uri"] == f"s3://{bucket}/{remote.stack}/config/{ref['sha256']}.json"
    head = s3.head_object(Bucket=bucket, Key=f"{remote.stack}/config/{ref['sha256']}.json")
    assert head["ServerSideEncryption"] == "aws:kms"

    assert remote.config.fetch() == document


def test_kms_key_is_used_for_parameter_and_object(
    aws: str, bucket: str, stack: str, recorder: Recorder
) -> None:
    remote = Remote(stack, bucket, client_factory=recorder.factory(), kms_key_id="alias/handoff")
    remote.config.push(document_of_bytes(100))
    remote.config.push(document_of_bytes(9000))
    assert [c.params["KeyId"] for c in recorder.ops("PutParameter")] == ["alias/handoff"] * 2
    assert recorder.ops("PutObject")[0].params["SSEKMSKeyId"] == "alias/handoff"


def test_replaced_objects_are_cleaned_after_the_switch(
    remote: Remote, recorder: Recorder, s3: Any, bucket: str
) -> None:
    config_prefix = f"{remote.stack}/config/"
    remote.config.cleanup_grace = timedelta(0)
    first = document_of_bytes(9000)
    second = document_of_bytes(12_000)
    first_uri = remote.config.push(first).object_uri
    second_uri = remote.config.push(second).object_uri
    assert first_uri != second_uri
    assert keys(s3, bucket, config_prefix) == [second_uri.rsplit("/", 1)[1]]
    assert remote.config.fetch() == second

    small = document_of_bytes(500)
    remote.config.push(small)
    assert keys(s3, bucket, config_prefix) == []
    assert remote.config.fetch() == small


def test_grace_period_keeps_a_concurrent_pushers_object(
    remote: Remote, s3: Any, bucket: str
) -> None:
    remote.config.push(document_of_bytes(9000))
    remote.config.push(document_of_bytes(9500))
    # Both objects are younger than the default grace period: a reader holding the first
    # pointer (or a concurrent pusher) still finds its object.
    assert len(keys(s3, bucket, f"{remote.stack}/config/")) == 2


def test_tampered_object_is_detected(remote: Remote, s3: Any, bucket: str, ssm: Any) -> None:
    remote.config.push(document_of_bytes(9000))
    ref = json.loads(
        ssm.get_parameter(Name=remote.config.name, WithDecryption=True)["Parameter"]["Value"]
    )[REF_KEY]
    key = ref["uri"].split("/", 3)[3]
    s3.put_object(Bucket=bucket, Key=key, Body=b'{"commands": []}')
    with pytest.raises(StoreError) as raised:
        remote.config.fetch()
    assert "does not match its SHA-256" in str(raised.value)
    assert ref["uri"] in str(raised.value)


def test_advanced_parameter_is_not_downgraded(remote: Remote, recorder: Recorder) -> None:
    # SSM refuses to move an existing Advanced parameter back to Standard.
    remote.config.push(document_of_bytes(5000), allow_advanced_tier=True)
    remote.config.push(document_of_bytes(100))
    assert put_tiers(recorder) == ["Advanced", "Advanced"]


def test_custom_parameter_name(aws: str, bucket: str, stack: str, recorder: Recorder) -> None:
    remote = Remote(stack, bucket, client_factory=recorder.factory(), config_name="/team/etl/cfg")
    remote.config.push({"commands": []})
    assert recorder.ops("PutParameter")[0].params["Name"] == "/team/etl/cfg"
    with pytest.raises(ConfigurationError, match="SSM parameter name"):
        Remote(stack, bucket, client_factory=recorder.factory(), config_name="team etl")


def test_large_document_without_bucket_is_a_clear_error(
    aws: str, stack: str, recorder: Recorder
) -> None:
    remote = Remote(stack, None, client_factory=recorder.factory())
    remote.config.push({"commands": []})  # small documents need no bucket
    with pytest.raises(ConfigurationError, match="HANDOFF_BUCKET") as raised:
        remote.config.push(document_of_bytes(9000))
    assert SECRET not in str(raised.value)
    assert recorder.count("PutParameter") == 1, "the old value stays in place"


def test_missing_parameter(remote: Remote) -> None:
    with pytest.raises(StoreError) as raised:
        remote.config.fetch()
    message = str(raised.value)
    assert f"SSM parameter /handoff/{remote.stack}/config not found" in message
    assert "handoff config push" in message


def test_parameter_that_is_not_json_is_reported_without_its_value(remote: Remote, ssm: Any) -> None:
    ssm.put_parameter(Name=remote.config.name, Value=f"not json {SECRET}", Type="SecureString")
    with pytest.raises(StoreError) as raised:
        remote.config.fetch()
    assert "does not hold a JSON document" in str(raised.value)
    assert SECRET not in str(raised.value)


def test_ssm_errors_never_echo_the_value(remote: Remote, recorder: Recorder) -> None:
    recorder.fail_on("PutParameter")
    with pytest.raises(StoreError) as raised:
        remote.config.push(document_of_bytes(200))
    message = str(raised.value)
    assert message == f"write SSM parameter {remote.config.name}: AWS error InternalError"
