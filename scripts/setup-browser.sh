#!/usr/bin/env bash
# The dashboard's browser test drives a real headless Chromium (Debian's packages): install it
# once. Idempotent; needs root or sudo.
set -euo pipefail
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
fi
