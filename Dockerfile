# The handoff runtime image: what an ECS (Fargate) task runs for HandoffEcsRunOperator.
#
# It holds the handoff core and CLI only - no Airflow: `pip install .` installs the base
# dependencies of pyproject.toml (boto3, PyYAML, Jinja2, jsonschema, filelock). Airflow only
# launches and watches the task. The operator overrides CMD (ECS `command`), never the
# ENTRYPOINT, so the process is always `handoff run -w /home/handoff/workspace -a [...]`
# (see handoff_provider/core/cli/container.py; tests/test_container_files.py checks both agree,
# and `make test-container` builds this file and runs the image against moto).
#
#   docker build -t handoff-runtime .
#   docker run --rm -e HANDOFF_STACK=my-stack -e HANDOFF_BUCKET=my-bucket \
#     -e AWS_REGION=us-east-1 handoff-runtime          # credentials: the ECS task role
#
# Everything the runtime writes lives under /home/handoff, owned by the user: the
# workspace, the caches (handoff's venvs, uv, pip) and TMPDIR. uv (which fetches pip into
# new venvs) trusts the system CA store, like pip and Python, through SSL_CERT_FILE. With a read-only root
# filesystem (ECS `readonlyRootFilesystem`), mount one writable volume at /home/handoff.
#
# Projects whose `installs` need more than pip (git, compilers, system libraries) use this
# image as a base: `FROM handoff-runtime` + `USER root` + apt-get + `USER handoff`.
ARG PYTHON_VERSION=3.12
FROM python:${PYTHON_VERSION}-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# uv makes the project venvs (`installs`) fast; the venv cache uses it when present.
RUN python -m pip install --no-cache-dir "uv>=0.4"

# The package without Airflow: the core dependencies only (the `runtime` extra is empty).
# pip compiles the modules at install, so the read-only image starts without compiling.
COPY pyproject.toml README.md /tmp/handoff-src/
COPY handoff_provider /tmp/handoff-src/handoff_provider
RUN python -m pip install --no-cache-dir "/tmp/handoff-src[runtime]" \
    && rm -rf /tmp/handoff-src \
    && handoff --help > /dev/null

# A non-root user; every directory the runtime writes is created here, owned by it (a
# parent left to `install -d` would be root's, and uv could not create its cache).
RUN useradd --create-home --home-dir /home/handoff --uid 10001 --user-group \
        --shell /usr/sbin/nologin handoff \
    && install -d -o handoff -g handoff -m 0755 \
        /home/handoff/workspace \
        /home/handoff/tmp \
        /home/handoff/.cache \
        /home/handoff/.cache/uv \
        /home/handoff/.cache/pip \
        /home/handoff/.cache/handoff \
        /home/handoff/.cache/handoff/venvs
USER handoff
ENV HOME=/home/handoff \
    TMPDIR=/home/handoff/tmp \
    XDG_CACHE_HOME=/home/handoff/.cache \
    UV_CACHE_DIR=/home/handoff/.cache/uv \
    PIP_CACHE_DIR=/home/handoff/.cache/pip \
    UV_PYTHON_DOWNLOADS=never \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HANDOFF_VENV_CACHE=/home/handoff/.cache/handoff/venvs
WORKDIR /home/handoff

ENTRYPOINT ["handoff"]
CMD ["run", "-w", "/home/handoff/workspace", "-a"]
