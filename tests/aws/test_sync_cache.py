"""Re-syncs that hash nothing, and executable-bit changes that are synced (moto server).

The files store remembers local digests and objects' metadata between syncs
(``handoff_provider.core.stores.sync_cache``). These tests check what a user sees: the
requests made, what is uploaded or downloaded, and that the cache never hides a change,
local or remote. Hashing is observed (not replaced) by wrapping ``digest_file``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from handoff_provider.core.stores import Remote, s3sync, sync_cache
from handoff_provider.core.stores.sync_cache import is_racy
from tests.aws.conftest import WRITES, Recorder


def write(root: Path, files: dict[str, str], *, mode: int = 0o644) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        os.chmod(path, mode)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    write(root / "files", {"a.txt": "alpha\n", "sub/b.csv": "x,y\n1,2\n"})
    write(root / "files", {"run.sh": "#!/bin/sh\necho hi\n"}, mode=0o755)
    return root


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths hashed (the real ``digest_file`` runs)."""
    seen: list[Path] = []
    real = s3sync.digest_file

    def spy(path: Path) -> s3sync.FileDigest:
        seen.append(Path(path))
        return real(path)

    monkeypatch.setattr(s3sync, "digest_file", spy)
    return seen


def settle() -> None:
    """Let the files' last change get older than the racy window before hashing."""
    time.sleep(0.15)


def remote_mode(s3: Any, bucket: str, key: str) -> str:
    return s3.head_object(Bucket=bucket, Key=key)["Metadata"]["handoff-mode"]


def test_a_no_change_resync_is_one_listing_and_hashes_nothing(
    remote: Remote, recorder: Recorder, project: Path, hashed: list[Path]
) -> None:
    settle()
    first = remote.files.push(project / "files")
    assert len(first.uploaded) == 3 and len(hashed) == 3

    (cache,) = (project / ".handoff" / "sync").glob("*.json")
    written = cache.stat().st_mtime_ns
    hashed.clear()
    recorder.clear()
    again = remote.files.push(project / "files")
    assert len(again.unchanged) == 3 and again.uploaded == []
    assert hashed == []
    assert [call.operation for call in recorder.calls] == ["ListObjectsV2"]
    assert cache.stat().st_mtime_ns == written, "nothing learned: the cache is not rewritten"


def test_the_cache_lives_beside_files_and_git_ignores_it(remote: Remote, project: Path) -> None:
    remote.files.push(project / "files")
    caches = list((project / ".handoff" / "sync").glob("*.json"))
    assert len(caches) == 1
    document = json.loads(caches[0].read_text())
    assert sorted(document["remote"]) == ["a.txt", "run.sh", "sub/b.csv"]
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    status = subprocess.run(
        ["git", "-C", str(project), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ".handoff" not in status and "files/a.txt" in status


def test_an_edit_is_hashed_and_uploaded_the_rest_is_not_hashed(
    remote: Remote, project: Path, hashed: list[Path], s3: Any, bucket: str
) -> None:
    settle()
    remote.files.push(project / "files")
    path = project / "files" / "a.txt"
    before = path.stat()
    path.write_text("ALPHA\n")  # same size; the old mtime is even put back
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns

    hashed.clear()
    result = remote.files.push(project / "files")
    assert result.uploaded == ["a.txt"]
    assert hashed == [path], "only the changed file (its ctime moved) is hashed again"
    body = s3.get_object(Bucket=bucket, Key=f"{remote.stack}/files/a.txt")["Body"].read()
    assert body == b"ALPHA\n"


def test_a_chmod_alone_is_pushed_and_then_is_stable(
    remote: Remote, recorder: Recorder, project: Path, s3: Any, bucket: str
) -> None:
    remote.files.push(project / "files")
    key = f"{remote.stack}/files/a.txt"
    assert remote_mode(s3, bucket, key) == "644"

    os.chmod(project / "files" / "a.txt", 0o755)
    recorder.clear()
    result = remote.files.push(project / "files")
    assert result.uploaded == ["a.txt"] and len(result.unchanged) == 2
    assert remote_mode(s3, bucket, key) == "755"
    assert recorder.count("HeadObject") == 0

    recorder.clear()
    assert remote.files.push(project / "files").uploaded == []
    assert recorder.count(*WRITES) == 0


def test_a_chmod_is_pushed_from_a_fresh_checkout_without_cache(
    remote: Remote, recorder: Recorder, project: Path, s3: Any, bucket: str
) -> None:
    """No cache (a new clone, CI): the metadata the listing lacks is read with HEADs."""
    remote.files.push(project / "files")
    shutil.rmtree(project / ".handoff")
    os.chmod(project / "files" / "run.sh", 0o644)
    recorder.clear()
    result = remote.files.push(project / "files")
    assert result.uploaded == ["run.sh"]
    assert recorder.count("HeadObject") == 3
    assert remote_mode(s3, bucket, f"{remote.stack}/files/run.sh") == "644"


def test_a_remote_metadata_change_is_not_hidden_by_the_cache(
    remote: Remote, recorder: Recorder, project: Path, s3: Any, bucket: str
) -> None:
    """Someone else marks a.txt executable remotely (same content, same ETag): the
    listing's LastModified changed, so the cache is not trusted and a.txt is pushed back."""
    remote.files.push(project / "files")
    key = f"{remote.stack}/files/a.txt"
    head = s3.head_object(Bucket=bucket, Key=key)
    time.sleep(1.1)  # S3 timestamps have whole seconds
    s3.copy_object(
        Bucket=bucket,
        Key=key,
        CopySource={"Bucket": bucket, "Key": key},
        Metadata={**head["Metadata"], "handoff-mode": "755"},
        MetadataDirective="REPLACE",
    )
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"] == head["ETag"]
    recorder.clear()
    result = remote.files.push(project / "files")
    assert result.uploaded == ["a.txt"]
    assert recorder.count("HeadObject") == 1
    assert remote_mode(s3, bucket, key) == "644"


@pytest.mark.parametrize("settled", [True, False], ids=["settled", "files_just_written"])
def test_a_corrupt_cache_means_hashing_again(
    remote: Remote,
    project: Path,
    hashed: list[Path],
    settled: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The corrupt file is replaced by what the sync learned, even when that is nothing
    it may keep (files changed within the racy window: no digest is remembered)."""
    remote.files.push(project / "files")
    (cache,) = (project / ".handoff" / "sync").glob("*.json")
    cache.write_text('{"version": 1, "local": [')
    if settled:
        settle()
    else:  # every file counts as changed just before it is hashed
        monkeypatch.setattr(sync_cache, "RACY_SECONDS", 3600.0)
    hashed.clear()
    result = remote.files.push(project / "files")
    assert result.uploaded == [] and len(result.unchanged) == 3
    assert len(hashed) == 3
    document = json.loads(cache.read_text())
    assert document["version"] == 1
    assert len(document["local"]) == (3 if settled else 0)


def test_get_resync_hashes_nothing_and_follows_a_chmod(
    remote: Remote, recorder: Recorder, project: Path, tmp_path: Path, hashed: list[Path]
) -> None:
    remote.files.push(project / "files")
    dest = tmp_path / "ws" / "files"
    time.sleep(1.1)  # the objects' second is over: their HEADs can be remembered
    assert len(remote.files.get(dest).downloaded) == 3
    assert (tmp_path / "ws" / ".handoff" / ".gitignore").read_text().endswith("*\n")
    settle()
    remote.files.get(dest)  # hashes what it just downloaded (racy then), remembers it

    hashed.clear()
    recorder.clear()
    again = remote.files.get(dest)
    assert len(again.unchanged) == 3 and hashed == []
    assert [call.operation for call in recorder.calls] == ["ListObjectsV2"]

    os.chmod(project / "files" / "a.txt", 0o755)
    remote.files.push(project / "files")
    result = remote.files.get(dest)
    assert result.downloaded == ["a.txt"]
    assert os.access(dest / "a.txt", os.X_OK)


def test_racy_digests_are_not_kept() -> None:
    """A digest taken right after the file's last change isn't kept: another write in the
    same timestamp tick would leave the stat as it is."""
    fine = SimpleNamespace(
        st_mtime_ns=1_700_000_000_123_456_789, st_ctime_ns=1_700_000_000_123_456_789
    )
    assert is_racy(fine, fine.st_ctime_ns + 10_000_000)  # hashed 10 ms later
    assert not is_racy(fine, fine.st_ctime_ns + 500_000_000)
    coarse = SimpleNamespace(
        st_mtime_ns=1_700_000_000_000_000_000, st_ctime_ns=1_700_000_000_000_000_000
    )
    assert is_racy(coarse, coarse.st_ctime_ns + 500_000_000)  # whole-second file system
    assert not is_racy(coarse, coarse.st_ctime_ns + 3_000_000_000)


def test_a_first_sync_lists_once_and_the_resync_after_it_reads_no_metadata(
    remote: Remote, recorder: Recorder, project: Path
) -> None:
    """What an upload wrote is remembered from S3's answer to it (its ETag, also of a
    multipart upload): no second listing after uploading, no HEAD on the next sync."""
    big = project / "files" / "big.bin"
    big.write_bytes(os.urandom(s3sync.MULTIPART_THRESHOLD + 1024))  # multipart upload
    first = remote.files.push(project / "files")
    assert len(first.uploaded) == 4
    assert recorder.count("ListObjectsV2") == 1
    assert recorder.count("CompleteMultipartUpload") == 1

    recorder.clear()
    again = remote.files.push(project / "files")
    assert again.uploaded == [] and len(again.unchanged) == 4
    assert [call.operation for call in recorder.calls] == ["ListObjectsV2"]


def test_the_same_bytes_rewritten_by_another_tool_are_uploaded_again(
    remote: Remote, recorder: Recorder, project: Path, s3: Any, bucket: str
) -> None:
    """Another tool writes run.sh again with the same content (same ETag) but without
    handoff's metadata: its LastModified is newer than the answer to our upload, so the
    cache isn't trusted, a HEAD shows the metadata gone, and run.sh is uploaded again."""
    remote.files.push(project / "files")
    key = f"{remote.stack}/files/run.sh"
    before = s3.head_object(Bucket=bucket, Key=key)
    time.sleep(1.1)  # S3 timestamps have whole seconds
    s3.put_object(Bucket=bucket, Key=key, Body=(project / "files" / "run.sh").read_bytes())
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"] == before["ETag"]
    assert "handoff-mode" not in s3.head_object(Bucket=bucket, Key=key)["Metadata"]

    recorder.clear()
    result = remote.files.push(project / "files")
    assert result.uploaded == ["run.sh"] and len(result.unchanged) == 2
    assert recorder.count("HeadObject") == 1
    assert remote_mode(s3, bucket, key) == "755"


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        s3sync.MULTIPART_THRESHOLD - 1,  # the largest single PutObject
        s3sync.MULTIPART_THRESHOLD,  # the smallest multipart upload: one part
        2 * s3sync.MULTIPART_CHUNKSIZE + 1,  # three parts, the last of one byte
    ],
)
def test_local_etags_are_the_ones_s3_gives_our_uploads(
    remote: Remote, bucket: str, tmp_path: Path, size: int
) -> None:
    """What makes an unchanged file recognisable from a listing: the ETag computed
    locally is the one S3 gives the object our transfer manager uploaded."""
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(size))
    client = remote.client("s3")
    upload = s3sync.Transfer(kind="upload", key="etags/data.bin", path=path)
    s3sync.run_transfers(client, bucket, [upload])
    listed = s3sync.list_objects(client, bucket, "etags/")
    assert s3sync.digest_file(path).etag == listed["data.bin"].etag
    assert s3sync.digest_file(path).size == size


def test_upload_receipts_see_only_their_bucket_and_block(remote: Remote, bucket: str) -> None:
    """Receipts are the ETags S3 answered (as a HEAD shows them) of uploads into their
    bucket made inside the block; afterwards the client is as it was."""
    client = remote.client("s3")
    other = f"{bucket}-other"
    client.create_bucket(Bucket=other)
    with s3sync.UploadReceipts(client, bucket) as receipts:
        client.put_object(Bucket=bucket, Key="r/in.txt", Body=b"in")
        client.put_object(Bucket=other, Key="r/elsewhere.txt", Body=b"x")
    client.put_object(Bucket=bucket, Key="r/after.txt", Body=b"after")
    assert sorted(receipts.by_key) == ["r/in.txt"]
    head = client.head_object(Bucket=bucket, Key="r/in.txt")
    assert receipts.by_key["r/in.txt"].etag == head["ETag"].strip('"')
    assert receipts.by_key["r/in.txt"].answered_at >= s3sync.timestamp(head["LastModified"])


def test_a_no_change_resync_by_the_cli_imports_no_transfer_manager(
    aws: str, bucket: str, stack: str, project: Path
) -> None:
    """``handoff files push`` with nothing to upload makes a botocore client and lists:
    boto3 and s3transfer (the transfer manager) are imported only to transfer."""
    script = Path(sys.executable).with_name("handoff")
    if not script.exists():
        pytest.skip(f"no console script {script}")
    argv = [str(script), "files", "push", "-p", str(project), "--stack", stack, "--bucket", bucket]
    env = {key: value for key, value in os.environ.items() if not key.startswith("HANDOFF_")}

    def push() -> tuple[str, set[str]]:
        done = subprocess.run(
            argv, env={**env, "PYTHONPROFILEIMPORTTIME": "1"}, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", done.stderr, re.M)
        return done.stderr, {name.split(".")[0] for name in names}

    output, first = push()
    assert "3 uploaded" in output and {"boto3", "s3transfer"} <= first
    output, again = push()
    assert "0 uploaded" in output and "3 unchanged" in output
    assert "botocore" in again and again & {"boto3", "s3transfer"} == set()
