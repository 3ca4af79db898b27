"""Provider registration: metadata valid for Airflow, ``airflow providers list``, config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from handoff_provider.get_provider_info import get_provider_info


def test_provider_info_is_valid_for_this_airflow() -> None:
    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "handoff-provider"
    assert info["versions"][0] == metadata.version("handoff-provider")
    modules = [m for entry in info["operators"] for m in entry["python-modules"]]
    assert {"handoff_provider.operators.config", "handoff_provider.operators.run"} <= set(modules)
    for entry in ("hooks", "operators", "sensors", "triggers"):
        for item in info.get(entry, []):
            for module in item["python-modules"]:
                __import__(module)  # every listed module exists and imports
    assert len(info["extra-links"]) == 2  # artifacts (S3), ECS task (console)
    for link in info["extra-links"]:
        module, _, name = link.rpartition(".")
        assert getattr(__import__(module, fromlist=[name]), name).name


def test_entry_point_is_registered() -> None:
    (entry,) = [
        ep
        for ep in metadata.entry_points(group="apache_airflow_provider")
        if ep.value.startswith("handoff_provider")
    ]
    assert entry.load() is get_provider_info


def test_provider_config_defaults_are_known_to_airflow() -> None:
    from airflow.configuration import conf
    from airflow.providers_manager import ProvidersManager

    # What Airflow's processes do at start-up: discover the providers' config sections.
    assert "handoff-provider" in dict(ProvidersManager().provider_configs)
    conf.load_providers_configuration()
    assert conf.get("handoff", "keep_workspace") == "False"
    assert conf.get("handoff", "workspace_root") is not None  # set by the test env


@pytest.mark.usefixtures("airflow_db")
def test_airflow_providers_list_shows_the_provider() -> None:
    airflow_bin = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow_bin), "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # the JSON list is the line starting with "[{" (3.0 also logs "[<date>] ..." lines to stdout)
    listing = next(line for line in result.stdout.splitlines() if line.startswith("[{"))
    providers = {p["package_name"]: p for p in json.loads(listing)}
    assert providers["handoff-provider"]["version"] == metadata.version("handoff-provider")
