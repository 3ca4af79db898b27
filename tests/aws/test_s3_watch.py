"""S3 file watch against the moto server: regex relative to the prefix, size and age bounds
(ages through ``now=`` injection, no sleeping), pagination, waiting and timing out, and the
``handoff watch`` CLI entry."""

from __future__ import annotations

import argparse
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from handoff_provider.core.aws.s3_watch import (
    MatchedObject,
    find_matching,
    normalize_prefix,
    wait_for_files,
)
from handoff_provider.core.cli.watch import EXIT_TIMEOUT, add_watch_parser, run_watch
from handoff_provider.core.errors import ConfigurationError, StoreError, WatchTimeout


@pytest.fixture
def s3(aws: str) -> Any:
    return boto3.client("s3")


def put(s3: Any, bucket: str, key: str, size: int = 3) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=b"x" * size)


def keys(matches: list[MatchedObject]) -> list[str]:
    return [match.key for match in matches]


@pytest.fixture
def tree(s3: Any, bucket: str) -> str:
    for key, size in {
        "src/a.txt": 10,
        "src/b.csv": 20,
        "src/sub/c.txt": 30,
        "src/empty.txt": 0,
        "srcx/e.txt": 5,
        "other/d.txt": 5,
        "top.txt": 5,
    }.items():
        put(s3, bucket, key, size)
    s3.put_object(Bucket=bucket, Key="src/folder.txt/", Body=b"")  # a folder marker
    return bucket


def test_regex_is_fully_matched_against_the_key_relative_to_the_prefix(s3: Any, tree: str) -> None:
    assert keys(find_matching(s3, tree, "src", r".*\.txt")) == [
        "src/a.txt",
        "src/empty.txt",
        "src/sub/c.txt",
    ]
    # Same folder whatever the spelling; "src" never matches "srcx/".
    assert keys(find_matching(s3, tree, "/src/", r"[^/]*\.txt")) == ["src/a.txt", "src/empty.txt"]
    # fullmatch: a prefix of the name is not enough, the relative key must match entirely.
    assert find_matching(s3, tree, "src", "a") == []
    assert keys(find_matching(s3, tree, "src", r"a\.txt")) == ["src/a.txt"]
    assert keys(find_matching(s3, tree, "", r"[^/]*\.txt")) == ["top.txt"]


def test_match_carries_size_time_and_uri(s3: Any, tree: str) -> None:
    (match,) = find_matching(s3, tree, "src", r"b\.csv")
    assert match.size == 20 and match.uri == f"s3://{tree}/src/b.csv"
    assert match.last_modified.tzinfo is not None
    assert MatchedObject.from_dict(json.loads(json.dumps(match.to_dict()))) == match


def test_size_bounds_are_inclusive(s3: Any, tree: str) -> None:
    assert keys(find_matching(s3, tree, "src", r".*", min_size=20)) == [
        "src/b.csv",
        "src/sub/c.txt",
    ]
    assert keys(find_matching(s3, tree, "src", r".*", max_size=10)) == [
        "src/a.txt",
        "src/empty.txt",
    ]
    assert keys(find_matching(s3, tree, "src", r".*", min_size=10, max_size=20)) == [
        "src/a.txt",
        "src/b.csv",
    ]
    # Zero-byte objects are matches unless a minimum size excludes them.
    assert "src/empty.txt" not in keys(find_matching(s3, tree, "src", r".*", min_size=1))


def test_age_bounds_use_the_injected_now(s3: Any, tree: str) -> None:
    (match,) = find_matching(s3, tree, "src", r"a\.txt")
    now = match.last_modified + timedelta(seconds=100)
    assert find_matching(s3, tree, "src", r"a\.txt", min_age=50, now=now) == [match]
    assert find_matching(s3, tree, "src", r"a\.txt", min_age=150, now=now) == []
    assert find_matching(s3, tree, "src", r"a\.txt", max_age=timedelta(seconds=150), now=now) == [
        match
    ]
    assert find_matching(s3, tree, "src", r"a\.txt", max_age=50, now=now) == []
    assert find_matching(s3, tree, "src", r"a\.txt", min_age=99, max_age=101, now=now) == [match]


def test_every_page_is_listed(s3: Any, bucket: str) -> None:
    for index in range(7):
        put(s3, bucket, f"in/f{index}.dat")
    pages: list[str] = []

    def small_pages(params: dict[str, Any], **_: Any) -> None:
        params["MaxKeys"] = 2
        pages.append(params.get("ContinuationToken", "first"))

    s3.meta.events.register("before-parameter-build.s3.ListObjectsV2", small_pages)
    assert keys(find_matching(s3, bucket, "in", r"f\d\.dat")) == [f"in/f{i}.dat" for i in range(7)]
    assert len(pages) == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"file_regex": "(unclosed"},
        {"file_regex": ".*", "min_size": 5, "max_size": 4},
        {"file_regex": ".*", "min_age": 10, "max_age": 5},
        {"file_regex": ".*", "min_size": -1},
    ],
)
def test_invalid_criteria_are_configuration_errors(s3: Any, bucket: str, kwargs: Any) -> None:
    with pytest.raises(ConfigurationError):
        find_matching(s3, bucket, "src", **kwargs)


def test_missing_bucket_is_a_store_error_naming_it(s3: Any, aws: str) -> None:
    with pytest.raises(StoreError, match="no-such-bucket-for-watch"):
        find_matching(s3, "no-such-bucket-for-watch", "src", ".*")


@pytest.mark.parametrize(
    ("given", "expected"), [("src", "src/"), ("/src/", "src/"), ("", ""), ("/", ""), (None, "")]
)
def test_normalize_prefix(given: str | None, expected: str) -> None:
    assert normalize_prefix(given) == expected


class FakeClock:
    """Monotonic clock advanced by the injected sleep; ``on_sleep`` runs on each sleep."""

    def __init__(self, on_sleep: Any = None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


def test_wait_returns_once_the_object_arrives(s3: Any, bucket: str) -> None:
    def drop_on_second_sleep(count: int) -> None:
        if count == 2:
            put(s3, bucket, "in/data_1.csv", 5)

    fake = FakeClock(drop_on_second_sleep)
    matches = wait_for_files(
        s3,
        bucket,
        "in",
        r"data_\d+\.csv",
        timeout=60,
        poke_interval=10,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    assert keys(matches) == ["in/data_1.csv"]
    assert fake.sleeps == [10, 10]


def test_wait_times_out_with_a_clear_error(s3: Any, bucket: str) -> None:
    put(s3, bucket, "in/data_1.csv", 5)
    fake = FakeClock()
    with pytest.raises(WatchTimeout) as caught:
        wait_for_files(
            s3,
            bucket,
            "in",
            r"data_\d+\.csv",
            timeout=25,
            poke_interval=10,
            min_count=2,
            clock=fake.clock,
            sleep=fake.sleep,
        )
    message = str(caught.value)
    assert f"s3://{bucket}/in/" in message and "data_" in message
    assert "1 object(s) matching" in message and "(wanted at least 2)" in message
    # Checks at 0, 10, 20 and a last one exactly at the deadline (25).
    assert fake.sleeps == [10, 10, 5]


def test_wait_max_count_keeps_waiting_while_too_many_match(s3: Any, bucket: str) -> None:
    """OTF's file-count condition: more than max_count matching is not a success."""
    for n in (1, 2, 3):
        put(s3, bucket, f"in/data_{n}.csv")

    def clean_up_on_second_sleep(count: int) -> None:
        if count == 2:
            s3.delete_object(Bucket=bucket, Key="in/data_3.csv")

    fake = FakeClock(clean_up_on_second_sleep)
    lines: list[str] = []
    matches = wait_for_files(
        s3,
        bucket,
        "in",
        r"data_\d+\.csv",
        timeout=60,
        poke_interval=10,
        min_count=2,
        max_count=2,
        log=lines.append,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    assert keys(matches) == ["in/data_1.csv", "in/data_2.csv"]
    assert fake.sleeps == [10, 10]
    assert lines[0].startswith("file watch: 3 object(s) matching")
    assert "(wanted exactly 2)" in lines[0]

    fake = FakeClock()
    with pytest.raises(WatchTimeout, match=r"2 object\(s\) matching .*\(wanted exactly 1\)"):
        wait_for_files(
            s3, bucket, "in", r".*", timeout=5, poke_interval=10, max_count=1,
            clock=fake.clock, sleep=fake.sleep,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"min_count": 0}, "min_count must be a whole number of at least 1"),
        ({"max_count": 0}, "max_count must be a whole number of at least 1"),
        ({"min_count": 3, "max_count": 2}, "min_count is greater than max_count"),
    ],
)
def test_invalid_counts_are_configuration_errors(
    s3: Any, bucket: str, counts: dict[str, int], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        wait_for_files(s3, bucket, "in", ".*", timeout=0, **counts)


def test_wait_real_clock_small_timeout(s3: Any, bucket: str) -> None:
    with pytest.raises(WatchTimeout, match=r"timed out after 0\.3s"):
        wait_for_files(s3, bucket, "in", r".*", timeout=0.3, poke_interval=0.1)


def _watch_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="handoff")
    add_watch_parser(parser.add_subparsers(dest="verb"))
    return parser.parse_args(["watch", *argv])


def test_cli_prints_json_lines_and_writes_output(s3: Any, bucket: str, tmp_path: Path) -> None:
    put(s3, bucket, "in/a.csv", 4)
    put(s3, bucket, "in/b.csv", 6)
    output = tmp_path / "files" / "inputs.json"
    args = _watch_args(
        "--bucket", bucket, "--prefix", "in", "--file-regex", r".*\.csv",
        "--timeout", "0", "--min-size", "5", "--output", str(output),
    )  # fmt: skip
    out = io.StringIO()
    assert run_watch(args, out=out) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["key"], line["size"]) for line in lines] == [("in/b.csv", 6)]
    assert json.loads(output.read_text()) == lines


def test_cli_timeout_exit_status(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HANDOFF_BUCKET", bucket)  # --bucket defaults to the env
    args = _watch_args("--file-regex", "nothing", "--timeout", "0.2", "--poke-interval", "0.1")
    out = io.StringIO()
    assert run_watch(args, out=out) == EXIT_TIMEOUT
    assert out.getvalue() == "" and "timed out" in capsys.readouterr().err


def test_cli_max_count(s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a", "b", "c"):
        put(s3, bucket, f"in/{name}.csv")
    common = ("--bucket", bucket, "--prefix", "in", "--file-regex", r".*\.csv", "--timeout", "0")
    out = io.StringIO()
    assert run_watch(_watch_args(*common, "--max-count", "2"), out=out) == EXIT_TIMEOUT
    assert out.getvalue() == ""
    err = capsys.readouterr().err
    assert "timed out" in err and "3 object(s) matching" in err and "(wanted 1 to 2)" in err
    assert run_watch(_watch_args(*common, "--min-count", "3", "--max-count", "3"), out=out) == 0
    assert len(out.getvalue().splitlines()) == 3


def test_cli_without_bucket_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HANDOFF_BUCKET", raising=False)
    monkeypatch.delenv("S3_BUCKET_NAME", raising=False)
    with pytest.raises(ConfigurationError):
        run_watch(_watch_args("--file-regex", ".*", "--timeout", "0"))
