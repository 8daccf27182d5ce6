#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the browser test (tests/browser). Installs them when
# missing; fails loudly if they cannot be installed.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
echo "installing Debian chromium and chromium-driver for the browser test"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || {
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q chromium chromium-driver >/dev/null
}
if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
  echo "ERROR: chromium / chromedriver could not be installed" >&2
  exit 1
fi
