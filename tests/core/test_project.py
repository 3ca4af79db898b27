"""project.yml loading, validation, config embedding and the compiled document."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from handoff_provider.core.errors import ProjectError
from handoff_provider.core.load.project import (
    Command,
    ConfigFile,
    EnvVar,
    Project,
    Task,
    compile_document,
    load_project,
    project_from_document,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "projects"

# The compiled document of the seed's exchange-rate project, verbatim from
# seeds/handoff-remote-config-v2.md ("It should return a string like this").
SEED_DOCUMENT = (
    '{"commands": [{"command": "tap-exchangeratesapi", "args": "--config '
    'config/tap-config.json", "venv": "proc_01", "installs": ["pip install '
    'tap-exchangeratesapi"]}, {"command": "files/stats_collector.py", "venv": "proc_01"}, '
    '{"command": "target-csv", "venv": "proc_02", "installs": ["pip install target-csv"]}], '
    '"files": [{"name": "tap-config.json", "value": "{ \\"base\\": \\"JPY\\", '
    '\\"start_date\\": \\"2020-07-09\\" }\\n"}]}'
)

# The same project as project.yml, the venv written as the seeds' path form.
SEED_PROJECT_YML = """\
commands:
  - command: "tap-exchangeratesapi"
    args: "--config config/tap-config.json"
    venv: "./venv/proc_01"
    installs:
      - pip install tap-exchangeratesapi
  - command: "files/stats_collector.py"
    venv: "./venv/proc_01"
  - command: "target-csv"
    venv: "./venv/proc_02"
    installs:
      - pip install target-csv
"""
SEED_CONFIG = {"tap-config.json": '{ "base": "JPY", "start_date": "2020-07-09" }\n'}

TASK_FORM_YML = """\
description: two tasks
installs:
  - venv: tools
    command: pip install tool-a
  - venv: tools
    command: pip install tool-b
envs:
  - key: API_TOKEN
    value: tok-very-secret-1
    secret: true
  - key: REGION
    value: eu-west-1
  - key: RETRIES
    value: 3
vars:
  - key: start_date
    value: 2024-01-01
  - key: window
    value: "{{ start_date }}/P1D"
tasks:
  - name: extract
    description: the main pipeline
    timeout: 90
    pipeline:
      - command: tap
        args: --config config/tap.json --start {{ start_date }}
        venv: tools
        installs: [pip install tool-b, pip install tool-c]
      - command: wc
        args: -l
  - name: cleanup
    active: false
    state_from: none
    commands:
      - command: rm
        args: -f artifacts/tmp
      - command: ./bin/report
        venv: reporting
schedules:
  - target_id: 1
    cron: "0 6 * * ? *"
    description: daily
    envs:
      - key: MODE
        value: full
    vars:
      - key: start_date
        value: "2023-12-01"
deploy:
  cpu: 256
  memory: 512
  subnets: [a, b]
"""


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(ProjectError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


# --------------------------------------------------------------------------- seed form


def test_seed_form_compiles_to_the_seed_document_byte_for_byte(make_project):
    project_dir = make_project(SEED_PROJECT_YML, config=SEED_CONFIG)
    assert json.dumps(compile_document(project_dir), ensure_ascii=False) == SEED_DOCUMENT


def test_seed_form_is_one_pipeline_task_named_default(make_project):
    project = load_project(make_project(SEED_PROJECT_YML, config=SEED_CONFIG))
    assert [task.name for task in project.tasks] == ["default"]
    task = project.tasks[0]
    assert (task.kind, task.active, task.timeout, task.state_from) == (
        "pipeline",
        True,
        None,
        "stdout",
    )
    assert task.commands == (
        Command("tap-exchangeratesapi", "--config config/tap-config.json", "proc_01"),
        Command("files/stats_collector.py", "", "proc_01"),
        Command("target-csv", "", "proc_02"),
    )
    assert [c.location for c in task.commands] == ["commands[0]", "commands[1]", "commands[2]"]
    assert project.installs == {
        "proc_01": ("pip install tap-exchangeratesapi",),
        "proc_02": ("pip install target-csv",),
    }
    assert project.files == (ConfigFile("tap-config.json", SEED_CONFIG["tap-config.json"]),)


def test_seed_form_installs_of_one_venv_are_merged_in_order_without_duplicates(make_project):
    project = load_project(
        make_project(
            """\
commands:
  - command: a
    venv: v
    installs: [pip install one, pip install two]
  - command: b
    venv: w
  - command: c
    venv: v
    installs: [pip install two, pip install three]
"""
        )
    )
    assert project.installs == {
        "v": ("pip install one", "pip install two", "pip install three"),
        "w": (),
    }


# --------------------------------------------------------------------------- task form


def test_task_form_builds_every_part_of_the_model(make_project):
    project = load_project(make_project(TASK_FORM_YML, config={"tap.json": '{"k": "v"}'}))
    assert project.description == "two tasks"
    extract, cleanup = project.tasks
    assert extract == Task(
        name="extract",
        kind="pipeline",
        commands=(
            Command("tap", "--config config/tap.json --start {{ start_date }}", "tools"),
            Command("wc", "-l"),
        ),
        active=True,
        timeout=90.0,
        state_from="stdout",
        description="the main pipeline",
    )
    assert extract.commands[0].location == "tasks[0].pipeline[0]"
    assert (cleanup.kind, cleanup.active, cleanup.state_from, cleanup.timeout) == (
        "commands",
        False,
        "none",
        None,
    )
    assert cleanup.commands[1].location == "tasks[1].commands[1]"
    assert project.active_tasks() == (extract,)
    # top-level installs first, then the stages'; duplicates dropped; venv without installs kept
    assert project.installs == {
        "tools": ("pip install tool-a", "pip install tool-b", "pip install tool-c"),
        "reporting": (),
    }
    assert project.envs == (
        EnvVar("API_TOKEN", "tok-very-secret-1", True),
        EnvVar("REGION", "eu-west-1", False),
        EnvVar("RETRIES", "3", False),
    )
    # YAML dates stay text; vars keep their (unrendered) templates
    assert project.vars == {"start_date": "2024-01-01", "window": "{{ start_date }}/P1D"}
    (schedule,) = project.schedules
    assert (schedule.cron, schedule.target_id, schedule.description) == (
        "0 6 * * ? *",
        "1",
        "daily",
    )
    assert schedule.envs == (EnvVar("MODE", "full"),)
    assert schedule.vars == {"start_date": "2023-12-01"}
    assert project.deploy == {"cpu": 256, "memory": 512, "subnets": ["a", "b"]}


def test_task_form_document_keeps_the_task_form_keys_plus_files(make_project):
    document = compile_document(make_project(TASK_FORM_YML, config={"tap.json": "{}"}))
    assert list(document) == [
        "description",
        "installs",
        "envs",
        "vars",
        "tasks",
        "schedules",
        "deploy",
        "files",
    ]
    assert document["envs"][2] == {"key": "RETRIES", "value": "3"}
    assert document["tasks"][0]["timeout"] == 90
    assert document["files"] == [{"name": "tap.json", "value": "{}"}]


@pytest.mark.parametrize(
    "yml",
    [SEED_PROJECT_YML, TASK_FORM_YML],
    ids=["seed", "task"],
)
def test_document_round_trips_through_json_like_ssm(make_project, yml):
    project_dir = make_project(yml, config={"tap.json": '{"a": 1}', "sub/x.txt": "x\n"})
    local = load_project(project_dir)
    fetched = json.loads(json.dumps(compile_document(project_dir)))
    remote = project_from_document(fetched, source="remote config")
    assert remote == local
    assert remote.document == fetched
    assert remote.source == "remote config"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir()))
def test_example_projects_load_and_round_trip(example):
    project_dir = EXAMPLES / example
    project = load_project(project_dir)
    assert project.tasks
    document = json.loads(json.dumps(compile_document(project_dir)))
    assert project_from_document(document, source="remote config") == project


def test_compiling_twice_gives_the_same_bytes(make_project):
    project_dir = make_project(TASK_FORM_YML, config={"b.json": "{}", "a.json": "[]"})
    assert json.dumps(compile_document(project_dir)) == json.dumps(compile_document(project_dir))


# --------------------------------------------------------------------------- validation


def test_unknown_key_names_the_path_and_suggests_the_key(make_project):
    project_dir = make_project(
        """\
tasks:
  - name: a
    pipeline:
      - command: cat
  - name: b
    pipeline:
      - command: wc
        agrs: -l
"""
    )
    message = error_of(load_project, project_dir)
    assert message == (
        f"{project_dir / 'project.yml'}: tasks[1].pipeline[0]: unknown key 'agrs' "
        "(did you mean 'args'?)"
    )


def test_unknown_top_level_key_suggests_description(make_project):
    message = error_of(
        compile_document, make_project("descriptoin: x\ncommands:\n  - command: cat\n")
    )
    assert message.endswith("project.yml: unknown key 'descriptoin' (did you mean 'description'?)")


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(make_project):
    message = error_of(compile_document, make_project("commands:\n  - command: cat\n    zzz: 1\n"))
    assert "commands[0]: unknown key 'zzz' (allowed: command, args, venv, installs)" in message


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("timeout: soon", "tasks[0].timeout: must be a number (got a string)"),
        ("timeout: 0", "tasks[0].timeout: must be greater than 0"),
        ("timeout: -5", "tasks[0].timeout: must be greater than 0"),
        ("active: maybe", "tasks[0].active: must be true or false (got a string)"),
        ("state_from: stdot", "tasks[0].state_from: must be one of 'stdout', 'stderr', 'none'"),
        ("name: 'bad name'", "tasks[0].name: 'bad name' is not a valid task name"),
        ("description: [a]", "tasks[0].description: must be a string (got a list)"),
    ],
)
def test_task_field_errors_name_the_path(make_project, snippet, expected):
    name_line = snippet if snippet.startswith("name:") else f"name: t\n    {snippet}"
    yml = f"tasks:\n  - {name_line}\n    pipeline:\n      - command: cat\n"
    assert expected in error_of(load_project, make_project(yml))


def test_yaml_syntax_error_names_file_and_line(make_project):
    project_dir = make_project("commands:\n  - command: cat\n    args: [unclosed\n")
    message = error_of(load_project, project_dir)
    assert message.startswith(f"{project_dir / 'project.yml'}: line ")
    assert "YAML syntax error" in message


def test_yaml_syntax_error_line_is_the_offending_line(make_project):
    message = error_of(load_project, make_project("commands:\n  - command: cat\n  bad: : :\n"))
    assert re.search(r"project\.yml: line 3, column \d+: YAML syntax error", message)


def test_duplicate_yaml_key_is_an_error_with_lines(make_project):
    message = error_of(load_project, make_project("commands:\n  - command: cat\n    command: wc\n"))
    assert "line 3" in message and "duplicate key 'command' (first at line 2)" in message


def test_non_string_yaml_key_is_an_error(make_project):
    message = error_of(load_project, make_project("commands:\n  - command: cat\n    yes: 1\n"))
    assert "line 3" in message and "keys must be strings" in message


@pytest.mark.parametrize("text", ["", "# nothing\n", "- a\n- b\n", "just text\n"])
def test_top_level_must_be_a_mapping(make_project, text):
    message = error_of(load_project, make_project(text))
    assert "project.yml: the top level must be a mapping" in message


def test_missing_project_file_and_directory(tmp_path):
    assert (
        error_of(load_project, tmp_path / "nope")
        == f"{tmp_path / 'nope'}: project directory not found"
    )
    assert error_of(load_project, tmp_path) == f"{tmp_path / 'project.yml'}: not found"


def test_project_yml_must_be_utf8(tmp_path):
    (tmp_path / "project.yml").write_bytes(b"commands:\n  - command: \xff\n")
    assert error_of(load_project, tmp_path).endswith("project.yml: not UTF-8 text")


def test_duplicate_task_names(make_project):
    yml = "tasks:\n" + "".join(
        f"  - name: {name}\n    pipeline:\n      - command: cat\n" for name in ("a", "b", "a")
    )
    message = error_of(load_project, make_project(yml))
    assert "tasks[2].name: duplicate task name 'a' (also tasks[0])" in message


@pytest.mark.parametrize(
    ("yml", "expected"),
    [
        ("commands: []\n", "commands: must not be empty"),
        ("tasks: []\n", "tasks: must not be empty"),
        ("tasks:\n  - name: t\n    pipeline: []\n", "tasks[0].pipeline: must not be empty"),
        ("tasks:\n  - name: t\n    commands: []\n", "tasks[0].commands: must not be empty"),
    ],
)
def test_empty_lists_are_errors(make_project, yml, expected):
    assert expected in error_of(load_project, make_project(yml))


def test_stage_without_command(make_project):
    message = error_of(
        load_project, make_project("tasks:\n  - name: t\n    pipeline:\n      - args: -l\n")
    )
    assert "tasks[0].pipeline[0]: missing key 'command'" in message


def test_task_needs_exactly_one_of_pipeline_or_commands(make_project):
    both = "tasks:\n  - name: t\n    pipeline: [{command: a}]\n    commands: [{command: b}]\n"
    neither = "tasks:\n  - name: t\n    active: true\n"
    for yml in (both, neither):
        message = error_of(load_project, make_project(yml, name=str(len(yml))))
        assert "tasks[0]: needs exactly one of 'pipeline'" in message


def test_project_needs_exactly_one_form(make_project):
    assert "use either 'commands' (seed form" in error_of(
        load_project, make_project("description: nothing\n", name="neither")
    )
    both = "commands: [{command: a}]\ntasks: [{name: t, pipeline: [{command: b}]}]\n"
    assert "not both" in error_of(load_project, make_project(both, name="both"))


@pytest.mark.parametrize("key", ["1ABC", "A-B", "A B", ""])
def test_env_keys_must_be_env_names(make_project, key):
    yml = f"envs:\n  - key: '{key}'\n    value: x\ncommands: [{{command: a}}]\n"
    message = error_of(load_project, make_project(yml))
    assert "envs[0].key: " in message
    assert "valid environment variable name" in message


def test_venv_path_is_reduced_to_its_name_but_must_be_a_name(make_project):
    ok = load_project(make_project("commands:\n  - command: a\n    venv: venvs/x/\n", name="ok"))
    assert ok.tasks[0].commands[0].venv == "x"
    message = error_of(
        load_project, make_project("commands:\n  - command: a\n    venv: ../..\n", name="bad")
    )
    assert "commands[0].venv: '../..' is not a valid venv name" in message
    # Distinct paths are not merged into one venv by their last part.
    for path in ("one/tool", "./venv/a/b", "/abs/tool"):
        yml = f"commands:\n  - command: a\n    venv: {path}\n"
        message = error_of(load_project, make_project(yml, name=path.replace("/", "_")))
        assert f"commands[0].venv: {path!r} is not a valid venv name" in message


def test_installs_need_a_venv(make_project):
    message = error_of(
        load_project, make_project("commands:\n  - command: a\n    installs: [pip install x]\n")
    )
    assert "commands[0].installs: needs a 'venv'" in message


def test_var_may_not_shadow_a_run_context_variable(make_project):
    yml = "vars:\n  - key: start_at\n    value: x\ncommands: [{command: a}]\n"
    assert "vars[0].key: 'start_at' is a run context variable" in error_of(
        load_project, make_project(yml)
    )


def test_duplicate_env_and_var_keys(make_project):
    yml = "envs: [{key: A, value: x}, {key: A, value: y}]\ncommands: [{command: a}]\n"
    assert "envs[1].key: duplicate key 'A' (also envs[0])" in error_of(
        load_project, make_project(yml, name="e")
    )
    yml = "vars: [{key: v, value: x}, {key: v, value: y}]\ncommands: [{command: a}]\n"
    assert "vars[1].key: duplicate key 'v'" in error_of(load_project, make_project(yml, name="v"))


def test_schedule_needs_a_non_blank_cron(make_project):
    yml = "schedules: [{cron: '  '}]\ncommands: [{command: a}]\n"
    assert "schedules[0].cron: '  ' is not a cron expression" in error_of(
        load_project, make_project(yml, name="blank")
    )
    yml = "schedules: [{description: x}]\ncommands: [{command: a}]\n"
    assert "schedules[0]: missing key 'cron'" in error_of(load_project, make_project(yml))


def test_files_key_is_reserved_in_project_yml(make_project):
    yml = "files: [{name: a, value: b}]\ncommands: [{command: a}]\n"
    assert "'files' is reserved" in error_of(load_project, make_project(yml))


def test_numbers_become_strings_and_booleans_are_refused_where_text_is_meant(make_project):
    project = load_project(
        make_project("vars: [{key: n, value: 10}]\ncommands: [{command: a, args: 5}]\n", name="n")
    )
    assert project.vars == {"n": "10"}
    assert project.tasks[0].commands[0].args == "5"
    message = error_of(
        load_project,
        make_project("envs: [{key: FLAG, value: yes}]\ncommands: [{command: a}]\n", name="b"),
    )
    assert "envs[0].value: must be a string or a number (got true/false; quote it" in message


def test_errors_never_contain_env_values_or_config_contents(make_project):
    secret = "hunter2-SECRET-value"
    cases = [
        f"envs: [{{key: TOKEN, value: [{secret}]}}]\ncommands: [{{command: a}}]\n",
        f"envs: [{{key: TOKEN, value: {secret}, secrte: true}}]\ncommands: [{{command: a}}]\n",
        f"vars: [{{key: v, value: {{x: {secret}}}}}]\ncommands: [{{command: a}}]\n",
        f"commands: [{{command: a, args: [{secret}]}}]\n",
    ]
    for index, yml in enumerate(cases):
        message = error_of(load_project, make_project(yml, name=f"c{index}"))
        assert secret not in message
    project_dir = make_project(
        "commands: [{command: a}]\n",
        config={"creds.json": f'{{"password": "{secret}"}}'.encode() + b"\xff"},
        name="binary",
    )
    message = error_of(load_project, project_dir)
    assert message == (
        f"{project_dir / 'config' / 'creds.json'}: not UTF-8 text (config files are embedded "
        "as text; put binary files under files/)"
    )


def test_model_repr_hides_values():
    project = Project(
        tasks=(),
        envs=(EnvVar("TOKEN", "hunter2-env"),),
        files=(ConfigFile("c.json", "hunter2-file"),),
        document={"files": [{"name": "c.json", "value": "hunter2-file"}]},
    )
    assert "hunter2" not in repr(project)


# --------------------------------------------------------------------------- config files


def test_config_files_are_embedded_recursively_and_sorted(make_project):
    project_dir = make_project(
        "commands: [{command: a}]\n",
        config={"z.json": "{}", "a/b/c.txt": "c\n", "a/a.yml": "a: 1\n", "m.json": "[]"},
    )
    assert compile_document(project_dir)["files"] == [
        {"name": "a/a.yml", "value": "a: 1\n"},
        {"name": "a/b/c.txt", "value": "c\n"},
        {"name": "m.json", "value": "[]"},
        {"name": "z.json", "value": "{}"},
    ]


def test_no_config_dir_means_no_files_key(make_project):
    assert "files" not in compile_document(make_project("commands: [{command: a}]\n"))


def test_symlinks_inside_the_project_are_followed(make_project):
    project_dir = make_project("commands: [{command: a}]\n", files={"shared/k.json": "{}"})
    (project_dir / "config").mkdir()
    os.symlink("../files/shared/k.json", project_dir / "config" / "k.json")
    os.symlink("../files/shared", project_dir / "config" / "shared")
    assert compile_document(project_dir)["files"] == [
        {"name": "k.json", "value": "{}"},
        {"name": "shared/k.json", "value": "{}"},
    ]


def test_a_symlink_loop_inside_config_is_refused(make_project):
    project_dir = make_project("commands: [{command: a}]\n", config={"a.json": "{}"})
    os.symlink(".", project_dir / "config" / "loop")
    message = error_of(compile_document, project_dir)
    loop = project_dir / "config" / "loop"
    assert message == f"{loop}: symlink loop (it points at a directory that contains it)"


@pytest.mark.parametrize("kind", ["file", "dir", "config_dir"])
def test_symlinks_out_of_the_project_are_rejected(make_project, tmp_path, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text('{"password": "hunter2-outside"}')
    project_dir = make_project("commands: [{command: a}]\n")
    if kind == "config_dir":
        os.symlink(outside, project_dir / "config")
        link = project_dir / "config"
    else:
        (project_dir / "config").mkdir()
        link = project_dir / "config" / "link"
        os.symlink(outside / "secret.json" if kind == "file" else outside, link)
    message = error_of(compile_document, project_dir)
    assert message == f"{link}: symlink points outside the project directory"


def test_document_file_names_must_stay_inside_config():
    for name in ["../escape.json", "/etc/passwd", "a/../../b", "a//b", "./a", "a\\b"]:
        document = {"commands": [{"command": "a"}], "files": [{"name": name, "value": "x"}]}
        message = error_of(project_from_document, document, source="remote config")
        assert message.startswith("remote config: files[0].name: ")


def test_document_duplicate_file_names():
    files = [{"name": "a.json", "value": "1"}, {"name": "a.json", "value": "2"}]
    document = {"commands": [{"command": "a"}], "files": files}
    assert "files[1].name: duplicate file name 'a.json'" in error_of(
        project_from_document, document, source="remote config"
    )


def test_document_goes_through_the_same_validation():
    message = error_of(
        project_from_document,
        {"tasks": [{"name": "t", "pipeline": [{"command": "a", "agrs": ""}]}]},
        source="remote config",
    )
    assert message == (
        "remote config: tasks[0].pipeline[0]: unknown key 'agrs' (did you mean 'args'?)"
    )
    assert error_of(project_from_document, ["x"], source="remote config") == (
        "remote config: the document must be a mapping (got a list)"
    )


# --------------------------------------------------------------------------- methods


def test_secret_values_are_sensitive_keys_declared_secrets_pem_keys_and_secret_envs():
    project = project_from_document(
        {
            "envs": [
                {"key": "TOKEN", "value": "tok-12345", "secret": True},
                {"key": "REGION", "value": "eu-west-1"},
            ],
            "secrets": ["whole.json", "b.json:$.auth"],
            "commands": [{"command": "a"}],
            "schedules": [
                {"cron": "0 * * * *", "envs": [{"key": "K", "value": "sched-s", "secret": True}]}
            ],
            "files": [
                {
                    "name": "a.json",
                    "value": '{"stream": "readings", "db": {"Password": "p4ss-word"}, '
                    '"API-Key": 123456789, "pin": "1234", "token": "abc"}',
                },
                {"name": "b.json", "value": '{"user": "bob-the-user", "auth": {"u": "alice-x"}}'},
                {"name": "whole.json", "value": '{"path": "artifacts", "n": [1, "seventh"]}'},
                {"name": "app.env", "value": "NAME=readings\nexport DB_PASSWORD='hunter2-x'\n"},
                {"name": "key.pem", "value": "-----BEGIN RSA PRIVATE KEY-----\nMIIabc12\n"},
            ],
        },
        source="doc",
    )
    values = project.secret_values()
    assert values == [
        "p4ss-word",
        "123456789",
        "alice-x",
        '{"path": "artifacts", "n": [1, "seventh"]}',
        "artifacts",
        "seventh",
        "hunter2-x",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIabc12\n",
        "-----BEGIN RSA PRIVATE KEY-----",
        "MIIabc12",
        "tok-12345",
        "sched-s",
    ]
    # plain data, short values ("abc", "1234") and non-secret envs stay readable
    for plain in ("readings", "bob-the-user", "eu-west-1", "abc", "1234"):
        assert plain not in values


def test_secrets_entries_are_validated_naming_the_entry():
    base = {"commands": [{"command": "a"}], "files": [{"name": "a.json", "value": "{}"}]}
    with pytest.raises(ProjectError, match=r"doc: secrets\[0\]: no config file 'b.json' "):
        project_from_document({**base, "secrets": ["b.json"]}, source="doc")
    with pytest.raises(ProjectError, match=r"doc: secrets\[1\]: '\$\.\[\[' is not a valid"):
        project_from_document({**base, "secrets": ["a.json", "a.json:$.[["]}, source="doc")
    with pytest.raises(ProjectError, match=r"secrets\[0\]"):
        project_from_document({**base, "secrets": ["a.json:auth"]}, source="doc")
    assert project_from_document({**base, "secrets": ["a.json:$.x"]}, source="d").secrets


def test_shell_lines_of_a_seed_pipeline(make_project):
    project = load_project(
        make_project(
            "commands:\n  - command: cat\n    args: ./requirements.txt\n"
            "  - command: wc\n    args: -l\n"
        )
    )
    assert project.shell_lines() == ["cat ./requirements.txt | wc -l"]


def test_shell_lines_show_tasks_and_venvs(make_project):
    project = load_project(make_project(TASK_FORM_YML))
    assert project.shell_lines() == [
        "# task: extract (pipeline, timeout 90s)",
        "venvs/tools/bin/tap --config config/tap.json --start {{ start_date }} | wc -l",
        "# task: cleanup (commands, inactive)",
        "rm -f artifacts/tmp",
        "PATH=venvs/reporting/bin:$PATH ./bin/report",
    ]


def test_task_lookup(make_project):
    project = load_project(make_project(TASK_FORM_YML))
    assert project.task("cleanup").kind == "commands"
    assert error_of(project.task, "nope").endswith("no task 'nope' (tasks: 'extract', 'cleanup')")


def test_command_paths_in_the_document_are_not_checked_against_the_disk(make_project):
    # commands and args are resolved in the workspace at run time, not when compiling
    project = load_project(make_project("commands: [{command: files/missing.py}]\n"))
    assert project.tasks[0].commands[0].command == "files/missing.py"


def test_example_word_count_is_the_seed_pipeline():
    assert load_project(EXAMPLES / "01_word_count").shell_lines() == ["cat files/lines.txt | wc -l"]


def test_singer_example_uses_two_venvs_and_a_templated_arg():
    project = load_project(EXAMPLES / "02_singer_csv")
    assert set(project.installs) == {"tap", "target"}
    extract = project.task("extract_load")
    assert "{{ start_date }}" in extract.commands[0].args
    assert [f.name for f in project.files] == ["tap-config.json", "target-config.json"]
