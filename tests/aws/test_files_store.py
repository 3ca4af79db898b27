"""The files store against the moto server: content-based sync in both directions."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from handoff_provider.core.errors import ConfigurationError, StoreError
from handoff_provider.core.stores import Remote
from tests.aws.conftest import WRITES, Recorder, keys, read


def write(root: Path, files: dict[str, bytes | str], *, mode: int | None = None) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        if mode is not None:
            os.chmod(path, mode)


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def project_files(tmp_path: Path) -> Path:
    root = tmp_path / "project" / "files"
    write(root, {"a.txt": "alpha\n", "sub/b.json": '{"b": 1}\n', "sub/deeper/c.csv": "x,y\n"})
    write(root, {"run.sh": "#!/bin/sh\necho hi\n"}, mode=0o755)
    return root


def test_push_uploads_then_resync_makes_zero_puts(
    remote: Remote, recorder: Recorder, project_files: Path, s3: Any, bucket: str
) -> None:
    first = remote.files.push(project_files)
    assert sorted(first.uploaded) == ["a.txt", "run.sh", "sub/b.json", "sub/deeper/c.csv"]
    prefix = f"{remote.stack}/files/"
    assert keys(s3, bucket, prefix) == sorted(first.uploaded)
    head = s3.head_object(Bucket=bucket, Key=prefix + "a.txt")
    assert head["Metadata"]["handoff-sha256"] == hashlib.sha256(b"alpha\n").hexdigest()
    assert "4 uploaded, 0 deleted, 0 unchanged" in str(first)

    recorder.clear()
    second = remote.files.push(project_files)
    assert second.uploaded == [] and second.deleted == []
    assert len(second.unchanged) == 4
    assert recorder.count(*WRITES) == 0
    assert recorder.count("HeadObject") == 0, "ETags match: no per-object request"
    assert recorder.count("ListObjectsV2") == 1


def test_changed_same_size_file_is_uploaded(
    remote: Remote, recorder: Recorder, project_files: Path, s3: Any, bucket: str
) -> None:
    remote.files.push(project_files)
    (project_files / "a.txt").write_text("ALPHA\n")  # same size, new content
    recorder.clear()
    result = remote.files.push(project_files)
    assert result.uploaded == ["a.txt"]
    assert [c.params["Key"] for c in recorder.ops("PutObject")] == [f"{remote.stack}/files/a.txt"]
    assert read(s3, bucket, f"{remote.stack}/files/a.txt") == b"ALPHA\n"


def test_removed_files_are_deleted_remotely(
    remote: Remote, project_files: Path, s3: Any, bucket: str
) -> None:
    remote.files.push(project_files)
    (project_files / "sub" / "b.json").unlink()
    result = remote.files.push(project_files)
    assert result.deleted == ["sub/b.json"]
    assert "sub/b.json" not in keys(s3, bucket, f"{remote.stack}/files/")


def test_more_than_1000_stale_keys_are_deleted_in_batches(
    remote: Remote, recorder: Recorder, tmp_path: Path, s3: Any, bucket: str
) -> None:
    prefix = f"{remote.stack}/files/"
    stale = [f"{prefix}old/{n:05d}.txt" for n in range(1001)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=b"x"), stale))
    local = tmp_path / "files"
    write(local, {"keep.txt": "keep"})

    result = remote.files.push(local)
    assert len(result.deleted) == 1001
    assert keys(s3, bucket, prefix) == ["keep.txt"]
    batches = recorder.ops("DeleteObjects")
    assert [len(c.params["Delete"]["Objects"]) for c in batches] == [1000, 1]
    assert recorder.count("ListObjectsV2") >= 2, "the listing was paginated"


def test_foreign_etag_falls_back_to_the_recorded_sha256(
    remote: Remote, recorder: Recorder, tmp_path: Path, s3: Any, bucket: str
) -> None:
    """An object whose ETag is not our MD5 (SSE-KMS, another tool's part size) is compared
    through its ``handoff-sha256`` metadata instead: one HEAD, no upload."""
    local = tmp_path / "files"
    write(local, {"data.bin": b"payload" * 10})
    key = f"{remote.stack}/files/data.bin"
    body = (local / "data.bin").read_bytes()

    def multipart_put(metadata: dict[str, str]) -> None:
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata=metadata)
        part = s3.upload_part(
            Bucket=bucket, Key=key, PartNumber=1, UploadId=upload["UploadId"], Body=body
        )
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )

    multipart_put({"handoff-sha256": hashlib.sha256(body).hexdigest()})
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"].endswith('-1"')
    result = remote.files.push(local)
    assert result.unchanged == ["data.bin"] and result.uploaded == []
    assert recorder.count("HeadObject") == 1
    assert recorder.count(*WRITES) == 0

    multipart_put({})  # no recorded checksum: can't prove it's equal, so upload
    assert remote.files.push(local).uploaded == ["data.bin"]


def test_multipart_sized_file_resyncs_without_upload(
    remote: Remote, recorder: Recorder, tmp_path: Path
) -> None:
    local = tmp_path / "files"
    write(local, {"big.bin": os.urandom(9 * 1024 * 1024)})  # over the 8 MB part size
    remote.files.push(local)
    assert recorder.count("CreateMultipartUpload") == 1
    recorder.clear()
    assert remote.files.push(local).unchanged == ["big.bin"]
    assert recorder.count(*WRITES) == 0 and recorder.count("HeadObject") == 0


def test_get_mirrors_and_only_downloads_what_changed(
    remote: Remote, recorder: Recorder, project_files: Path, tmp_path: Path, s3: Any, bucket: str
) -> None:
    remote.files.push(project_files)
    dest = tmp_path / "ws" / "files"
    first = remote.files.get(dest)
    assert tree(dest) == tree(project_files)
    assert len(first.downloaded) == 4
    assert os.access(dest / "run.sh", os.X_OK), "the executable bit travels in metadata"
    assert not os.access(dest / "a.txt", os.X_OK)

    recorder.clear()
    again = remote.files.get(dest)
    assert again.downloaded == [] and len(again.unchanged) == 4
    assert recorder.count("GetObject") == 0
    assert "0 downloaded, 0 deleted, 4 unchanged" in str(again)

    # One remote change, one local edit, one local extra file, one remote deletion.
    s3.put_object(Bucket=bucket, Key=f"{remote.stack}/files/sub/b.json", Body=b'{"b": 2}\n')
    (dest / "a.txt").write_text("edited locally\n")
    write(dest, {"extra/local-only.txt": "x"})
    s3.delete_object(Bucket=bucket, Key=f"{remote.stack}/files/sub/deeper/c.csv")
    recorder.clear()
    result = remote.files.get(dest)
    assert result.downloaded == ["a.txt", "sub/b.json"]
    assert result.deleted == ["extra/local-only.txt", "sub/deeper/c.csv"]
    assert sorted(c.params["Key"].rsplit("/files/", 1)[1] for c in recorder.ops("GetObject")) == [
        "a.txt",
        "sub/b.json",
    ]
    assert (dest / "a.txt").read_text() == "alpha\n"
    assert (dest / "sub" / "b.json").read_text() == '{"b": 2}\n'
    assert not (dest / "extra").exists() and not (dest / "sub" / "deeper").exists()


@pytest.mark.parametrize(
    "relative",
    ["../escape.txt", "a/../../escape.txt", "/etc/passwd", "a//b.txt", "a/./b.txt", "a\\..\\b"],
)
def test_get_refuses_keys_that_escape(
    remote: Remote, tmp_path: Path, s3: Any, bucket: str, relative: str
) -> None:
    prefix = f"{remote.stack}/files/"
    s3.put_object(Bucket=bucket, Key=prefix + "fine.txt", Body=b"ok")
    s3.put_object(Bucket=bucket, Key=prefix + relative, Body=b"evil")
    dest = tmp_path / "ws" / "files"
    with pytest.raises(StoreError) as raised:
        remote.files.get(dest)
    message = str(raised.value)
    assert repr(prefix + relative) in message and "\n" not in message
    assert not (tmp_path / "ws" / "escape.txt").exists()
    assert not dest.exists() or tree(dest) == {}, "nothing is written"


def test_get_skips_console_folder_markers(
    remote: Remote, tmp_path: Path, s3: Any, bucket: str
) -> None:
    prefix = f"{remote.stack}/files/"
    s3.put_object(Bucket=bucket, Key=prefix + "folder/", Body=b"")
    s3.put_object(Bucket=bucket, Key=prefix + "folder/x.txt", Body=b"x")
    dest = tmp_path / "files"
    assert remote.files.get(dest).downloaded == ["folder/x.txt"]


def test_push_of_missing_project_dir_is_a_clear_error(remote: Remote, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="project directory not found"):
        remote.files.push(tmp_path / "nope" / "files")


def test_push_without_files_dir_empties_the_remote(
    remote: Remote, project_files: Path, tmp_path: Path, s3: Any, bucket: str
) -> None:
    remote.files.push(project_files)
    empty_project = tmp_path / "other"
    empty_project.mkdir()
    assert len(remote.files.push(empty_project / "files").deleted) == 4
    assert keys(s3, bucket, f"{remote.stack}/files/") == []


def test_symlinks_inside_are_followed_outside_refused(
    remote: Remote, tmp_path: Path, s3: Any, bucket: str
) -> None:
    project = tmp_path / "project"
    write(project, {"files/real/data.txt": "data", "config/secret.json": '{"k": "secret"}'})
    (project / "files" / "alias.txt").symlink_to("real/data.txt")
    (project / "files" / "linked-dir").symlink_to("real")
    result = remote.files.push(project / "files")
    assert sorted(result.uploaded) == ["alias.txt", "linked-dir/data.txt", "real/data.txt"]

    (project / "files" / "leak.json").symlink_to("../config/secret.json")
    with pytest.raises(ConfigurationError, match="symlink points outside"):
        remote.files.push(project / "files")
    assert "leak.json" not in keys(s3, bucket, f"{remote.stack}/files/")
