"""Remote settings and AWS failures become one-line errors naming what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from handoff_provider.core.cli import main as cli
from handoff_provider.core.errors import ConfigurationError, StoreError
from handoff_provider.core.stores import Remote
from tests.aws.conftest import Recorder


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HANDOFF_STACK", "STACK_NAME", "HANDOFF_BUCKET", "S3_BUCKET_NAME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_options_win_over_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("HANDOFF_STACK", "env-stack")
    clean_env.setenv("HANDOFF_BUCKET", "env-bucket")
    remote = Remote.from_options(stack="opt-stack", bucket="opt-bucket")
    assert (remote.stack, remote.bucket) == ("opt-stack", "opt-bucket")
    assert remote.config.name == "/handoff/opt-stack/config"


def test_environment_fallbacks(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("STACK_NAME", "seed-stack")
    clean_env.setenv("S3_BUCKET_NAME", "seed-bucket")
    remote = Remote.from_options()
    assert (remote.stack, remote.bucket) == ("seed-stack", "seed-bucket")
    clean_env.setenv("HANDOFF_STACK", "new-stack")
    clean_env.setenv("HANDOFF_BUCKET", "new-bucket")
    remote = Remote.from_options()
    assert (remote.stack, remote.bucket) == ("new-stack", "new-bucket")


def test_missing_stack(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Remote.from_options(bucket="b")
    assert str(raised.value) == "no stack name: pass --stack or set HANDOFF_STACK (or STACK_NAME)"


def test_missing_bucket_is_reported_when_s3_is_needed(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    remote = Remote.from_options(stack="s")
    with pytest.raises(
        ConfigurationError, match="no S3 bucket: pass --bucket or set HANDOFF_BUCKET"
    ):
        remote.files.push(tmp_path)
    with pytest.raises(ConfigurationError, match="no S3 bucket"):
        remote.artifacts.get_last(tmp_path)


@pytest.mark.parametrize("stack", ["", "has space", "a/b", "../x", "-lead"])
def test_bad_stack_names(stack: str) -> None:
    with pytest.raises(ConfigurationError, match="stack name"):
        Remote(stack, "b", client_factory=lambda name: None)


def test_bucket_given_as_uri() -> None:
    with pytest.raises(ConfigurationError, match="no s3://"):
        Remote("s", "s3://bucket", client_factory=lambda name: None)


def test_nonexistent_bucket(aws: str, stack: str, recorder: Recorder, tmp_path: Path) -> None:
    remote = Remote(stack, "no-such-bucket-here", client_factory=recorder.factory())
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a")
    with pytest.raises(StoreError) as raised:
        remote.files.push(tmp_path / "files")
    message = str(raised.value)
    assert message == (
        f"list s3://no-such-bucket-here/{stack}/files/: the bucket does not exist (NoSuchBucket)"
    )


def test_missing_credentials(
    aws: str, bucket: str, stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no IMDS probing
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    remote = Remote.from_options(stack=stack, bucket=bucket)
    with pytest.raises(ConfigurationError) as raised:
        remote.config.fetch()
    message = str(raised.value)
    assert "no AWS credentials found" in message and "\n" not in message
    assert f"SSM parameter /handoff/{stack}/config" in message


def test_access_denied_names_the_resource(remote: Remote, recorder: Recorder) -> None:
    from botocore.exceptions import ClientError

    def deny(**kwargs: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "nope"}}, "GetObject")

    remote.client("s3").meta.events.register("before-parameter-build.s3.GetObject", deny)
    with pytest.raises(StoreError) as raised:
        remote.artifacts.restore_state(Path("/nonexistent/state"))
    assert "access denied (AccessDenied)" in str(raised.value)
    assert f"s3://{remote.bucket}/{remote.stack}/" in str(raised.value)


def test_cli_prints_one_line_and_exits_2(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["config", "print"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "handoff: error: no stack name: pass --stack or set HANDOFF_STACK (or STACK_NAME)\n"
    )


def test_cli_missing_config_exits_1(
    aws: str, stack: str, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["config", "print", "--stack", stack]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"handoff: error: SSM parameter /handoff/{stack}/config not found")
    assert "\n" not in err


def test_throttling_after_retries(remote: Remote, recorder: Recorder) -> None:
    recorder.fail_on("GetParameter", code="ThrottlingException")
    with pytest.raises(StoreError) as raised:
        remote.config.fetch()
    assert str(raised.value) == (
        f"read SSM parameter {remote.config.name}: throttled by AWS after retries "
        "(ThrottlingException)"
    )


def test_rejected_credentials(remote: Remote, recorder: Recorder, tmp_path: Path) -> None:
    recorder.fail_on("ListObjectsV2", code="InvalidAccessKeyId")
    with pytest.raises(ConfigurationError, match="AWS rejected the credentials"):
        remote.files.get(tmp_path / "files")


def test_default_clients_read_listing_and_header_timestamps_alike(
    aws: str, bucket: str, s3: Any
) -> None:
    """The default factory parses a listing's ISO 8601 ``LastModified`` itself (not through
    dateutil): the instant is the one botocore's own parser gives and that a HEAD (an
    RFC 822 header, still botocore's parser) reports, to the second."""
    from botocore.utils import parse_timestamp

    from handoff_provider.core.aws.clients import default_client_factory, iso_timestamp

    s3.put_object(Bucket=bucket, Key="stamp/x", Body=b"x")
    client = default_client_factory()("s3")
    listed = client.list_objects_v2(Bucket=bucket, Prefix="stamp/")["Contents"][0]
    head = client.head_object(Bucket=bucket, Key="stamp/x")
    assert listed["LastModified"].tzinfo is not None
    assert listed["LastModified"].replace(microsecond=0) == head["LastModified"]
    for text in ("2026-12-01T14:59:51.123Z", "2026-12-01T14:59:51+02:00"):
        assert iso_timestamp(text) == parse_timestamp(text)
    assert iso_timestamp("Tue, 01 Dec 2026 14:59:51 GMT") == parse_timestamp(
        "Tue, 01 Dec 2026 14:59:51 GMT"
    )
