"""Jinja rendering of args, vars and files/: strict, sandboxed, values never in errors."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timezone

import pytest

from handoff_provider.core.errors import StoreError, TemplateError
from handoff_provider.core.load.project import project_from_document
from handoff_provider.core.load.templating import (
    build_variables,
    parse_var_overrides,
    render_text,
    render_workspace_files,
    split_args,
)
from handoff_provider.core.model.context import RunContext

ARGS_SOURCE = "project.yml: tasks[0].pipeline[1].args"


def template_error(template: str, variables=None, **kwargs) -> str:
    with pytest.raises(TemplateError) as info:
        render_text(template, variables or {}, source=kwargs.pop("source", "src"), **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def project_with_vars(*pairs: tuple[str, str]):
    return project_from_document(
        {"vars": [{"key": k, "value": v} for k, v in pairs], "commands": [{"command": "a"}]},
        source="project.yml",
    )


# --------------------------------------------------------------------------- render_text


def test_renders_variables_and_keeps_the_trailing_newline():
    assert render_text("--from {{ a }} --n {{ n + 1 }}\n", {"a": "x", "n": 1}, source="s") == (
        "--from x --n 2\n"
    )


def test_text_without_markers_is_returned_as_is():
    text = "no templates here: {single} braces, 100% literal\n"
    assert render_text(text, {}, source="s") == text


def test_undefined_variable_names_the_variable_and_the_source():
    assert template_error("--start {{ start_date }}", source=ARGS_SOURCE) == (
        f"{ARGS_SOURCE}: undefined variable 'start_date'"
    )


def test_undefined_variable_in_a_multiline_template_names_the_line():
    message = template_error("line one\n{{ ok }}\nthree {{ missing }}\n", {"ok": 1})
    assert message == "src: line 3: undefined variable 'missing'"


def test_syntax_error_names_the_line():
    message = template_error("a\nb {% if x %}\nc\n")
    assert message.startswith("src: line ")
    assert "template syntax error" in message
    assert template_error("{{ a").startswith("src: template syntax error: ")


def test_none_is_an_error_not_the_text_none():
    message = template_error("--start {{ start_at }}", RunContext().as_variables())
    assert "renders None" in message and "{{ start_at or" in message
    defaulted = render_text(
        "{{ start_at or '2024-01-01' }}", RunContext().as_variables(), source="s"
    )
    assert defaulted == "2024-01-01"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ items.append(4) }}",
        "{{ cfg.update({'a': 1}) }}",
    ],
)
def test_sandbox_refuses_internals_and_mutation(template):
    variables = {"items": [1, 2, 3], "cfg": {}}
    assert "refused by the template sandbox" in template_error(template, variables)
    assert variables == {"items": [1, 2, 3], "cfg": {}}


def test_functions_are_globals_and_their_handoff_errors_propagate():
    calls = []

    def ssm(name: str) -> str:
        calls.append(name)
        if name == "/missing":
            raise StoreError("SSM parameter /missing not found")
        return "s3cr3t-value"

    assert render_text("{{ ssm('/db/pw') }}", {}, source="s", functions={"ssm": ssm}) == (
        "s3cr3t-value"
    )
    with pytest.raises(StoreError, match="/missing not found"):
        render_text("{{ ssm('/missing') }}", {}, source="s", functions={"ssm": ssm})
    assert calls == ["/db/pw", "/missing"]
    assert "undefined variable 'ssm'" in template_error("{{ ssm('/x') }}")


def test_errors_from_expressions_never_show_values():
    secret = "hunter2-secret-value"

    def boom() -> str:
        raise ValueError(f"bad value {secret}")

    message = template_error("{{ boom() }}", functions={"boom": boom})
    assert message == "src: rendering failed (ValueError)"
    # a lookup with a computed key: jinja's message would quote the key (here a secret)
    message = template_error("{{ cfg[pw] }}", {"cfg": {}, "pw": secret})
    assert message == "src: undefined attribute or item"


def test_undefined_member_written_in_the_template_is_named():
    assert template_error("{{ cfg.region }}", {"cfg": {}}) == "src: undefined attribute 'region'"


# --------------------------------------------------------------------------- split_args


def test_split_args_like_a_posix_shell_without_expansion():
    words = split_args("""--name 'a b' "c d" e\\ f $HOME * `id` ; x""", source="s")
    assert words == ["--name", "a b", "c d", "e f", "$HOME", "*", "`id`", ";", "x"]
    assert split_args("", source="s") == []


def test_split_args_unbalanced_quotes_is_a_clear_error():
    with pytest.raises(TemplateError) as info:
        split_args("--password 'hunter2", source=ARGS_SOURCE)
    assert str(info.value) == (f"{ARGS_SOURCE}: cannot split args into words: No closing quotation")


# --------------------------------------------------------------------------- overrides


def test_parse_var_overrides():
    assert parse_var_overrides(["a=1", "url=http://x/?q=1&r=2", "empty=", " b =2", "a=3"]) == {
        "a": "3",
        "url": "http://x/?q=1&r=2",
        "empty": "",
        "b": "2",
    }
    assert parse_var_overrides([]) == {}


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["a=1", "hunter2"], "variable override #2: expected KEY=VALUE (no '=')"),
        (["=hunter2"], "variable override #1: empty key before '='"),
        (["bad-key=hunter2"], "variable override #1: 'bad-key' is not a valid variable name"),
    ],
)
def test_parse_var_overrides_errors_do_not_echo_values(items, expected):
    with pytest.raises(TemplateError) as info:
        parse_var_overrides(items)
    assert str(info.value).startswith(expected)
    assert "hunter2" not in str(info.value)


# --------------------------------------------------------------------------- variables


def test_vars_are_rendered_in_order_with_the_run_context():
    project = project_with_vars(
        ("start_date", "{{ (start_at or '2024-01-01')[:10] }}"),
        ("window", "{{ start_date }}..{{ end_at or 'now' }}"),
    )
    context = RunContext(
        start_at=datetime(2024, 3, 1, tzinfo=timezone.utc),
        end_at=datetime(2024, 3, 2, tzinfo=timezone.utc),
        run_key="rk-1",
    )
    variables = build_variables(project, context, {})
    assert variables["start_date"] == "2024-03-01"
    assert variables["window"] == "2024-03-01..2024-03-02T00:00:00+00:00"
    assert variables["run_key"] == "rk-1"
    assert variables["ds"] == "2024-03-01"
    assert build_variables(project, RunContext(), {})["window"] == "2024-01-01..now"


def test_overrides_win_over_project_vars_and_are_taken_literally():
    project = project_with_vars(("start_date", "2024-01-01"), ("label", "from {{ start_date }}"))
    variables = build_variables(
        project, RunContext(), {"start_date": "{{ not rendered }}", "extra": "x"}
    )
    assert variables["start_date"] == "{{ not rendered }}"
    assert variables["label"] == "from {{ not rendered }}"
    assert variables["extra"] == "x"


def test_overrides_also_win_over_the_run_context():
    context = RunContext(start_at=datetime(2024, 3, 1, tzinfo=timezone.utc))
    variables = build_variables(project_with_vars(), context, {"ds": "1999-12-31"})
    assert variables["ds"] == "1999-12-31"


def test_a_var_using_a_later_var_is_an_error_naming_it():
    project = project_with_vars(("a", "{{ b }}"), ("b", "x"))
    with pytest.raises(TemplateError) as info:
        build_variables(project, RunContext(), {})
    assert str(info.value) == "project.yml: vars[0].value: undefined variable 'b'"


def test_var_templates_can_call_functions():
    project = project_with_vars(("token", "{{ ssm('/t') }}"))
    variables = build_variables(project, RunContext(), {}, functions={"ssm": lambda n: n * 2})
    assert variables["token"] == "/t/t"


# --------------------------------------------------------------------------- files/


def test_render_workspace_files_renders_text_files_with_markers(tmp_path):
    files = tmp_path / "files"
    (files / "sub").mkdir(parents=True)
    (files / "query.sql").write_text("select * from t where d >= '{{ start_date }}'\n")
    (files / "sub" / "run.sh").write_text("#!/bin/sh\n{# comment #}echo {{ n }}\n")
    (files / "sub" / "run.sh").chmod(0o750)
    (files / "plain.txt").write_text("nothing {to} render\n")
    binary = b"\x89PNG{{ start_date }}\xff\xfe"
    (files / "image.png").write_bytes(binary)
    plain_mtime = (files / "plain.txt").stat().st_mtime_ns

    rendered = render_workspace_files(files, {"start_date": "2024-01-01", "n": 3})

    assert rendered == [files / "query.sql", files / "sub" / "run.sh"]
    assert (files / "query.sql").read_text() == "select * from t where d >= '2024-01-01'\n"
    assert (files / "sub" / "run.sh").read_text() == "#!/bin/sh\necho 3\n"
    assert stat.S_IMODE((files / "sub" / "run.sh").stat().st_mode) == 0o750
    assert (files / "image.png").read_bytes() == binary
    assert (files / "plain.txt").stat().st_mtime_ns == plain_mtime
    assert sorted(p.name for p in files.rglob("*")) == [
        "image.png",
        "plain.txt",
        "query.sql",
        "run.sh",
        "sub",
    ], "no temp files left behind"


def test_render_workspace_files_finds_markers_across_read_chunks(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    big = files / "big.txt"
    big.write_text("x" * ((1 << 20) - 1) + "{{ v }}")
    assert render_workspace_files(files, {"v": "!"}) == [big]
    assert big.read_text().endswith("x!")


def test_render_workspace_files_does_not_follow_symlinks(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("{{ v }}")
    files = tmp_path / "files"
    files.mkdir()
    os.symlink(outside, files / "link.txt")
    assert render_workspace_files(files, {"v": "changed"}) == []
    assert outside.read_text() == "{{ v }}"


def test_render_workspace_files_error_names_the_file(tmp_path):
    files = tmp_path / "files"
    (files / "conf").mkdir(parents=True)
    (files / "conf" / "app.ini").write_text("[a]\nx = 1\ny = {{ nope }}\n")
    with pytest.raises(TemplateError) as info:
        render_workspace_files(files, {})
    assert str(info.value) == "files/conf/app.ini: line 3: undefined variable 'nope'"


def test_render_workspace_files_without_a_files_dir(tmp_path):
    assert render_workspace_files(tmp_path / "files", {}) == []
