"""project.yml: the ``transfers:`` section and the ``lambda`` / ``s3_touch`` task kinds."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from handoff_provider.core.aws.s3_transfers import InputSpec, OutputSpec, PostCopy
from handoff_provider.core.errors import ProjectError
from handoff_provider.core.load.project import compile_document, load_project, project_from_document
from handoff_provider.core.steps.aws_lambda import LambdaStep
from handoff_provider.core.steps.s3_touch import TouchStep

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "projects" / "03_s3_drop"

OTF_YML = """\
transfers:
  inputs:
    - bucket: drop
      directory: "in/{{ ds }}"
      file_regex: 'sales_\\d{8}\\.csv'
      dest: inbox
      min_size: 1
      min_age: 60
      post_copy: {action: move, archive_directory: "archive/{{ ds }}", archive_bucket: arch}
  outputs:
    - source: "artifacts/*.csv"
      bucket: out
      directory: "dest/{{ ds }}"
      flag: "dest/{{ ds }}/some_fin.flg"
      disable_bucket_owner_acl: true
tasks:
  - name: work
    pipeline:
      - command: cat
        args: files/inbox/a.csv
  - name: notify
    timeout: 30
    lambda:
      function: arn:aws:lambda:eu-west-1:123456789012:function:f
      invocation_type: RequestResponse
      payload: {file-name: "sales_{{ ds }}.csv", "n": [1, 2.5, true, null]}
      qualifier: live
  - name: ready
    active: false
    s3_touch: {bucket: out, key: "dest/{{ ds }}/ready.flg"}
"""


def write(tmp_path: Path, yml: str) -> Path:
    project_dir = tmp_path / "project"
    project_dir.mkdir(exist_ok=True)
    (project_dir / "project.yml").write_text(textwrap.dedent(yml))
    return project_dir


def error_of(tmp_path: Path, yml: str) -> str:
    with pytest.raises(ProjectError) as caught:
        load_project(write(tmp_path, yml))
    return str(caught.value)


def test_transfers_and_steps_are_loaded(tmp_path: Path) -> None:
    project = load_project(write(tmp_path, OTF_YML))
    (source,) = project.transfers.inputs
    assert source == InputSpec(
        bucket="drop",
        directory="in/{{ ds }}",
        file_regex=r"sales_\d{8}\.csv",
        dest="inbox",
        min_size=1,
        min_age=60,
        post_copy=PostCopy("move", "archive/{{ ds }}", "arch"),
    )
    (target,) = project.transfers.outputs
    assert target == OutputSpec(
        source="artifacts/*.csv",
        bucket="out",
        directory="dest/{{ ds }}",
        flag="dest/{{ ds }}/some_fin.flg",
        disable_bucket_owner_acl=True,
    )
    work, notify, ready = project.tasks
    assert (work.kind, work.step) == ("pipeline", None)
    assert (notify.kind, notify.commands, notify.timeout, notify.state_from) == (
        "lambda",
        (),
        30.0,
        "none",
    )
    assert notify.step == LambdaStep(
        function="arn:aws:lambda:eu-west-1:123456789012:function:f",
        invocation_type="RequestResponse",
        payload={"file-name": "sales_{{ ds }}.csv", "n": [1, 2.5, True, None]},
        qualifier="live",
    )
    assert (ready.kind, ready.active) == ("s3_touch", False)
    assert ready.step == TouchStep(bucket="out", key="dest/{{ ds }}/ready.flg")
    assert project.uses_aws()


def test_a_project_without_them_uses_no_aws(tmp_path: Path) -> None:
    project = load_project(write(tmp_path, "commands:\n  - command: cat\n"))
    assert not project.transfers.inputs and not project.transfers.outputs
    assert not project.uses_aws()


def test_document_round_trip_keeps_transfers_and_steps(tmp_path: Path) -> None:
    project_dir = write(tmp_path, OTF_YML)
    document = compile_document(project_dir)
    assert list(document) == ["tasks", "transfers"]  # canonical order
    assert document["tasks"][1]["lambda"]["payload"] == {
        "file-name": "sales_{{ ds }}.csv",
        "n": [1, 2.5, True, None],
    }
    fetched = json.loads(json.dumps(document))
    remote = project_from_document(fetched, source="remote config")
    assert remote == load_project(project_dir)
    assert remote.document == fetched
    assert project_from_document(remote.document, source="again").document == fetched


def test_shell_lines_show_transfers_and_steps(tmp_path: Path) -> None:
    assert load_project(write(tmp_path, OTF_YML)).shell_lines() == [
        "# transfers.inputs[0]: s3://drop/in/{{ ds }}/ =~ sales_\\d{8}\\.csv -> files/inbox/ "
        "(after success: move to s3://arch/archive/{{ ds }})",
        "# task: work (pipeline)",
        "cat files/inbox/a.csv",
        "# task: notify (lambda, timeout 30s)",
        "aws lambda invoke --function-name arn:aws:lambda:eu-west-1:123456789012:function:f "
        "--invocation-type RequestResponse --qualifier live "
        "--cli-binary-format raw-in-base64-out "
        """--payload '{"file-name":"sales_{{ ds }}.csv","n":[1,2.5,true,null]}' """
        "artifacts/lambda-notify.json",
        "# task: ready (s3_touch, inactive)",
        "aws s3api put-object --bucket out --key 'dest/{{ ds }}/ready.flg' "
        "--acl bucket-owner-full-control",
        "# transfers.outputs[0]: artifacts/*.csv -> s3://out/dest/{{ ds }}/ "
        "(then flag s3://out/dest/{{ ds }}/some_fin.flg)",
    ]


def test_the_example_shows_its_flow() -> None:
    lines = load_project(EXAMPLE).shell_lines()
    assert lines[0].startswith("# transfers.inputs[0]: s3://{{ bucket }}/{{ stack }}/inbox/ ")
    assert lines[1].startswith("python3 files/csv_column.py --column amount files/inbox | awk")
    assert lines[2].endswith("(then flag s3://{{ bucket }}/{{ stack }}/outbox/_SUCCESS.flg)")


@pytest.mark.parametrize(
    ("yml", "expected"),
    [
        (
            "tasks:\n  - name: t\n    lambda: {functionArn: f}\n",
            "tasks[0].lambda: unknown key 'functionArn' (did you mean 'function'?); "
            "tasks[0].lambda: missing key 'function'",
        ),
        (
            "tasks:\n  - name: t\n    lambda: {function: f, invocationType: Event}\n",
            "tasks[0].lambda: unknown key 'invocationType' (did you mean 'invocation_type'?)",
        ),
        (
            "tasks:\n  - name: t\n    lambda: {function: f, invocation_type: Async}\n",
            "tasks[0].lambda.invocation_type: must be one of 'Event', 'RequestResponse'",
        ),
        (
            "tasks:\n  - name: t\n    s3_touch: {bucket: b}\n",
            "tasks[0].s3_touch: missing key 'key'",
        ),
        (
            "tasks:\n  - name: t\n    s3_touch: {bucket: b, key: dir/}\n",
            "tasks[0].s3_touch.key: must be an object key (not empty, not ending with '/')",
        ),
        (
            "tasks:\n  - name: t\n    s3_touch: {bucket: b, key: k}\n"
            "    pipeline: [{command: cat}]\n",
            "tasks[0]: needs exactly one of 'pipeline' (stages joined by pipes), 'commands', "
            "'lambda' or 's3_touch'",
        ),
        (
            "tasks:\n  - name: t\n    state_from: stderr\n    s3_touch: {bucket: b, key: k}\n",
            "tasks[0].state_from: only applies to pipeline/commands tasks",
        ),
        (
            "commands: [{command: cat}]\ntransfers:\n  inputs:\n    - {bucket: b, fileRegex: x}\n",
            "transfers.inputs[0]: unknown key 'fileRegex' (did you mean 'file_regex'?)",
        ),
        (
            "commands: [{command: cat}]\ntransfers:\n  output: []\n",
            "transfers: unknown key 'output' (did you mean 'outputs'?)",
        ),
        (
            "commands: [{command: cat}]\ntransfers:\n  inputs:\n"
            "    - {bucket: b, file_regex: x, postCopyAction: {action: delete}}\n",
            "transfers.inputs[0]: unknown key 'postCopyAction' (did you mean 'post_copy'?)",
        ),
        (
            "commands: [{command: cat}]\ntransfers:\n  inputs:\n"
            "    - {bucket: b, file_regex: x, min_size: -1}\n",
            "transfers.inputs[0].min_size: must be at least 0",
        ),
        (
            "commands: [{command: cat}]\ntransfers:\n  inputs:\n"
            "    - {bucket: b, file_regex: '(', post_copy: {action: delete}}\n",
            "transfers.inputs[0].file_regex: invalid regular expression",
        ),
        (
            "commands: [{command: cat}]\ntransfers:\n  inputs:\n"
            "    - {bucket: b, file_regex: x, post_copy: {action: move}}\n",
            "transfers.inputs[0].post_copy.archive_directory: required when action is 'move'",
        ),
        (
            "commands: [{command: cat}]\ntransfers:\n  inputs:\n"
            "    - {bucket: b, file_regex: x, min_size: 9, max_size: 2}\n",
            "transfers.inputs[0]: file watch: min_size is greater than max_size",
        ),
        (
            "commands: [{command: cat}]\ntransfers:\n  inputs:\n"
            "    - {bucket: b, file_regex: x, min_count: 0}\n",
            "transfers.inputs[0].min_count: must be at least 1",
        ),
        (
            "commands: [{command: cat}]\ntransfers:\n  inputs:\n"
            "    - {bucket: b, file_regex: x, post_copy: {action: rename, pattern: x}}\n",
            "transfers.inputs[0].post_copy.replacement: required when action is 'rename'",
        ),
        (
            "commands: [{command: cat}]\ntransfers:\n  outputs:\n"
            "    - {bucket: b, source: ../etc/passwd}\n",
            "transfers.outputs[0].source: must be a relative path inside the workspace",
        ),
    ],
    ids=[
        "lambda-otf-name",
        "lambda-camel",
        "lambda-type",
        "touch-missing",
        "touch-folder",
        "two-kinds",
        "state-from",
        "input-otf-name",
        "transfers-typo",
        "post-copy-otf-name",
        "negative-size",
        "bad-regex",
        "move-no-archive",
        "sizes",
        "count-zero",
        "rename-no-replacement",
        "output-escape",
    ],
)
def test_invalid_otf_sections_name_the_path(tmp_path: Path, yml: str, expected: str) -> None:
    message = error_of(tmp_path, yml)
    assert message.startswith(str(tmp_path / "project" / "project.yml") + ": ")
    assert expected in message


def test_counts_and_rename_load_and_show(tmp_path: Path) -> None:
    yml = (
        "commands: [{command: cat}]\ntransfers:\n  inputs:\n"
        "    - bucket: b\n      directory: in\n      file_regex: '.*[.]csv'\n"
        "      min_count: 2\n      max_count: 5\n"
        "      post_copy: {action: rename, pattern: '[.]csv$', replacement: '.done'}\n"
    )
    project = load_project(write(tmp_path, yml))
    (spec,) = project.transfers.inputs
    assert (spec.min_count, spec.max_count) == (2, 5)
    assert spec.post_copy == PostCopy("rename", None, None, "[.]csv$", ".done")
    assert project.shell_lines()[0] == (
        "# transfers.inputs[0]: s3://b/in/ =~ .*[.]csv -> files/ (needs 2 to 5 object(s)) "
        "(after success: rename [.]csv$ -> .done)"
    )
    assert project_from_document(json.loads(json.dumps(project.document)), source="x") == project


def test_invalid_lambda_payload_in_a_fetched_document() -> None:
    document = {"tasks": [{"name": "t", "lambda": {"function": "f", "payload": "{not json"}}]}
    with pytest.raises(ProjectError) as caught:
        project_from_document(document, source="remote config")
    assert str(caught.value) == (
        "remote config: tasks[0].lambda.payload: lambda payload is not valid JSON"
    )
