#!/usr/bin/env bash
# One prepared check for a machine with an NVIDIA GPU (the `device` tool's H200): the ILGPU kernel and
# trainer-contract tests on CUDA (a missing device fails instead of skipping), ILGPU training throughput
# next to the CPU backend in the same run, and ONNX Runtime's CUDA execution provider on the generated
# backbone and the pretrained ResNet18 (CUDA vs CPU provider). Needs the .NET 10 SDK and a restored build (the device machine has no network: build here,
# carry the build output).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
export FLEETLEARN_REQUIRE_CUDA=1
dotnet test tests/FleetLearn.Compute.Tests -c Release --no-build --filter "FullyQualifiedName~Gpu" --logger "console;verbosity=normal" || true
fl=src/FleetLearn.Cli/bin/Release/net10.0/fleetlearn
for backend in cpu ilgpu; do "$fl" bench train --backend "$backend" --batch 50 --samples 20000 --json 2>&1 | tail -n 2 || true; done
"$fl" bench extract --backbone generated --onnx-provider cuda --frames 20000 --batch 256 --json 2>&1 | tail -n 3 || true
"$fl" bench extract --backbone generated --onnx-provider cpu --frames 20000 --batch 256 --json 2>&1 | tail -n 1 || true
# The pretrained ResNet18 (NuGet Microsoft.ML.DnnImageFeaturizer.ResNet18, copied next to the CLI by the build): the CUDA
# execution provider next to the CPU provider, per batch size. The CUDA line says which CUDA library the provider wanted
# when it does not load (ONNX Runtime 1.31's CUDA provider links CUDA 13: libcublasLt.so.13, libcudnn.so.9).
"$fl" bench extract --backbone resnet18 --onnx-provider cuda --peer none --batch 1,8,32,64 --frames 256 --json 2>&1 | tail -n 4 || true
"$fl" bench extract --backbone resnet18 --onnx-provider cpu --peer torchvision --batch 1,8,16 --frames 64 --json 2>&1 | tail -n 2 || true
