"""The artifacts store against the moto server: runs/, last/ and its completion manifest."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from handoff_provider.core.errors import ConfigurationError, StoreError
from handoff_provider.core.model.run_key import check_run_key
from handoff_provider.core.stores import MANIFEST_NAME, Remote, new_run_key
from tests.aws.conftest import Recorder, keys, read


def artifacts(root: Path, files: dict[str, str]) -> Path:
    if root.exists():
        for path in sorted(root.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def manifest(s3: Any, bucket: str, prefix: str) -> dict[str, Any]:
    return json.loads(read(s3, bucket, prefix + MANIFEST_NAME))


def test_success_goes_to_runs_and_last(
    remote: Remote, tmp_path: Path, s3: Any, bucket: str
) -> None:
    local = artifacts(tmp_path / "a", {"state": "s1", "run.json": "{}", "logs/x.log": "log"})
    location = remote.artifacts.push(local, "run-1", succeeded=True)
    stack = remote.stack
    assert location.runs_uri == f"s3://{bucket}/{stack}/runs/run-1/"
    assert location.last_uri == f"s3://{bucket}/{stack}/last/"
    expected = sorted([MANIFEST_NAME, "logs/x.log", "run.json", "state"])
    assert keys(s3, bucket, f"{stack}/runs/run-1/") == expected
    assert keys(s3, bucket, f"{stack}/last/") == expected
    assert read(s3, bucket, f"{stack}/last/state") == b"s1"
    last = manifest(s3, bucket, f"{stack}/last/")
    assert last["run_key"] == "run-1" and last["status"] == "success"
    assert sorted(last["files"]) == ["logs/x.log", "run.json", "state"]
    assert "last/ replaced" in str(location)


def test_failed_run_does_not_touch_last(
    remote: Remote, tmp_path: Path, s3: Any, bucket: str
) -> None:
    stack = remote.stack
    remote.artifacts.push(artifacts(tmp_path / "a", {"state": "good"}), "ok-1", succeeded=True)
    before = {k: read(s3, bucket, f"{stack}/last/{k}") for k in keys(s3, bucket, f"{stack}/last/")}

    local = artifacts(tmp_path / "a", {"state": "bad", "error.log": "boom"})
    location = remote.artifacts.push(local, "failed-2", succeeded=False)
    assert location.last_uri is None and "last/ left unchanged" in str(location)
    assert manifest(s3, bucket, f"{stack}/runs/failed-2/")["status"] == "failed"
    assert read(s3, bucket, f"{stack}/runs/failed-2/state") == b"bad"
    after = {k: read(s3, bucket, f"{stack}/last/{k}") for k in keys(s3, bucket, f"{stack}/last/")}
    assert after == before


def test_next_success_replaces_last_and_removes_stale_keys(
    remote: Remote, tmp_path: Path, s3: Any, bucket: str
) -> None:
    stack = remote.stack
    remote.artifacts.push(
        artifacts(tmp_path / "a", {"state": "1", "old.csv": "x"}), "r1", succeeded=True
    )
    remote.artifacts.push(artifacts(tmp_path / "a", {"state": "2"}), "r2", succeeded=True)
    assert keys(s3, bucket, f"{stack}/last/") == [MANIFEST_NAME, "state"]
    assert read(s3, bucket, f"{stack}/last/state") == b"2"
    assert keys(s3, bucket, f"{stack}/runs/r1/") == [MANIFEST_NAME, "old.csv", "state"]


def test_last_is_copied_server_side_and_unchanged_files_skipped(
    remote: Remote, recorder: Recorder, tmp_path: Path
) -> None:
    remote.artifacts.push(
        artifacts(tmp_path / "a", {"state": "1", "same.txt": "same"}), "r1", succeeded=True
    )
    recorder.clear()
    remote.artifacts.push(
        artifacts(tmp_path / "a", {"state": "2", "same.txt": "same"}), "r2", succeeded=True
    )
    copied = [c.params["Key"].rsplit("/", 1)[1] for c in recorder.ops("CopyObject")]
    assert copied == ["state"]
    uploaded = [c.params["Key"] for c in recorder.ops("PutObject")]
    assert all("/runs/r2/" in key or key.endswith(f"last/{MANIFEST_NAME}") for key in uploaded)


def test_upload_failing_midway_leaves_last_on_the_previous_run(
    remote: Remote, recorder: Recorder, tmp_path: Path, s3: Any, bucket: str
) -> None:
    stack = remote.stack
    remote.artifacts.push(
        artifacts(tmp_path / "a", {"state": "old", "a.txt": "old-a"}), "r1", succeeded=True
    )
    recorder.fail_on("PutObject", after=1, match=lambda p: "/runs/r2/" in p["Key"])
    local = artifacts(tmp_path / "a", {"state": "new", "a.txt": "new-a", "b.txt": "b"})
    with pytest.raises(StoreError) as raised:
        remote.artifacts.push(local, "r2", succeeded=True)
    assert f"s3://{bucket}/{stack}/runs/r2/" in str(raised.value)
    assert manifest(s3, bucket, f"{stack}/last/")["run_key"] == "r1"
    assert keys(s3, bucket, f"{stack}/last/") == [MANIFEST_NAME, "a.txt", "state"]
    assert read(s3, bucket, f"{stack}/last/state") == b"old"
    assert MANIFEST_NAME not in keys(s3, bucket, f"{stack}/runs/r2/"), "r2 is not complete"


def test_copy_into_last_failing_midway_is_published_pending_and_repaired(
    remote: Remote, recorder: Recorder, tmp_path: Path, s3: Any, bucket: str
) -> None:
    """The manifest switch comes first: once it happened the run is published. If copying
    into last/ then breaks off, the manifest says ``pending``, readers get the new run
    (from runs/r2/, verified), and repair_last() makes the raw last/ objects match."""
    stack = remote.stack
    remote.artifacts.push(
        artifacts(tmp_path / "a", {"a.txt": "old-a", "state": "old", "gone.txt": "g"}),
        "r1",
        succeeded=True,
    )
    recorder.fail_on("CopyObject", after=1)
    local = artifacts(tmp_path / "a", {"a.txt": "new-a", "state": "new"})
    location = remote.artifacts.push(local, "r2", succeeded=True)
    assert location.last_uri and location.last_pending and "InternalError" in location.last_pending
    assert "artifacts repair" in str(location)
    assert manifest(s3, bucket, f"{stack}/last/")["run_key"] == "r2"
    assert manifest(s3, bucket, f"{stack}/last/")["last_sync"] == "pending"
    in_last = {read(s3, bucket, f"{stack}/last/a.txt"), read(s3, bucket, f"{stack}/last/state")}
    assert in_last == {b"old-a", b"new"} or in_last == {b"new-a", b"old"}, "one copy went through"
    recorder.clear()

    dest = tmp_path / "got"
    result = remote.artifacts.get_last(dest)
    assert "run r2" in result.source
    assert (dest / "a.txt").read_text() == "new-a" and (dest / "state").read_text() == "new"
    state = tmp_path / "ws" / "artifacts" / "state"
    assert remote.artifacts.restore_state(state) and state.read_text() == "new"

    repair = remote.artifacts.repair_last()
    assert repair.repaired and (repair.copied, repair.deleted) == (1, 1)
    assert keys(s3, bucket, f"{stack}/last/") == [MANIFEST_NAME, "a.txt", "state"]
    assert read(s3, bucket, f"{stack}/last/a.txt") == b"new-a"
    assert read(s3, bucket, f"{stack}/last/state") == b"new"
    assert manifest(s3, bucket, f"{stack}/last/")["last_sync"] == "complete"
    assert not remote.artifacts.repair_last().repaired, "a second repair has nothing to do"


def test_restore_state(remote: Remote, tmp_path: Path) -> None:
    state = tmp_path / "ws" / "artifacts" / "state"
    assert remote.artifacts.restore_state(state) is False, "nothing published yet"
    assert not state.exists()

    remote.artifacts.push(artifacts(tmp_path / "a", {"other.txt": "x"}), "r1", succeeded=True)
    assert remote.artifacts.restore_state(state) is False, "the last run had no state"

    remote.artifacts.push(artifacts(tmp_path / "a", {"state": '{"n": 1}'}), "r2", succeeded=True)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text("stale local state")
    assert remote.artifacts.restore_state(state) is True
    assert state.read_text() == '{"n": 1}'
    assert sorted(p.name for p in state.parent.iterdir()) == ["state"], "no staging left"


def test_state_without_manifest_is_not_trusted(
    remote: Remote, tmp_path: Path, s3: Any, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    s3.put_object(Bucket=bucket, Key=f"{remote.stack}/last/state", Body=b"from another tool")
    state = tmp_path / "state"
    assert remote.artifacts.restore_state(state) is False
    assert "no completion manifest" in caplog.text
    with pytest.raises(StoreError, match="no successful run archived"):
        remote.artifacts.get_last(tmp_path / "dest")


def test_get_last_falls_back_to_last_when_runs_expired(
    remote: Remote, tmp_path: Path, s3: Any, bucket: str
) -> None:
    remote.artifacts.push(artifacts(tmp_path / "a", {"state": "kept"}), "r1", succeeded=True)
    s3.delete_object(Bucket=bucket, Key=f"{remote.stack}/runs/r1/state")  # lifecycle expiry
    dest = tmp_path / "dest"
    remote.artifacts.get_last(dest)
    assert (dest / "state").read_text() == "kept"


def test_get_last_detects_a_file_that_does_not_match_the_manifest(
    remote: Remote, tmp_path: Path, s3: Any, bucket: str
) -> None:
    remote.artifacts.push(artifacts(tmp_path / "a", {"state": "real"}), "r1", succeeded=True)
    s3.put_object(Bucket=bucket, Key=f"{remote.stack}/runs/r1/state", Body=b"fake")
    dest = tmp_path / "dest"
    with pytest.raises(StoreError, match="does not match the SHA-256"):
        remote.artifacts.get_last(dest)
    assert not (dest / "state").exists(), "nothing unverified is put in place"


def test_repush_under_the_same_key_replaces_the_run(
    remote: Remote, tmp_path: Path, s3: Any, bucket: str
) -> None:
    remote.artifacts.push(artifacts(tmp_path / "a", {"x": "1", "y": "1"}), "k", succeeded=False)
    remote.artifacts.push(artifacts(tmp_path / "a", {"x": "2"}), "k", succeeded=True)
    assert keys(s3, bucket, f"{remote.stack}/runs/k/") == [MANIFEST_NAME, "x"]
    assert manifest(s3, bucket, f"{remote.stack}/runs/k/")["status"] == "success"


def test_reserved_manifest_name(remote: Remote, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="reserved"):
        remote.artifacts.push(artifacts(tmp_path / "a", {MANIFEST_NAME: "x"}), "r1", succeeded=True)


def test_new_run_key() -> None:
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", new_run_key())
    assert new_run_key() != new_run_key()
    hinted = new_run_key("etl/scheduled__2024-01-31T00:00:00+00:00/load/1")
    assert hinted == "etl_scheduled__2024-01-31T00_00_00_00_00_load_1"
    assert check_run_key(hinted) == hinted
    assert new_run_key("../../x") == "x"
    assert len(new_run_key("a" * 500)) == 200
    assert re.fullmatch(r"\d{8}T.*", new_run_key("///"))
    # A key that is already valid (the Airflow layer's) is never altered.
    airflow_key = "_etl__scheduled__2024-01-31T00_00_00_00_00__load__try1-1a2b3c4d"
    assert new_run_key(airflow_key) == airflow_key


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "x" * 201])
def test_bad_run_keys_are_refused(remote: Remote, tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigurationError, match="run key"):
        remote.artifacts.push(tmp_path, bad, succeeded=True)


def test_artifact_symlinks_outside_are_skipped(
    remote: Remote, tmp_path: Path, s3: Any, bucket: str
) -> None:
    local = artifacts(tmp_path / "a", {"state": "1"})
    (tmp_path / "outside.txt").write_text("not an artifact")
    (local / "link.txt").symlink_to(tmp_path / "outside.txt")
    location = remote.artifacts.push(local, "r1", succeeded=True)
    assert location.files == 1
    assert keys(s3, bucket, f"{remote.stack}/runs/r1/") == [MANIFEST_NAME, "state"]
