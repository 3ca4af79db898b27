#!/usr/bin/env bash
# What `make test-e2e` needs beyond the venv: Debian's PostgreSQL server binaries (initdb,
# pg_ctl; the tests start a server of their own in a temporary directory, see
# tests/e2e/postgres.py) and runuser (the server runs as the `postgres` user when the tests
# run as root). Installs only what is missing, without creating or starting the package's
# default cluster; needs root (or sudo) for apt.
set -euo pipefail
missing=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null ||
    missing+=(postgresql)
command -v runuser >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "installing ${missing[*]}" >&2
# Debian's postgresql-common reads this before it makes (and starts) a `main` cluster.
"${sudo[@]}" mkdir -p /etc/postgresql-common/createcluster.d
echo 'create_main_cluster = false' |
    "${sudo[@]}" tee /etc/postgresql-common/createcluster.d/handoff-e2e.conf >/dev/null
"${sudo[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
