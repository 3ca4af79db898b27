# The handoff runtime image: what an ECS (Fargate) task runs for HandoffEcsRunOperator.
#
# It holds the handoff core and CLI only - no Airflow: `pip install .` installs the base
# dependencies of pyproject.toml (boto3, PyYAML, Jinja2, jsonschema, filelock). Airflow only
# launches and watches the task. The operator overrides CMD (ECS `command`), never the
# ENTRYPOINT, so the process is always `handoff run -w /home/handoff/workspace -a [...]`
# (see handoff_provider/core/container.py; tests/test_container_files.py checks both agree).
#
#   docker build -t handoff-runtime .
#   docker run --rm -e HANDOFF_STACK=my-stack -e HANDOFF_BUCKET=my-bucket \
#     -e AWS_REGION=us-east-1 handoff-runtime          # credentials: the ECS task role
#
# Projects whose `installs` need more than pip (git, compilers, system libraries) use this
# image as a base: `FROM handoff-runtime` + `USER root` + apt-get + `USER handoff`.
ARG PYTHON_VERSION=3.12
FROM python:${PYTHON_VERSION}-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# uv makes the project venvs (`installs`) fast; the venv cache uses it when present.
RUN python -m pip install "uv>=0.4"

# The package without Airflow: the core dependencies only (the `runtime` extra is empty).
COPY pyproject.toml README.md /tmp/handoff-src/
COPY handoff_provider /tmp/handoff-src/handoff_provider
RUN python -m pip install "/tmp/handoff-src[runtime]" \
    && rm -rf /tmp/handoff-src \
    && handoff --help > /dev/null

# A non-root user; the workspace and the venv cache live in the container's writable
# layer (a fresh task starts empty: config from SSM, files from S3, state from last/).
RUN useradd --create-home --home-dir /home/handoff --uid 10001 --user-group \
        --shell /usr/sbin/nologin handoff \
    && install -d -o handoff -g handoff /home/handoff/workspace /home/handoff/.cache/handoff/venvs
USER handoff
ENV HOME=/home/handoff \
    HANDOFF_VENV_CACHE=/home/handoff/.cache/handoff/venvs
WORKDIR /home/handoff

ENTRYPOINT ["handoff"]
CMD ["run", "-w", "/home/handoff/workspace", "-a"]
