"""The ``ssm()`` template function against the moto server: decryption, one request per
name per run, masking hook before use, lazy client creation and the missing-parameter error."""

from __future__ import annotations

from collections import Counter
from typing import Any

import boto3
import pytest

from handoff_provider.core.aws.ssm_lookup import make_ssm_function
from handoff_provider.core.errors import SsmLookupError, TemplateError
from handoff_provider.core.load.templating import render_text


class CountingFactory:
    """A client_factory returning real boto3 clients that count GetParameter calls."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.calls: Counter[str] = Counter()
        self.params: list[dict[str, Any]] = []

    def __call__(self, service_name: str) -> Any:
        self.created.append(service_name)
        client = boto3.client(service_name)

        def _count(params: dict[str, Any], **_: Any) -> None:
            self.calls[params["Name"]] += 1
            self.params.append(dict(params))

        client.meta.events.register("before-parameter-build.ssm.GetParameter", _count)
        return client


def call(name: str) -> str:
    """The template text calling ssm() for ``name``."""
    return "{{ ssm('" + name + "') }}"


@pytest.fixture
def params(aws: str, stack: str) -> dict[str, str]:
    ssm = boto3.client("ssm")
    names = {
        "secret": (f"/{stack}/api/token", "s3cr3t-t0ken", "SecureString"),
        "plain": (f"/{stack}/api/host", "api.example.com", "String"),
    }
    for name, value, kind in names.values():
        ssm.put_parameter(Name=name, Value=value, Type=kind)
    return {key: name for key, (name, _value, _kind) in names.items()}


def test_reads_secure_string_decrypted(params: dict[str, str]) -> None:
    factory = CountingFactory()
    ssm = make_ssm_function(factory)
    assert ssm(params["secret"]) == "s3cr3t-t0ken"
    assert ssm(params["plain"]) == "api.example.com"
    assert all(call["WithDecryption"] is True for call in factory.params)


def test_one_request_per_name_per_function(params: dict[str, str]) -> None:
    factory = CountingFactory()
    ssm = make_ssm_function(factory)
    secret, plain = call(params["secret"]), call(params["plain"])
    template = f"--token {secret} --again {secret} --host {plain}"
    first = render_text(template, {}, source="args", functions={"ssm": ssm})
    second = render_text(template, {}, source="envs", functions={"ssm": ssm})
    assert first == second == "--token s3cr3t-t0ken --again s3cr3t-t0ken --host api.example.com"
    assert factory.calls == Counter({params["secret"]: 1, params["plain"]: 1})
    assert factory.created == ["ssm"]

    # A new function (a new run) looks the values up again.
    make_ssm_function(factory)(params["secret"])
    assert factory.calls[params["secret"]] == 2


def test_lazy_nothing_fetched_until_called(params: dict[str, str]) -> None:
    factory = CountingFactory()
    ssm = make_ssm_function(factory)
    # Rendering a template that does not call ssm() creates no client at all.
    assert (
        render_text("plain {{ x }}", {"x": 1}, source="args", functions={"ssm": ssm}) == "plain 1"
    )
    assert factory.created == [] and not factory.calls
    ssm(params["plain"])
    assert factory.created == ["ssm"]


def test_on_value_runs_before_the_value_is_returned(params: dict[str, str]) -> None:
    seen: list[str] = []
    ssm = make_ssm_function(CountingFactory(), on_value=seen.append)
    rendered = render_text(
        f"{call(params['secret'])}/{call(params['secret'])}",
        {},
        source="args",
        functions={"ssm": ssm},
    )
    assert rendered == "s3cr3t-t0ken/s3cr3t-t0ken"
    assert seen == ["s3cr3t-t0ken"]  # once per value: the masker already knows it

    # If registering with the masker fails, the value is never handed out (nor cached).
    def refuse(_value: str) -> None:
        raise RuntimeError("masker unavailable")

    strict = make_ssm_function(CountingFactory(), on_value=refuse)
    with pytest.raises(RuntimeError):
        strict(params["secret"])
    with pytest.raises(RuntimeError):
        strict(params["secret"])


def test_missing_parameter_is_an_error_naming_it(params: dict[str, str], stack: str) -> None:
    ssm = make_ssm_function(CountingFactory())
    missing = f"/{stack}/does/not/exist"
    with pytest.raises(SsmLookupError) as caught:
        ssm(missing)
    assert isinstance(caught.value, TemplateError)
    assert missing in str(caught.value) and "not found" in str(caught.value)
    assert caught.value.code == "ParameterNotFound"

    # Through the renderer: the same error, and no value of another lookup leaks into it.
    template = f"{call(params['secret'])} {call(missing)}"
    with pytest.raises(TemplateError) as rendered:
        render_text(template, {}, source="args", functions={"ssm": ssm})
    assert missing in str(rendered.value)
    assert "s3cr3t-t0ken" not in str(rendered.value)


@pytest.mark.parametrize("bad", ["", "   ", None, 42])
def test_bad_names_are_refused_without_a_request(bad: Any) -> None:
    factory = CountingFactory()
    with pytest.raises(SsmLookupError):
        make_ssm_function(factory)(bad)
    assert factory.created == []
