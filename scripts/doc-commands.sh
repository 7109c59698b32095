#!/usr/bin/env bash
# Runs every command shown in README.md, docs/*.md, bench/README.md and broker-config/README.md (long ones shortened as
# the docs' <!-- doc-test: … --> comments say) from a scratch copy of the repository, and fails when one fails or when
# `git status` there would show a private key. Details: scripts/doc-commands.py. Usage: scripts/doc-commands.sh [--list|--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh dataset-fashion-mnist mosquitto openssl python3-onnx python3-torch libopenblas0-pthread curl
exec python3 scripts/doc-commands.py "$@"
