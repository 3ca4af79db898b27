"""The part of docker-compose.yaml that can run here: its ``moto`` and ``aws-init`` services.

Their image (``motoserver/moto``) is on Docker Hub, which this machine cannot reach, so a
stand-in is built locally under the same tag: the image's Python with ``moto[server]`` at
the compose file's version, started as the real image starts (``moto_server -H 0.0.0.0``,
port 5000). The services then run as the compose file defines them - image, entrypoint,
command, environment (the ``x-aws-env`` anchor), healthcheck - with no compose binary:
``docker run`` on the host network, ``moto`` resolving to 127.0.0.1. The ``airflow``
service (``apache/airflow``) is validated only (tests/test_container_files.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest
import yaml

from tests.container.conftest import Image

pytestmark = [pytest.mark.container, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[2]


def stand_in_moto(image: Image, tag: str) -> None:
    version = tag.rsplit(":", 1)[1]
    dockerfile = (
        "FROM python:3.12-slim\n"
        f'RUN python -m pip install --no-cache-dir "moto[server]=={version}"\n'
        "EXPOSE 5000\n"
        'ENTRYPOINT ["moto_server", "-H", "0.0.0.0"]\n'
    )
    context = REPO / "build" / "moto-stand-in"
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    image.engine.docker(
        "build", "--network", "host", "-q", "-t", tag, str(context), lock=True, timeout=3000
    )


def run_args(name: str, service: dict) -> list[str]:
    args = ["run", "--name", name, "--network", "host", "--add-host", "moto:127.0.0.1"]
    for key, value in (service.get("environment") or {}).items():
        args += ["-e", f"{key}={value}"]
    entrypoint = service.get("entrypoint")
    command = service.get("command") or []
    if entrypoint:
        args += ["--entrypoint", entrypoint[0]]
        command = [*entrypoint[1:], *command]
    return [*args, service["image"], *command]


def test_moto_and_aws_init_services_start_and_create_the_bucket(image: Image) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    moto, init = compose["services"]["moto"], compose["services"]["aws-init"]
    assert moto["image"] == init["image"]
    assert moto["ports"] == ["5000:5000"]
    stand_in_moto(image, moto["image"])
    docker = image.engine.docker
    names = ["handoff-compose-moto", "handoff-compose-aws-init"]
    docker("rm", "-f", *names, check=False)
    try:
        docker(*run_args(names[0], moto)[:1], "--detach", *run_args(names[0], moto)[1:])
        health = moto["healthcheck"]["test"]
        assert health[0] == "CMD"
        deadline = time.monotonic() + 120
        while docker("exec", names[0], *health[1:], check=False).returncode != 0:
            assert time.monotonic() < deadline, docker("logs", names[0]).stderr
            time.sleep(1)
        done = docker(*run_args(names[1], init), check=False, timeout=300)
        assert done.returncode == 0, done.stderr
        bucket = init["environment"]["HANDOFF_BUCKET"]
        assert f"bucket ready: {bucket}" in done.stdout
        s3 = boto3.client(
            "s3",
            endpoint_url="http://127.0.0.1:5000",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    finally:
        docker("rm", "-f", *names, check=False)
