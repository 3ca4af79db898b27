#!/usr/bin/env bash
# What `make test-container` needs beyond the venv: a Docker engine (Debian's docker.io:
# dockerd + the docker client) and debootstrap (to build a stand-in base image when no
# registry is reachable). Installs only what is missing; needs root (or sudo) for apt.
set -euo pipefail
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v flock >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${missing[@]}"
