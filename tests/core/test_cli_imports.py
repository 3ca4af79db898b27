"""Which modules each ``handoff`` verb imports: start-up must not pay for what it doesn't use.

The installed console script runs in a subprocess with ``PYTHONPROFILEIMPORTTIME=1``
(the same as ``python -X importtime``), and the modules it imported are read from its
stderr. The assertions are about modules, not time: boto3 costs half a second to import,
jsonschema a third (its format checkers import arrow, isoduration, ...), Jinja a tenth,
and a purely local run needs none of them. Timings live in bench/cli_startup.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("handoff")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "projects"

AWS = {"boto3", "botocore", "s3transfer"}
SCHEMA_ZOO = {"jsonschema", "jsonschema_specifications", "referencing", "arrow", "isoduration"}
TEMPLATES = {"jinja2"}
#: The S3 side of ``transfers:`` (a project without transfers needs none of it).
TRANSFERS = {
    "handoff_provider.core.aws.s3_transfers",
    "handoff_provider.core.aws.s3_watch",
    "handoff_provider.core.run.transfers",
}
PROJECT_LOADING = {"yaml", "fastjsonschema", "handoff_provider.core.load.project"}
#: The one-AWS-call task kinds (core/steps/): imported only for a project using one.
AWS_KINDS = {
    "handoff_provider.core.steps.aws_lambda",
    "handoff_provider.core.steps.s3_touch",
    "handoff_provider.core.steps.aws_call",
    "handoff_provider.core.aws.lambda_invoke",
}

pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason=f"no console script {SCRIPT}")


def imported(*args: str, cwd: Path, expect_exit: int = 0) -> set[str]:
    """Every module (and each of its parent packages) the console script imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANDOFF_")}
    env["PYTHONPROFILEIMPORTTIME"] = "1"
    env["HANDOFF_VENV_CACHE"] = str(cwd / "venvs")
    done = subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == expect_exit, done.stderr[-2000:]
    names = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", done.stderr, re.M))
    assert "handoff_provider.core.cli.main" in names, "the import log was not read"
    return names | {name.split(".")[0] for name in names}


@pytest.fixture
def local_project(make_project):
    return make_project(
        "tasks:\n  - name: t\n    pipeline:\n"
        '      - command: "true"\n      - command: cat\n        args: files/in.txt\n',
        files={"in.txt": "x\n"},
    )


def test_help_imports_no_project_loading_and_no_aws(tmp_path: Path) -> None:
    names = imported("--help", cwd=tmp_path)
    assert names & (AWS | SCHEMA_ZOO | TEMPLATES | PROJECT_LOADING | {"filelock"}) == set()
    assert "dataclasses" not in names  # (and inspect, ast, ...: a fifth of its start-up)


def test_a_local_run_imports_no_aws_no_schema_zoo_no_jinja(local_project, tmp_path: Path) -> None:
    names = imported("run", "-w", str(tmp_path / "ws"), "-p", str(local_project), cwd=tmp_path)
    assert names & (AWS | SCHEMA_ZOO | TEMPLATES | TRANSFERS | AWS_KINDS | {"filelock"}) == set()
    assert names >= PROJECT_LOADING  # it did load and validate the project
    assert "logging" not in names
    from handoff_provider.core.run.process_tree import pdeathsig_prefix

    if pdeathsig_prefix() is not None:  # setpriv sets PDEATHSIG: no ctypes, no preexec_fn
        assert "ctypes" not in names


def test_yaml_is_imported_only_when_project_yml_changed(local_project, tmp_path: Path) -> None:
    """The parse of an unchanged ``project.yml`` is reused (core/load/yaml_cache.py): the
    second run validates the project without PyYAML; an edit brings it back."""
    args = ("run", "-w", str(tmp_path / "ws"), "-p", str(local_project))
    assert "yaml" in imported(*args, cwd=tmp_path)
    again = imported(*args, cwd=tmp_path)
    assert "yaml" not in again
    assert again >= PROJECT_LOADING - {"yaml"}  # still validated
    project_yml = local_project / "project.yml"
    project_yml.write_text(project_yml.read_text() + "# edited\n")
    assert "yaml" in imported(*args, cwd=tmp_path)


def test_a_templated_run_imports_jinja_only_then(make_project, tmp_path: Path) -> None:
    project = make_project("commands:\n  - command: echo\n    args: '{{ run_key }}'\n")
    names = imported("run", "-w", str(tmp_path / "ws"), "-p", str(project), cwd=tmp_path)
    assert names >= TEMPLATES
    assert names & (AWS | SCHEMA_ZOO) == set()


def test_config_print_and_show_commands_import_no_aws_no_schema_zoo(tmp_path: Path) -> None:
    singer = str(EXAMPLES / "02_singer_csv")
    for verb in (("config", "print"), ("show", "commands")):
        names = imported(*verb, "-p", singer, cwd=tmp_path)
        assert names & (AWS | SCHEMA_ZOO | TEMPLATES | TRANSFERS | {"filelock"}) == set(), verb


def test_a_task_kind_is_imported_when_a_project_uses_it(make_project, tmp_path: Path) -> None:
    """The positive control of the lazy kind registry (core/steps/__init__.py)."""
    project = make_project(
        "tasks:\n  - name: flag\n    s3_touch: {bucket: b, key: done}\n"
        "  - name: t\n    pipeline:\n      - command: cat\n"
    )
    names = imported("show", "commands", "-p", str(project), cwd=tmp_path)
    assert {"handoff_provider.core.steps.s3_touch", "handoff_provider.core.steps.pipeline"} <= names
    assert "handoff_provider.core.steps.aws_lambda" not in names


def test_jsonschema_explains_an_invalid_project(make_project, tmp_path: Path) -> None:
    """The error path: the document is rejected, jsonschema words every error."""
    project = make_project("tasks:\n  - name: t\n    pipelin: []\n")
    names = imported("config", "print", "-p", str(project), cwd=tmp_path, expect_exit=2)
    assert "jsonschema" in names
    assert names & AWS == set()


def test_files_push_imports_botocore(make_project, tmp_path: Path) -> None:
    """The positive control: a verb that talks to AWS does import botocore (here it then
    stops for want of a bucket, before any request). boto3 and s3transfer come only with
    a transfer (tests/aws/test_sync_cache.py)."""
    project = make_project("commands:\n  - command: cat\n")
    args = ("files", "push", "-p", str(project), "--stack", "s")
    assert "botocore" in imported(*args, cwd=tmp_path, expect_exit=2)


def test_help_lists_every_verb_while_a_verb_builds_only_its_own_parser(tmp_path: Path) -> None:
    """``handoff VERB`` builds only VERB's sub-parser (start-up); ``--help`` and an unknown
    verb still see them all."""
    from handoff_provider.core.cli.main import _VERB_PARSERS

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True, check=False
        )

    listed = run("--help")
    assert listed.returncode == 0
    verbs = re.findall(r"^    (\w+)", listed.stdout, re.M)
    assert verbs == list(_VERB_PARSERS) and len(verbs) == 9
    run_help = run("run", "--help")
    assert run_help.returncode == 0 and "--push-artifacts" in run_help.stdout
    unknown = run("bogus")
    assert unknown.returncode == 2
    assert "invalid choice: 'bogus'" in unknown.stderr and "'deploy'" in unknown.stderr
    state = run("state", "nope")
    assert state.returncode == 2 and "handoff state: error" in state.stderr
