"""The ``secret()`` template function against the moto server: whole values and JSON paths,
versions and stages, one request per secret version per run, masking before use, lazy
client creation, and the errors naming the secret and the path; then through a whole
``handoff run`` (CLI redactor, run.json) and a run without AWS access."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest

from handoff_provider.core.aws.secret_lookup import make_secret_function
from handoff_provider.core.errors import HandoffError, SecretLookupError, TemplateError
from handoff_provider.core.load.templating import render_text
from handoff_provider.core.run.orchestrate import HandoffRun, RunRequest
from tests.aws.conftest import REGION
from tests.aws.test_otf_integration import handoff, write_project

DB = {"user": "etl", "password": "pa55-w0rd-db", "hosts": [{"name": "db1.internal"}], "port": 5432}


class CountingFactory:
    """A client_factory returning real boto3 clients that count GetSecretValue calls."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.calls: Counter[str] = Counter()
        self.params: list[dict[str, Any]] = []

    def __call__(self, service_name: str) -> Any:
        self.created.append(service_name)
        client = boto3.client(service_name, region_name=REGION)

        def _count(params: dict[str, Any], **_: Any) -> None:
            self.calls[params["SecretId"]] += 1
            self.params.append(dict(params))

        client.meta.events.register("before-parameter-build.secrets-manager.GetSecretValue", _count)
        return client


@pytest.fixture
def secrets(aws: str, stack: str) -> dict[str, str]:
    """Secrets under ``<stack>/``: a JSON one with two versions, a plain one, a binary one."""
    client = boto3.client("secretsmanager", region_name=REGION)
    names = {key: f"{stack}/{key}" for key in ("db", "token", "blob")}
    client.create_secret(Name=names["db"], SecretString=json.dumps({**DB, "password": "old-pw"}))
    client.put_secret_value(SecretId=names["db"], SecretString=json.dumps(DB))
    client.create_secret(Name=names["token"], SecretString="t0ken-plain-value")
    client.create_secret(Name=names["blob"], SecretBinary=b"\x00\x01")
    return names


def test_whole_value_and_json_paths(secrets: dict[str, str]) -> None:
    secret = make_secret_function(CountingFactory())
    assert secret(secrets["token"]) == "t0ken-plain-value"
    assert json.loads(secret(secrets["db"])) == DB
    assert secret(secrets["db"], "password") == "pa55-w0rd-db"
    assert secret(secrets["db"], "hosts[0].name") == "db1.internal"
    assert secret(secrets["db"], "port") == "5432"  # non-strings as JSON
    assert secret(secrets["db"], "hosts") == '[{"name":"db1.internal"}]'


def test_version_stage_and_version_id(secrets: dict[str, str]) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    versions = client.list_secret_version_ids(SecretId=secrets["db"])["Versions"]
    previous = next(v["VersionId"] for v in versions if "AWSPREVIOUS" in v["VersionStages"])
    factory = CountingFactory()
    secret = make_secret_function(factory)
    assert secret(secrets["db"], "password", version_stage="AWSPREVIOUS") == "old-pw"
    assert secret(secrets["db"], "password", version_id=previous) == "old-pw"
    assert secret(secrets["db"], "password") == "pa55-w0rd-db"
    assert [(p.get("VersionId"), p.get("VersionStage")) for p in factory.params] == [
        (None, "AWSPREVIOUS"),
        (previous, None),
        (None, None),
    ]
    with pytest.raises(SecretLookupError, match=r"version stage 'NOPE'\) not found"):
        secret(secrets["db"], version_stage="NOPE")


def test_one_request_per_secret_per_function_and_lazy(secrets: dict[str, str]) -> None:
    factory = CountingFactory()
    secret = make_secret_function(factory)
    assert render_text("{{ x }}", {"x": 1}, source="args", functions={"secret": secret}) == "1"
    assert factory.created == []  # nothing fetched, not even a client, until called
    template = (
        "{{ secret('" + secrets["db"] + "', 'user') }}:"
        "{{ secret('" + secrets["db"] + "', 'password') }}@"
        "{{ secret('" + secrets["db"] + "', 'hosts[0].name') }}"
    )
    first = render_text(template, {}, source="args", functions={"secret": secret})
    second = render_text(template, {}, source="envs", functions={"secret": secret})
    assert first == second == "etl:pa55-w0rd-db@db1.internal"
    assert factory.calls == Counter({secrets["db"]: 1})
    assert factory.created == ["secretsmanager"]
    make_secret_function(factory)(secrets["db"])  # a new run reads it again
    assert factory.calls[secrets["db"]] == 2


def test_on_value_runs_before_the_value_is_returned(secrets: dict[str, str]) -> None:
    seen: list[str] = []
    secret = make_secret_function(CountingFactory(), on_value=seen.append)
    assert secret(secrets["db"], "password") == "pa55-w0rd-db"
    assert secret(secrets["db"], "password") == "pa55-w0rd-db"
    assert secret(secrets["token"]) == "t0ken-plain-value"
    assert seen == ["pa55-w0rd-db", "t0ken-plain-value"]  # once per value

    def refuse(_value: str) -> None:
        raise RuntimeError("masker unavailable")

    strict = make_secret_function(CountingFactory(), on_value=refuse)
    for _ in range(2):  # never handed out, nor remembered as registered
        with pytest.raises(RuntimeError):
            strict(secrets["token"])


def test_errors_name_the_secret_and_the_path(secrets: dict[str, str], stack: str) -> None:
    secret = make_secret_function(CountingFactory())
    missing = f"{stack}/does-not-exist"
    with pytest.raises(SecretLookupError, match=rf"secret '{missing}' not found") as caught:
        secret(missing)
    assert isinstance(caught.value, TemplateError)
    assert caught.value.code == "ResourceNotFoundException"

    cases = {
        (
            "db",
            "hosts[3].name",
        ): rf"secret '{secrets['db']}' has no value at path 'hosts\[3\].name'",
        ("db", "nope"): rf"secret '{secrets['db']}' has no value at path 'nope'",
        ("token", "a.b"): rf"secret '{secrets['token']}' is not a JSON document, so path 'a.b'",
        ("db", "a..b"): r"'a..b' is not a valid JSON path",
        ("blob", None): rf"secret '{secrets['blob']}' is a binary secret",
    }
    for (key, path), message in cases.items():
        with pytest.raises(SecretLookupError, match=message) as caught:
            secret(secrets[key], path)
        assert caught.value.secret == secrets[key] and caught.value.path == path
        # no value of the secret in any message
        assert "pa55" not in str(caught.value) and "t0ken" not in str(caught.value)
    with pytest.raises(SecretLookupError, match="must be a non-empty string"):
        secret("  ")


SECRET_PROJECT = """\
envs:
  - key: DB_PASSWORD
    value: "{{ secret('STACK/db', 'password') }}"
tasks:
  - name: use
    commands:
      - command: python3
        args: files/show.py {{ secret('STACK/db', 'user') }}
"""
SHOW_PY = """\
import os, sys
print(f"connecting as {sys.argv[1]} with {os.environ['DB_PASSWORD']}", file=sys.stderr)
print("ok")
"""


def test_cli_run_reads_and_redacts_secrets(
    handoff_env: dict[str, str],
    secrets: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = handoff_env["HANDOFF_STACK"]
    project = write_project(
        tmp_path / "p", SECRET_PROJECT.replace("STACK", stack), {"show.py": SHOW_PY}
    )
    ws = tmp_path / "ws"
    assert handoff("run", "-w", ws, "-p", project, "-a") == 0
    err = capsys.readouterr().err
    # the password (5+ characters) is redacted; "etl" is too short to be worth masking
    assert "[use:1 python3] connecting as etl with ***" in err
    assert "pa55-w0rd-db" not in err
    assert "pa55-w0rd-db" not in (ws / "artifacts" / "run.json").read_text()
    assert (ws / "artifacts" / "state").read_text() == "ok\n"


def test_run_fails_before_any_command_on_a_missing_path_or_no_aws(
    aws: str, secrets: dict[str, str], stack: str, tmp_path: Path
) -> None:
    project = write_project(
        tmp_path / "p",
        SECRET_PROJECT.replace("STACK", stack).replace("'password'", "'pwd'"),
        {"show.py": SHOW_PY},
    )
    with pytest.raises(HandoffError, match=rf"secret '{stack}/db' has no value at path 'pwd'"):
        HandoffRun(
            RunRequest(
                workspace=tmp_path / "a",
                project_dir=project,
                client_factory=lambda service, config=None: boto3.client(service),
            )
        ).execute()
    assert not (tmp_path / "a" / "artifacts" / "use.1.stderr.log").exists()
    with pytest.raises(HandoffError, match=rf"secret\('{stack}/db', 'pwd'\): this run has no AWS"):
        HandoffRun(RunRequest(workspace=tmp_path / "b", project_dir=project)).execute()
