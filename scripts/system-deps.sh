#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, when missing. The spine (issue 2) needs
# none beyond Python; later parts add mosquitto, PostgreSQL/PostGIS and Chromium here.
set -euo pipefail
need=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
