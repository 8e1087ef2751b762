#!/usr/bin/env bash
# Headless Chromium and its WebDriver from the Debian packages, for the portal's browser test
# (tests/pipelines/test_api.py::test_portal_in_a_real_browser). Run by `make test` when
# chromedriver is missing.
set -euo pipefail
if command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "the browser test needs Debian's chromium and chromium-driver: install them as root" \
       "(apt-get install chromium chromium-driver)" >&2
  exit 1
fi
echo "installing chromium and chromium-driver (Debian packages) for the portal's browser test"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
