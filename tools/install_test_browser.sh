#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for tests/test_serve_browser.py (the live page in a real
# browser with a fake camera), only when they are missing: quiet and idempotent. Part of the README's test
# command and .ci/run. Without apt-get (not Debian/Ubuntu) or root/sudo it says so and exits 0; the browser
# test then skips with that reason. On Ubuntu, where `chromium` is a snap, install Chrome + chromedriver instead.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_test_browser: no apt-get here; install chromium and chromedriver yourself (the browser test skips without them)" >&2
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
        echo "install_test_browser: not root and no passwordless sudo; run: sudo apt-get install chromium chromium-driver" >&2
        exit 0
    fi
    SUDO=(sudo -n)
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq chromium chromium-driver; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "install_test_browser: apt-get could not install chromium chromium-driver" >&2
    exit 1
fi
echo "install_test_browser: installed $(chromium --version 2>/dev/null) and $(chromedriver --version 2>/dev/null | cut -d' ' -f1-2)"
