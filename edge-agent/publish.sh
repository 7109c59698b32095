#!/usr/bin/env bash
# Publishes the edge agent (src/FleetLearn.EdgeAgent.Host, binary fleetlearn-agent) as a self-contained single-file
# executable per runtime, and makes edge-agent/out/RID/ a bundle a vehicle installs from: the binary, install.sh, the
# systemd unit, the config overlays, manifest.json (version, commit, sha256 and size of each file) and SHA256SUMS.
#
# usage: edge-agent/publish.sh [--onnxruntime cpu|cuda] [--no-compress] [linux-x64|linux-arm64 ...]   (default: both RIDs)
#   --onnxruntime cpu   (default) ONNX Runtime's CPU build: the evaluation of each global model runs on the CPU provider
#   --onnxruntime cuda  linux-x64 only: also ships the 284 MB CUDA provider (vehicles with an NVIDIA GPU and CUDA 13)
#   --no-compress       do not compress the bundle (by default it is: half the download, about 14 MB more memory at
#                       start, as the assemblies are inflated in memory; see edge-agent/README.md for the measurements)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
project="$repo/src/FleetLearn.EdgeAgent.Host/FleetLearn.EdgeAgent.Host.csproj"
ort=cpu compress=true rids=()
while [ $# -gt 0 ]; do
  case "$1" in
    --onnxruntime) ort=${2:?--onnxruntime needs cpu or cuda}; shift 2 ;;
    --no-compress) compress=false; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    linux-x64|linux-arm64) rids+=("$1"); shift ;;
    *) echo "publish.sh: unknown argument '$1' (runtimes: linux-x64, linux-arm64)" >&2; exit 2 ;;
  esac
done
[ ${#rids[@]} -gt 0 ] || rids=(linux-x64 linux-arm64)
case "$ort" in cpu|cuda) ;; *) echo "publish.sh: --onnxruntime must be cpu or cuda" >&2; exit 2 ;; esac

version=$(git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo unknown)
commit=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
sdk=$(dotnet --version)

for rid in "${rids[@]}"; do
  out="$here/out/$rid"
  rm -rf "$out"
  mkdir -p "$out"
  echo "== $rid: fleetlearn-agent $version (onnxruntime $ort) -> $out" >&2
  # DebugType=embedded: stack traces keep file and line without .pdb files beside the binary.
  # IncludeAllContentForSelfExtract: the pretrained ResNet18 (DnnImageModels/, from the NuGet package) travels inside the
  # binary and is unpacked with the native libraries into DOTNET_BUNDLE_EXTRACT_BASE_DIR, where the agent finds it.
  dotnet publish "$project" -c Release -r "$rid" --self-contained \
    -p:PublishSingleFile=true -p:IncludeNativeLibrariesForSelfExtract=true -p:IncludeAllContentForSelfExtract=true \
    -p:EnableCompressionInSingleFile="$compress" \
    -p:DebugType=embedded -p:PublishDocumentationFiles=false -p:PublishReferencesDocumentationFiles=false \
    -p:ContinuousIntegrationBuild=true -p:VehicleOnnxRuntime="$ort" \
    -p:InformationalVersion="$version" -p:SourceRevisionId="$commit" \
    -nologo -clp:ErrorsOnly -o "$out"
  # A single file means one file: anything else the SDK left beside it would not reach the vehicle.
  extra=$(find "$out" -mindepth 1 ! -name fleetlearn-agent -printf '%P\n')
  if [ -n "$extra" ]; then echo "publish.sh: $rid: unexpected files beside the binary: $extra" >&2; exit 1; fi
  # The agent evaluates every global model through ONNX Runtime: its native library must be in the bundle (the bundle's
  # file table is not compressed). A PrivateAssets="all" on the package once dropped it without an error.
  grep -aq 'libonnxruntime\.so' "$out/fleetlearn-agent" || { echo "publish.sh: $rid: libonnxruntime.so is not in the bundle" >&2; exit 1; }
  cp "$here/install.sh" "$here/fleetlearn-agent.service" "$here/appsettings.json" "$here/appsettings.Development.json" "$here/README.md" "$out/"
  chmod 0755 "$out/fleetlearn-agent" "$out/install.sh"

  files=(fleetlearn-agent install.sh fleetlearn-agent.service appsettings.json appsettings.Development.json README.md)
  (cd "$out" && sha256sum "${files[@]}" > SHA256SUMS)
  {
    printf '{\n  "name": "fleetlearn-agent",\n  "version": "%s",\n  "commit": "%s",\n  "rid": "%s",\n' "$version" "$commit" "$rid"
    printf '  "onnxruntime": "%s",\n  "compressed": %s,\n  "dotnet_sdk": "%s",\n  "files": [\n' "$ort" "$compress" "$sdk"
    sep=""
    for f in "${files[@]}"; do
      printf '%s    { "path": "%s", "bytes": %s, "sha256": "%s" }' "$sep" "$f" "$(stat -c %s "$out/$f")" "$(sha256sum "$out/$f" | cut -d' ' -f1)"
      sep=$',\n'
    done
    printf '\n  ]\n}\n'
  } > "$out/manifest.json"
  echo "$rid: $(stat -c %s "$out/fleetlearn-agent") bytes  $out/fleetlearn-agent" >&2
done
