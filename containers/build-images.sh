#!/usr/bin/env bash
# Builds FleetLearn's container images without any registry: the base image is imported from an mmdebstrap root
# filesystem (firmware-images/rootfs.sh: the vehicle's package list plus containers/packages.txt, cached by that list),
# and the broker, aggregator and agent images are built on it from the Containerfiles here:
#   localhost/fleetlearn-base:KEY (and :latest)   localhost/fleetlearn-broker:dev   localhost/fleetlearn-aggregator:dev
#   localhost/fleetlearn-agent:dev
# Inputs it reuses when present (else builds them once): edge-agent/out/linux-x64 (edge-agent/publish.sh) and the
# Release build of src/FleetLearn.Cli. Prints one line per image with its size and the seconds it took.
#
# usage: containers/build-images.sh [--rebuild-base]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/env.sh"
rebuild_base=false
while [ $# -gt 0 ]; do
  case "$1" in
    --rebuild-base) rebuild_base=true; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "build-images.sh: unknown argument '$1' (--help lists the options)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "build-images.sh: run as root (rootful Podman; the base root filesystem keeps its owners)" >&2; exit 2; }
fleetlearn_podman_deps mmdebstrap rsync >&2
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
size() { pm image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.1f MiB", $1 / 1048576 }'; }

# ---- base image --------------------------------------------------------------------------------------------------
t=$(now)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
tarball=$(bash "$repo/firmware-images/rootfs.sh" --packages "$repo/firmware-images/packages.txt" --packages "$here/packages.txt")
key=$(basename "$tarball" .tar)
base="localhost/fleetlearn-base:$key"

if $rebuild_base || ! pm image exists "$base"; then
  pm import --change 'CMD ["/bin/bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tarball" "$base" >/dev/null
fi
pm tag "$base" localhost/fleetlearn-base:latest
echo "image localhost/fleetlearn-base:$key  $(size "$base")  $(took "$t") s"

# ---- the build context: .stage/ (ignored by git) ------------------------------------------------------------------------
stage="$here/.stage"
mkdir -p "$stage"
agent="$repo/edge-agent/out/linux-x64"
if [ ! -x "$agent/fleetlearn-agent" ]; then
  echo "build-images.sh: publishing the agent (edge-agent/publish.sh linux-x64)" >&2
  bash "$repo/edge-agent/publish.sh" linux-x64 >&2
fi
rm -rf "$stage/agent"; mkdir -p "$stage/agent"
cp "$agent/fleetlearn-agent" "$agent/manifest.json" "$repo/edge-agent/appsettings.json" "$stage/agent/"
rm -rf "$stage/broker"; mkdir -p "$stage/broker"
cp "$repo/broker-config/mosquitto.conf" "$repo/broker-config/acl" "$here/broker-entrypoint.sh" "$stage/broker/"
cli="$repo/src/FleetLearn.Cli/bin/Release/net10.0"
if [ ! -f "$cli/fleetlearn.dll" ] || [ -n "$(find "$repo/src" -name '*.cs' -newer "$cli/fleetlearn.dll" -print -quit)" ]; then
  echo "build-images.sh: building src/FleetLearn.Cli (Release)" >&2
  dotnet build "$repo/src/FleetLearn.Cli" -c Release -nologo -clp:ErrorsOnly -v:quiet >&2
fi
# The CLI without what a CPU container never loads: ONNX Runtime's CUDA and TensorRT providers (288 MB), other
# operating systems' native libraries, XML documentation.
rsync -a --delete --exclude '*.xml' --exclude 'runtimes/win*' --exclude 'runtimes/osx*' --exclude 'runtimes/linux-arm*' \
  --exclude 'libonnxruntime_providers_cuda.so' --exclude 'libonnxruntime_providers_tensorrt.so' "$cli/" "$stage/fleetlearn/"
# The .NET runtimes the CLI was built for (Microsoft.NETCore.App, and Microsoft.AspNetCore.App for the aggregator's HTTP
# surface, from this machine's SDK install): no registry image.
dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
mkdir -p "$stage/dotnet" # rsync creates the last directory only: a fresh clone has no .stage/dotnet
rsync -a --delete "$dotnet_root/host/" "$stage/dotnet/host/"
for framework in Microsoft.NETCore.App Microsoft.AspNetCore.App; do
  runtime=$(dotnet --list-runtimes | awk -v f="$framework" '$1 == f && $2 ~ /^10\./ { v = $2 } END { print v }')
  [ -n "$runtime" ] || { echo "build-images.sh: no $framework 10.x runtime in $dotnet_root" >&2; exit 1; }
  mkdir -p "$stage/dotnet/shared/$framework"
  rsync -a --delete "$dotnet_root/shared/$framework/$runtime/" "$stage/dotnet/shared/$framework/$runtime/"
done
cp "$dotnet_root/dotnet" "$dotnet_root/LICENSE.txt" "$stage/dotnet/"

# ---- role images -------------------------------------------------------------------------------------------------
for role in broker aggregator agent; do
  t=$(now)
  pm build --quiet --build-arg BASE="$base" -f "$here/Containerfile.$role" -t "localhost/fleetlearn-$role:dev" "$stage" >/dev/null
  echo "image localhost/fleetlearn-$role:dev  $(size "localhost/fleetlearn-$role:dev")  $(took "$t") s"
done
