"""The runs view's data and pages (``runs_view/history.py``, ``pages.py``) on real
archived runs in the moto server; the Airflow apps serving them are tested in
tests/airflow/test_runs_view_app.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from handoff_provider.core.errors import ConfigurationError
from handoff_provider.core.stores import Remote
from handoff_provider.runs_view.history import (
    artifact_key,
    read_artifact,
    recent_runs,
    run_record,
    state_diff,
)
from handoff_provider.runs_view.pages import Download, RunsPages, StackRef, Viewer
from tests.aws.runs_view_world import ORIGIN, SECRET, RunsWorld, archived_world


@pytest.fixture(scope="module")
def world(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunsWorld]:
    yield from archived_world(moto_server, tmp_path_factory.mktemp("runs-view"))


@pytest.fixture
def remote(aws: str, world: RunsWorld, recorder: Any) -> Remote:
    return Remote(world.stack, world.bucket, client_factory=recorder.factory())


def viewer(readable: set[str] | None = None) -> Viewer:
    return Viewer(
        can_read_dag=lambda dag_id: readable is None or dag_id in readable,
        task_instance_url=lambda o: f"/dags/{o['dag_id']}/runs/{o['run_id']}/tasks/{o['task_id']}",
        dag_run_url=lambda o: f"/dags/{o['dag_id']}/runs/{o['run_id']}",
        base="/handoff",
    )


def pages_for(world: RunsWorld, recorder: Any, aws: str = "") -> RunsPages:
    return RunsPages(
        [StackRef(world.stack, world.bucket)],
        lambda ref: Remote(ref.stack, ref.bucket, client_factory=recorder.factory()),
    )


def test_recent_runs_newest_first_with_what_each_run_did(world: RunsWorld, remote: Remote) -> None:
    found = recent_runs(remote)
    assert [r.run_key for r in found.runs] == [world.failed, world.ok_second, world.ok_first]
    assert found.total == 3
    failed, second, first = found.runs
    assert (first.status, second.status, failed.status) == ("success", "success", "failed")
    assert second.published and not first.published and not failed.published
    assert first.origin == ORIGIN and second.origin is None
    assert first.data_interval == {"start": "2024-01-01T00:00:00+00:00",
                                   "end": "2024-01-01T23:59:59+00:00"}  # fmt: skip
    assert first.seconds is not None and first.seconds >= 0
    assert first.started_at < first.ended_at  # type: ignore[operator]
    # bytes per stage, as the runner counted them: 201 lines of the file, 200 after grep
    extract = [s for s in first.stages if s.task == "extract"]
    assert [(s.command.split()[0], s.exit_code) for s in extract] == [
        ("cat", 0), ("grep", 0), ("sh", 0)
    ]  # fmt: skip
    assert extract[0].bytes_out == len("# header\n") + sum(
        len(f"{i},row {i}\n") for i in range(200)
    )
    assert extract[1].bytes_out == extract[0].bytes_out - len("# header\n")
    assert first.state_bytes == len('{"day": "2024-01-01T00:00:00+00:00"}\n')
    assert {"run.json", "state", "report.txt"} <= {f.name for f in first.files}
    assert first.bytes == sum(f.size for f in first.files) and first.complete
    assert failed.error and "report" in failed.error
    assert [r.run_key for r in recent_runs(remote, limit=1).runs] == [world.failed]


def test_state_diff_against_the_previous_run_with_a_state(world: RunsWorld, remote: Remote) -> None:
    second = run_record(remote, world.ok_second)
    diff = state_diff(remote, second)
    assert diff.previous_run == world.ok_first
    assert '-{"day": "2024-01-01T00:00:00+00:00"}' in diff.lines
    assert '+{"day": "2024-01-02T00:00:00+00:00"}' in diff.lines
    first = state_diff(remote, run_record(remote, world.ok_first))
    assert first.previous_run is None and first.note == "no earlier run archived a state"


def test_artifact_names_cannot_leave_the_run(world: RunsWorld, remote: Remote) -> None:
    assert read_artifact(remote, world.ok_first, "report.txt") == b"report\n"
    for bad in ("../x", "a/../../b", "", "_HANDOFF_COMPLETE", "/etc/passwd"):
        with pytest.raises(ConfigurationError):
            artifact_key(remote, world.ok_first, bad)
    with pytest.raises(ConfigurationError):
        artifact_key(remote, "../other", "state")


def test_index_page_shows_the_rows_and_never_a_secret(world: RunsWorld, recorder: Any) -> None:
    page = pages_for(world, recorder).index(viewer())
    assert page.status == 200
    html = page.body
    for key in (world.ok_first, world.ok_second, world.failed):
        assert f'data-run-key="{key}"' in html
    assert "/dags/sales_etl/runs/scheduled__2024-01-01T00:00:00+00:00/tasks/extract" in html
    assert "2024-01-02T00:00:00+00:00 → 2024-01-02T23:59:59+00:00" in html
    assert SECRET not in html
    assert not [c for c in recorder.calls if c.operation not in {"ListObjectsV2", "GetObject"}]


def test_json_api_and_secret_never_in_any_page_or_file(world: RunsWorld, recorder: Any) -> None:
    pages = pages_for(world, recorder)
    data = json.loads(pages.runs_json(viewer()).body)
    (stack,) = data["stacks"]
    assert [r["run_key"] for r in stack["runs"]] == [world.failed, world.ok_second, world.ok_first]
    bodies = [pages.runs_json(viewer()).body]
    for key in (world.ok_first, world.ok_second, world.failed):
        bodies.append(pages.run(viewer(), world.stack, key).body)
        for name in [f.name for f in run_record_of(pages, world, key).files]:
            download = pages.artifact(viewer(), world.stack, key, name)
            assert isinstance(download, Download)
            bodies.append(b"".join(download.chunks).decode("utf-8", "replace"))
    assert all(SECRET not in body for body in bodies)
    assert any('"run_key"' in body for body in bodies[1:])  # run.json itself was downloaded


def run_record_of(pages: RunsPages, world: RunsWorld, key: str) -> Any:
    return run_record(pages._remote_for(StackRef(world.stack, world.bucket)), key)


def test_run_page_lists_files_and_the_state_diff(world: RunsWorld, recorder: Any) -> None:
    page = pages_for(world, recorder).run(viewer(), world.stack, world.ok_second)
    assert page.status == 200
    assert f"/handoff/runs/{world.stack}/{world.ok_second}/files/report.txt" in page.body
    assert "+{&#34;day&#34;: &#34;2024-01-02T00:00:00+00:00&#34;}" in page.body
    assert f"against run {world.ok_first}" in page.body


def test_runs_of_unreadable_dags_are_hidden(world: RunsWorld, recorder: Any) -> None:
    pages = pages_for(world, recorder)
    html = pages.index(viewer(readable={"other_dag"})).body
    assert world.ok_first not in html and world.ok_second in html  # no origin: shown
    assert pages.run(viewer(readable=set()), world.stack, world.ok_first).status == 404
    assert (
        pages.artifact(viewer(readable=set()), world.stack, world.ok_first, "state").status == 404
    )  # type: ignore[union-attr]


def test_only_configured_stacks_and_archived_files(world: RunsWorld, recorder: Any) -> None:
    pages = pages_for(world, recorder)
    assert pages.index(viewer(), stack="someone-elses").status == 404
    assert pages.run(viewer(), "someone-elses", world.ok_first).status == 404
    missing = pages.artifact(viewer(), world.stack, world.ok_first, "nope.txt")
    assert not isinstance(missing, Download) and missing.status == 404
    bad = pages.run(viewer(), world.stack, "bad key!")
    assert bad.status == 400 and "run key" in bad.body
    absent = pages.run(viewer(), world.stack, "never-ran")
    assert absent.status == 404 and "no run archived" in absent.body


def test_dag_tab_shows_that_dags_runs(world: RunsWorld, recorder: Any) -> None:
    html = pages_for(world, recorder).index(viewer(), dag_id=ORIGIN["dag_id"]).body
    assert f'data-run-key="{world.ok_first}"' in html
    assert f'data-run-key="{world.ok_second}"' not in html


def test_task_instance_tab_shows_that_tries_runs(world: RunsWorld, recorder: Any) -> None:
    identity = {k: ORIGIN[k] for k in ("dag_id", "run_id", "task_id")} | {"map_index": "-1"}
    html = pages_for(world, recorder).task_instance(viewer(), identity).body
    assert world.ok_first in html and world.ok_second not in html


def test_a_missing_bucket_is_one_line_on_the_page(aws: str, stack: str, recorder: Any) -> None:
    pages = RunsPages(
        [StackRef(stack, "no-such-bucket-handoff")],
        lambda ref: Remote(ref.stack, ref.bucket, client_factory=recorder.factory()),
    )
    page = pages.index(viewer())
    assert page.status == 200 and 'class="error"' in page.body
    assert "no-such-bucket-handoff" in page.body and "Traceback" not in page.body
