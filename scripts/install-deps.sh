#!/usr/bin/env bash
# Installs the Debian packages FleetLearn's commands and tests use, only those missing.
# Usage: scripts/install-deps.sh [package ...]   (default: everything the test suite needs)
set -euo pipefail
packages=("$@")
if [ ${#packages[@]} -eq 0 ]; then
  # chromium: the dashboard browser test; prometheus: promtool checks /metrics; fonts-dejavu-core: the charts' font.
  packages=(dataset-fashion-mnist mosquitto mosquitto-clients openssl python3-onnx ffmpeg chromium prometheus fonts-dejavu-core)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >&2
fi
command -v dotnet >/dev/null || { echo "The .NET 10 SDK is required (dotnet not on PATH)." >&2; exit 1; }
