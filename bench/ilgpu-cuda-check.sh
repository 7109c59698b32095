#!/usr/bin/env bash
# ILGPU backend check for a CUDA machine: kernel tests on the CPU simulator plus the trainer
# contract on the GPU. FLEETLEARN_REQUIRE_CUDA=1 turns "no CUDA device" into a failure, not a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
export FLEETLEARN_REQUIRE_CUDA=1
dotnet test tests/FleetLearn.Compute.Tests --filter "FullyQualifiedName~Gpu" --logger "console;verbosity=normal" "$@"
