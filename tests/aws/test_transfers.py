"""Transfers against the moto server: spec validation, input downloads (and refusing keys
that escape), output uploads with the bucket-owner ACL (asserted on the captured request
parameters), flag files only after every upload succeeded, and post-copy move/delete that
leave a replaced or vanished source alone."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from handoff_provider.core.aws.s3_transfers import (
    BUCKET_OWNER_FULL_CONTROL,
    InputSpec,
    OutputSpec,
    PostCopy,
    TransfersSpec,
    apply_input_post_copy,
    apply_post_copy,
    download_inputs,
    touch_flag,
    upload_outputs,
)
from handoff_provider.core.errors import ProjectError, TemplateError, TransferError
from handoff_provider.core.load.templating import render_text
from handoff_provider.core.steps.s3_touch import TouchStep
from handoff_provider.core.stores.s3sync import digest_file
from tests.aws.conftest import Recorder as CallRecorder

WRITES = ("PutObject", "CopyObject", "CreateMultipartUpload", "UploadPartCopy")


class Recorder:
    """Captures the API parameters of every S3 write the client makes, in order."""

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        for operation in WRITES:
            client.meta.events.register(
                f"before-parameter-build.s3.{operation}", self._make(operation)
            )

    def _make(self, operation: str) -> Any:
        def record(params: dict[str, Any], **_: Any) -> None:
            self.calls.append((operation, dict(params)))

        return record

    def keys(self, operation: str) -> list[str]:
        return [params["Key"] for op, params in self.calls if op == operation]


@pytest.fixture
def s3(aws: str) -> Any:
    return boto3.client("s3")


def body(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


# --------------------------------------------------------------------------- specs

FULL = {
    "inputs": [
        {
            "bucket": "in-bucket",
            "directory": "drop",
            "file_regex": r"data_\d{8}\.csv",
            "dest": "inbox",
            "min_size": 1,
            "max_age": 86400,
            "post_copy": {"action": "move", "archive_directory": "archive"},
        }
    ],
    "outputs": [
        {
            "source": "artifacts/*.csv",
            "bucket": "out-bucket",
            "directory": "dest",
            "flag": "dest/some_fin.flg",
            "disable_bucket_owner_acl": True,
        }
    ],
}


def test_from_mapping_builds_the_specs() -> None:
    spec = TransfersSpec.from_mapping(FULL)
    (source,) = spec.inputs
    assert source == InputSpec(
        bucket="in-bucket",
        directory="drop",
        file_regex=r"data_\d{8}\.csv",
        dest="inbox",
        min_size=1,
        max_age=86400,
        post_copy=PostCopy("move", "archive"),
    )
    (target,) = spec.outputs
    assert target.flag == "dest/some_fin.flg" and target.disable_bucket_owner_acl is True
    assert TransfersSpec.from_mapping(None) == TransfersSpec()


def _input(**changes: Any) -> Any:
    return lambda data: data["inputs"][0].update(changes)


def _output(**changes: Any) -> Any:
    return lambda data: data["outputs"][0].update(changes)


def _post(**changes: Any) -> Any:
    return lambda data: data["inputs"][0]["post_copy"].update(changes)


IN0, OUT0 = r"inputs\[0\]", r"outputs\[0\]"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_input(file_regx=".*"), IN0 + r"\.file_regx: unknown key \(did you mean 'file_regex'"),
        (_input(fileRegex=".*"), IN0 + r"\.fileRegex: .*'file_regex'"),
        (_output(disableBucketOwnerControlACL=True), "'disable_bucket_owner_acl'"),
        (lambda d: d.update(output=[]), r"transfers\.output: unknown key \(did you mean 'outputs'"),
        (lambda d: d["inputs"][0].pop("bucket"), IN0 + r"\.bucket: required"),
        (_input(file_regex="(x"), IN0 + r"\.file_regex: invalid regular"),
        (_input(dest="../up"), IN0 + r"\.dest: must be a relative path"),
        (_input(min_size=9, max_size=3), IN0 + r": .*min_size"),
        (_post(archive_directory=None), r"post_copy\.archive_directory: required"),
        (_post(action="copy"), r"post_copy\.action: must be one of move, rename, delete"),
        (_post(action="rename", archive_directory=None), r"post_copy\.pattern: required"),
        (_post(action="rename", pattern="x"), r"post_copy\.replacement: required"),
        (_post(action="rename", pattern="(x", replacement=""), r"post_copy\.pattern: invalid"),
        (
            _post(action="rename", pattern=r"(.*)\.csv", replacement=r"\2.done"),
            r"post_copy\.replacement: invalid replacement \(invalid group reference 2",
        ),
        (_post(pattern="x", replacement="y"), r"post_copy: pattern/replacement only apply"),
        (_post(sub="x"), r"post_copy\.sub: unknown key \(did you mean 'pattern'"),
        (_input(min_count=0), IN0 + r"\.min_count: expected a whole number of at least 1"),
        (_input(max_count=1.5), IN0 + r"\.max_count: expected a whole number"),
        (_input(min_count=3, max_count=2), IN0 + r": .*min_count is greater than max_count"),
        (_input(minCount=2), IN0 + r"\.minCount: unknown key \(did you mean 'min_count'"),
        (_output(source="/etc/*"), OUT0 + r"\.source: must be a relative"),
        (_output(flag="dest/"), OUT0 + r"\.flag: must be an object key"),
        (_output(required="yes"), OUT0 + r"\.required: expected true or false"),
        (lambda d: d.update(inputs={"bucket": "x"}), r"transfers\.inputs: expected a list"),
    ],
)
def test_from_mapping_errors_name_the_key_path(mutate: Any, expected: str) -> None:
    import copy

    data = copy.deepcopy(FULL)
    mutate(data)
    with pytest.raises(ProjectError, match=expected):
        TransfersSpec.from_mapping(data, path="project.yml: transfers")


def test_render_fills_locations_and_revalidates() -> None:
    spec = TransfersSpec.from_mapping(
        {
            "inputs": [{"bucket": "b", "directory": "drop/{{ ds }}", "file_regex": r"x\d{2}"}],
            "outputs": [
                {"source": "artifacts/*", "bucket": "{{ env }}-out", "flag": "{{ ds }}.fin"}
            ],
        }
    )

    def render(text: str, where: str) -> str:
        return render_text(text, {"ds": "2024-05-01", "env": "prod"}, source=where)

    rendered = spec.render(render)
    assert rendered.inputs[0].directory == "drop/2024-05-01"
    assert rendered.inputs[0].file_regex == r"x\d{2}"  # regexes are not rendered
    assert rendered.outputs[0].bucket == "prod-out" and rendered.outputs[0].flag == "2024-05-01.fin"

    with pytest.raises(TemplateError, match=r"outputs\[0\]\.bucket"):
        spec.render(lambda text, where: render_text(text, {"ds": "x"}, source=where))
    escaping = TransfersSpec.from_mapping(
        {"inputs": [{"bucket": "b", "file_regex": ".*", "dest": "{{ d }}"}]}
    )
    with pytest.raises(ProjectError, match="dest"):
        escaping.render(lambda text, where: render_text(text, {"d": "../x"}, source=where))


# --------------------------------------------------------------------------- inputs


@pytest.fixture
def drop(s3: Any, bucket: str) -> str:
    for key, content in {
        "drop/data_1.csv": b"a,b\n1,2\n",
        "drop/sub/data_2.csv": b"a,b\n3,4\n",
        "drop/readme.txt": b"skip me",
        "elsewhere/data_3.csv": b"no",
    }.items():
        s3.put_object(Bucket=bucket, Key=key, Body=content)
    return bucket


def test_download_inputs_keeps_relative_paths(s3: Any, drop: str, tmp_path: Path) -> None:
    files = tmp_path / "files"
    spec = InputSpec(bucket=drop, directory="drop", file_regex=r"(.*/)?data_\d\.csv", dest="inbox")
    done = download_inputs(s3, spec, files)
    assert [(item.key, item.relative_key) for item in done] == [
        ("drop/data_1.csv", "data_1.csv"),
        ("drop/sub/data_2.csv", "sub/data_2.csv"),
    ]
    assert (files / "inbox" / "data_1.csv").read_bytes() == b"a,b\n1,2\n"
    assert (files / "inbox" / "sub" / "data_2.csv").read_bytes() == b"a,b\n3,4\n"
    assert all(item.etag and item.size == 8 for item in done)
    assert sorted(p.name for p in (files / "inbox").rglob("*")) == [
        "data_1.csv",
        "data_2.csv",
        "sub",
    ]
    # Downloading never touches the sources: post-copy is a separate, later step.
    assert exists(s3, drop, "drop/data_1.csv") and exists(s3, drop, "drop/sub/data_2.csv")


def test_download_refuses_keys_that_escape(s3: Any, bucket: str, tmp_path: Path) -> None:
    s3.put_object(Bucket=bucket, Key="drop/ok.csv", Body=b"fine")
    s3.put_object(Bucket=bucket, Key="drop/../../evil.csv", Body=b"evil")
    spec = InputSpec(bucket=bucket, directory="drop", file_regex=r".*\.csv")
    with pytest.raises(TransferError, match="escape"):
        download_inputs(s3, spec, tmp_path / "files")
    # Checked before anything is written.
    assert not (tmp_path / "files").exists() or not any((tmp_path / "files").rglob("*"))
    assert not (tmp_path / "evil.csv").exists()


def test_download_nothing_matched(s3: Any, drop: str, tmp_path: Path) -> None:
    spec = InputSpec(bucket=drop, directory="drop", file_regex=r"nothing")
    with pytest.raises(
        TransferError, match=f"no object matching 'nothing' under s3://{drop}/drop/"
    ):
        download_inputs(s3, spec, tmp_path)
    optional = InputSpec(bucket=drop, directory="drop", file_regex=r"nothing", required=False)
    assert download_inputs(s3, optional, tmp_path) == []


def keyed(part: str) -> Any:
    """A ``Recorder.fail_on`` match: calls on keys containing ``part``."""
    return lambda params: part in params.get("Key", "")


def test_a_failed_download_names_the_object_and_leaves_no_file(
    drop: str, recorder: CallRecorder, tmp_path: Path
) -> None:
    s3 = recorder.factory()("s3")
    recorder.fail_on("GetObject", match=keyed("sub/data_2.csv"), code="AccessDenied")
    spec = InputSpec(bucket=drop, directory="drop", file_regex=r"(.*/)?data_\d\.csv")
    with pytest.raises(TransferError) as failed:
        download_inputs(s3, spec, tmp_path / "files")
    assert str(failed.value) == (
        f"inputs: download s3://{drop}/drop/sub/data_2.csv: access denied (AccessDenied): "
        "check the IAM policy"
    )
    assert sorted(p.name for p in (tmp_path / "files").rglob("*") if p.is_file()) == ["data_1.csv"]


# --------------------------------------------------------------------------- outputs


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "artifacts" / "sub").mkdir(parents=True)
    (root / "artifacts" / "out1.csv").write_text("1\n")
    (root / "artifacts" / "sub" / "out2.csv").write_text("22\n")
    (root / "artifacts" / "state").write_text("{}")
    return root


def test_upload_outputs_with_acl_then_flag(s3: Any, bucket: str, workspace: Path) -> None:
    recorder = Recorder(s3)
    spec = OutputSpec(
        source="artifacts/**/*.csv", bucket=bucket, directory="dest", flag="dest/some_fin.flg"
    )
    done = upload_outputs(s3, spec, workspace)
    assert [item.key for item in done] == ["dest/out1.csv", "dest/sub/out2.csv"]
    assert body(s3, bucket, "dest/sub/out2.csv") == b"22\n"
    assert not exists(s3, bucket, "dest/state")
    # Every write (uploads and the flag) asks for bucket-owner-full-control; the flag is last
    # (the uploads run in parallel, in any order).
    puts = recorder.keys("PutObject")
    assert sorted(puts[:-1]) == ["dest/out1.csv", "dest/sub/out2.csv"]
    assert puts[-1] == "dest/some_fin.flg"
    assert all(params.get("ACL") == BUCKET_OWNER_FULL_CONTROL for _op, params in recorder.calls)
    assert body(s3, bucket, "dest/some_fin.flg") == b""


def test_outputs_upload_in_parallel_and_large_ones_in_parts(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    out = tmp_path / "artifacts"
    out.mkdir()
    for number in range(6):
        (out / f"part-{number}.csv").write_text(f"{number}\n")
    (out / "big.bin").write_bytes(bytes(range(256)) * (9 * 4096))  # 9 MiB: over the threshold
    in_flight, peak, lock = [0], [0], threading.Lock()

    def slow_put(**_: Any) -> None:  # each small upload takes 0.1 s in this handler
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.1)
        with lock:
            in_flight[0] -= 1

    s3.meta.events.register("before-parameter-build.s3.PutObject", slow_put)
    recorder = Recorder(s3)
    done = upload_outputs(s3, OutputSpec(source="artifacts/*", bucket=bucket), tmp_path)
    assert sorted(item.key for item in done) == sorted(
        ["big.bin", *(f"part-{number}.csv" for number in range(6))]
    )
    assert peak[0] > 1  # several uploads were in flight at once
    assert recorder.keys("CreateMultipartUpload") == ["big.bin"]
    # The parts' MD5s are those of the local bytes (a GET of a multipart object is not
    # compared here: some moto/botocore pairs disagree on its CRC32, not on its content).
    etag = s3.head_object(Bucket=bucket, Key="big.bin")["ETag"].strip('"')
    assert etag == digest_file(out / "big.bin").etag and etag.endswith("-2")
    assert body(s3, bucket, "part-5.csv") == b"5\n"


def test_upload_outputs_acl_can_be_disabled(s3: Any, bucket: str, workspace: Path) -> None:
    recorder = Recorder(s3)
    spec = OutputSpec(
        source="artifacts/*.csv",
        bucket=bucket,
        directory="dest",
        file_regex=r"out\d\.csv",
        flag="dest/done.flg",
        disable_bucket_owner_acl=True,
    )
    assert [item.key for item in upload_outputs(s3, spec, workspace)] == ["dest/out1.csv"]
    assert len(recorder.calls) == 2
    assert all("ACL" not in params for _op, params in recorder.calls)


def test_flag_not_touched_when_an_upload_fails(s3: Any, bucket: str, workspace: Path) -> None:
    def fail_second(params: dict[str, Any], **_: Any) -> None:
        if params["Key"].endswith("out2.csv"):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")

    s3.meta.events.register("before-parameter-build.s3.PutObject", fail_second)
    spec = OutputSpec(
        source="artifacts/**/*.csv", bucket=bucket, directory="dest", flag="dest/f.flg"
    )
    with pytest.raises(TransferError, match=r"sub/out2\.csv.*AccessDenied"):
        upload_outputs(s3, spec, workspace)
    assert exists(s3, bucket, "dest/out1.csv")
    assert not exists(s3, bucket, "dest/f.flg")


def test_outputs_required_and_symlinks(
    s3: Any, bucket: str, workspace: Path, tmp_path: Path
) -> None:
    spec = OutputSpec(source="artifacts/*.parquet", bucket=bucket, flag="f.flg")
    with pytest.raises(TransferError, match="no file matches"):
        upload_outputs(s3, spec, workspace)
    assert not exists(s3, bucket, "f.flg")

    outside = tmp_path / "secret.csv"
    outside.write_text("not yours")
    (workspace / "artifacts" / "link.csv").symlink_to(outside)
    with pytest.raises(TransferError, match="outside"):
        upload_outputs(s3, OutputSpec(source="artifacts/*.csv", bucket=bucket), workspace)
    assert not exists(s3, bucket, "link.csv")


def test_no_flag_means_only_the_uploads(s3: Any, bucket: str, workspace: Path) -> None:
    recorder = Recorder(s3)
    upload_outputs(
        s3, OutputSpec(source="artifacts/state", bucket=bucket, directory="d"), workspace
    )
    assert recorder.keys("PutObject") == ["d/state"]


def test_touch_flag(s3: Any, bucket: str) -> None:
    recorder = Recorder(s3)
    assert touch_flag(s3, bucket, "/dest/x.fin") == f"s3://{bucket}/dest/x.fin"
    assert touch_flag(s3, bucket, "dest/y.fin", acl=False) == f"s3://{bucket}/dest/y.fin"
    assert body(s3, bucket, "dest/x.fin") == b"" and body(s3, bucket, "dest/y.fin") == b""
    assert [params.get("ACL") for _op, params in recorder.calls] == [
        BUCKET_OWNER_FULL_CONTROL,
        None,
    ]


# --------------------------------------------------------------------------- post-copy


def test_move_archives_then_deletes(s3: Any, drop: str, tmp_path: Path) -> None:
    spec = InputSpec(
        bucket=drop,
        directory="drop",
        file_regex=r"(.*/)?data_\d\.csv",
        post_copy=PostCopy("move", "archive/2024"),
    )
    done = download_inputs(s3, spec, tmp_path)
    recorder = Recorder(s3)
    results = apply_input_post_copy(s3, spec, done)
    assert [(r.key, r.status, r.archive_uri) for r in results] == [
        ("drop/data_1.csv", "moved", f"s3://{drop}/archive/2024/data_1.csv"),
        ("drop/sub/data_2.csv", "moved", f"s3://{drop}/archive/2024/sub/data_2.csv"),
    ]
    assert body(s3, drop, "archive/2024/sub/data_2.csv") == b"a,b\n3,4\n"
    assert not exists(s3, drop, "drop/data_1.csv") and not exists(s3, drop, "drop/sub/data_2.csv")
    assert exists(s3, drop, "drop/readme.txt")  # not an input: untouched
    copies = [params for op, params in recorder.calls if op == "CopyObject"]
    assert len(copies) == 2
    assert all(p["ACL"] == BUCKET_OWNER_FULL_CONTROL and p["CopySourceIfMatch"] for p in copies)


def test_failed_flag_and_post_copy_name_the_object(
    drop: str, recorder: CallRecorder, tmp_path: Path
) -> None:
    s3 = recorder.factory()("s3")
    recorder.fail_on("PutObject", match=keyed("done.flg"), code="NoSuchBucket")
    with pytest.raises(TransferError) as failed:
        touch_flag(s3, drop, "out/done.flg")
    assert str(failed.value) == (
        f"flag file: write s3://{drop}/out/done.flg: the bucket does not exist (NoSuchBucket)"
    )

    spec = InputSpec(
        bucket=drop, directory="drop", file_regex=r"data_1\.csv", post_copy=PostCopy("move", "a")
    )
    done = download_inputs(s3, spec, tmp_path)
    recorder.fail_on("DeleteObject", match=keyed("drop/data_1.csv"), code="AccessDenied")
    with pytest.raises(TransferError) as failed:
        apply_input_post_copy(s3, spec, done)
    assert str(failed.value) == (
        f"post-copy: move s3://{drop}/drop/data_1.csv: access denied (AccessDenied): "
        "check the IAM policy"
    )
    assert exists(s3, drop, "drop/data_1.csv")  # the source stays when its delete failed

    recorder.fail_on("HeadObject", match=keyed("drop/data_1.csv"), code="SlowDown")
    with pytest.raises(TransferError) as failed:
        apply_input_post_copy(s3, spec, done)
    assert str(failed.value) == (
        f"post-copy: check s3://{drop}/drop/data_1.csv: throttled by AWS after retries (SlowDown)"
    )


def test_delete_and_no_post_copy(s3: Any, drop: str, tmp_path: Path) -> None:
    keep = InputSpec(bucket=drop, directory="drop", file_regex=r"data_1\.csv")
    done = download_inputs(s3, keep, tmp_path)
    assert apply_input_post_copy(s3, keep, done) == []
    assert exists(s3, drop, "drop/data_1.csv")

    results = apply_post_copy(s3, done, action="delete")
    assert [(r.status, r.archive_uri) for r in results] == [("deleted", None)]
    assert not exists(s3, drop, "drop/data_1.csv")


def test_replaced_or_vanished_sources_are_left_alone(s3: Any, drop: str, tmp_path: Path) -> None:
    spec = InputSpec(bucket=drop, directory="drop", file_regex=r"(.*/)?data_\d\.csv")
    done = download_inputs(s3, spec, tmp_path)
    s3.put_object(Bucket=drop, Key="drop/data_1.csv", Body=b"a newer drop")
    s3.delete_object(Bucket=drop, Key="drop/sub/data_2.csv")
    results = apply_post_copy(s3, done, action="move", archive_prefix="archive")
    assert [(r.key, r.status) for r in results] == [
        ("drop/data_1.csv", "changed"),
        ("drop/sub/data_2.csv", "missing"),
    ]
    assert body(s3, drop, "drop/data_1.csv") == b"a newer drop"
    assert not exists(s3, drop, "archive/data_1.csv")

    # The same check guards a plain delete: the newer drop survives.
    (again,) = apply_post_copy(s3, done[:1], action="delete")
    assert again.status == "changed" and body(s3, drop, "drop/data_1.csv") == b"a newer drop"


def test_download_enforces_the_count_bounds(s3: Any, drop: str, tmp_path: Path) -> None:
    two = {"bucket": drop, "directory": "drop", "file_regex": r"(.*/)?data_\d\.csv"}
    ok = InputSpec.from_mapping({**two, "min_count": 2, "max_count": 2}, path="in")
    assert [t.key for t in download_inputs(s3, ok, tmp_path / "a")] == [
        "drop/data_1.csv",
        "drop/sub/data_2.csv",
    ]
    few = InputSpec.from_mapping({**two, "min_count": 3}, path="in")
    with pytest.raises(
        TransferError, match=r"inputs: 2 object\(s\) matching .* \(wanted at least 3\)"
    ):
        download_inputs(s3, few, tmp_path / "b")
    many = InputSpec.from_mapping({**two, "max_count": 1}, path="in")
    with pytest.raises(
        TransferError,
        match=r"2 object\(s\) .* under s3://.*/drop/ \(wanted exactly 1\)",
    ):
        download_inputs(s3, many, tmp_path / "c")
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()  # nothing written
    # required: false lets the input be absent; the bounds apply once something matches
    optional = InputSpec.from_mapping(
        {**two, "file_regex": "nothing", "min_count": 2, "required": False}, path="in"
    )
    assert download_inputs(s3, optional, tmp_path / "d") == []


def test_rename_copies_to_the_new_name_then_deletes(s3: Any, drop: str, tmp_path: Path) -> None:
    spec = InputSpec.from_mapping(
        {
            "bucket": drop,
            "directory": "drop",
            "file_regex": r"(.*/)?data_\d\.csv",
            "post_copy": {
                "action": "rename",
                "pattern": r"data_(\d)\.csv$",
                "replacement": r"done_\1.csv",
            },
        },
        path="in",
    )
    done = download_inputs(s3, spec, tmp_path)
    recorder = Recorder(s3)
    results = apply_input_post_copy(s3, spec, done)
    assert [(r.key, r.status, r.archive_uri) for r in results] == [
        ("drop/data_1.csv", "renamed", f"s3://{drop}/drop/done_1.csv"),
        ("drop/sub/data_2.csv", "renamed", f"s3://{drop}/drop/sub/done_2.csv"),
    ]
    assert body(s3, drop, "drop/sub/done_2.csv") == b"a,b\n3,4\n"
    assert not exists(s3, drop, "drop/data_1.csv") and not exists(s3, drop, "drop/sub/data_2.csv")
    copies = [params for op, params in recorder.calls if op == "CopyObject"]
    assert all(p["ACL"] == BUCKET_OWNER_FULL_CONTROL and p["CopySourceIfMatch"] for p in copies)


def test_rename_into_an_archive_folder_and_etag_guard(s3: Any, drop: str, tmp_path: Path) -> None:
    spec = InputSpec(bucket=drop, directory="drop", file_regex=r"(.*/)?data_\d\.csv")
    done = download_inputs(s3, spec, tmp_path)
    s3.put_object(Bucket=drop, Key="drop/data_1.csv", Body=b"a newer drop")
    results = apply_post_copy(
        s3,
        done,
        action="rename",
        rename=(r"^(?:.*/)?(data_\d)\.csv$", r"\1.{{ds}}.csv"),
        archive_prefix="archive",
        source_prefix="drop",
    )
    assert [(r.key, r.status, r.archive_uri) for r in results] == [
        ("drop/data_1.csv", "changed", None),  # replaced after the download: left alone
        ("drop/sub/data_2.csv", "renamed", f"s3://{drop}/archive/data_2.{{{{ds}}}}.csv"),
    ]
    assert body(s3, drop, "drop/data_1.csv") == b"a newer drop"


def test_rename_refuses_collisions_before_touching_anything(
    s3: Any, drop: str, tmp_path: Path
) -> None:
    spec = InputSpec(bucket=drop, directory="drop", file_regex=r"(.*/)?data_\d\.csv")
    done = download_inputs(s3, spec, tmp_path)
    cases = {
        (r".+", "same.csv"): r"would both become s3://.*/drop/same\.csv; nothing was renamed",
        (r"sub/data_2", "data_1"): r"sub/data_2\.csv would overwrite s3://.*/drop/data_1\.csv",
        (r".+", ""): r"would be renamed to '', not an object name",
        (r"data_\d\.csv", "dir/"): r"would be renamed to 'dir/'",
    }
    for (pattern, replacement), message in cases.items():
        with pytest.raises(TransferError, match=message):
            apply_post_copy(
                s3, done, action="rename", rename=(pattern, replacement), source_prefix="drop"
            )
        assert exists(s3, drop, "drop/data_1.csv") and exists(s3, drop, "drop/sub/data_2.csv")
    # renamed to itself: nothing to do, and above all not deleted
    (same, _) = apply_post_copy(
        s3, done, action="rename", rename=("nomatch", "x"), source_prefix="drop"
    )
    assert same.status == "unchanged" and exists(s3, drop, "drop/data_1.csv")


def test_post_copy_argument_errors(s3: Any) -> None:
    with pytest.raises(TransferError, match="archive"):
        apply_post_copy(s3, [], action="move")
    with pytest.raises(TransferError, match="unknown action"):
        apply_post_copy(s3, [], action="copy")
    with pytest.raises(TransferError, match="'rename' needs a pattern"):
        apply_post_copy(s3, [], action="rename")


def test_touch_step(s3: Any, bucket: str) -> None:
    step = TouchStep.from_mapping({"bucket": bucket, "key": "dest/{{ ds }}.flg"}, path="s3_touch")
    recorder = Recorder(s3)
    rendered = step.render(
        lambda text, where: render_text(text, {"ds": "2024-05-01"}, source=where)
    )
    assert rendered.run(s3) == f"s3://{bucket}/dest/2024-05-01.flg"
    assert body(s3, bucket, "dest/2024-05-01.flg") == b""
    assert [p["ACL"] for _op, p in recorder.calls] == [BUCKET_OWNER_FULL_CONTROL]
    with pytest.raises(ProjectError, match=r"s3_touch\.key: required"):
        TouchStep.from_mapping({"bucket": bucket}, path="s3_touch")
