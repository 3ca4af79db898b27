#!/usr/bin/env bash
# What `make test-browser` needs beyond the venv: Debian's Chromium (apt) and
# playwright-core from npm in build/browser/ (the library only: no browser download, the
# tests drive /usr/bin/chromium through executablePath). Installs only what is missing;
# needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."
PLAYWRIGHT_VERSION="${PLAYWRIGHT_VERSION:-1.65.1}"
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -ne 0 ]; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "installing ${missing[*]}" >&2
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ ! -f build/browser/node_modules/playwright-core/package.json ] ||
    [ "$(node -p "require('./build/browser/node_modules/playwright-core/package.json').version")" != "$PLAYWRIGHT_VERSION" ]; then
    mkdir -p build/browser
    [ -f build/browser/package.json ] || echo '{"private": true}' > build/browser/package.json
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix build/browser --no-audit --no-fund \
        --silent "playwright-core@${PLAYWRIGHT_VERSION}"
fi
