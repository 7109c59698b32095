#!/usr/bin/env bash
# Plays the Kubernetes manifests (containers/kube/render.sh) with `podman kube play` on a Podman network made for the
# test: the Secrets become Podman secrets (what `podman kube play` mounts for a secret volume), then the Services,
# Deployments and PersistentVolumeClaims are played. Passes when the aggregator's /api/rounds shows round 1 applied
# with every agent in it; then removes the pods, volumes, secrets and network (also on failure or Ctrl-C).
#
# usage: containers/kube/test.sh [--agents N (default 4)] [--timeout SECONDS (default 600)] [--keep]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
source "$repo/containers/env.sh"
agents=4 timeout=600 keep=false port=${FLEETLEARN_KUBE_PORT:-18080}
while [ $# -gt 0 ]; do
  case "$1" in
    --agents) agents=${2:?--agents needs a number}; shift 2 ;;
    --timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
    --keep) keep=true; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "kube/test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "kube/test.sh: run as root (rootful Podman)" >&2; exit 2; }
fleetlearn_podman_deps openssl curl >&2
for role in broker aggregator agent; do
  pm image exists "localhost/fleetlearn-$role:dev" || { bash "$repo/containers/build-images.sh"; break; }
done
dir=$(mktemp -d "${TMPDIR:-/tmp}/fleetlearn-kube.XXXXXX")
net="fleetlearn-kube-$$"
# Podman plays no Services: the broker is reached by its pod's name, which Podman's DNS serves on the network.
bash "$here/render.sh" --out "$dir" --agents "$agents" --rounds 1 --host-port "$port" --broker-host broker-pod-0
secrets=()
teardown() {
  local status=$?
  trap - EXIT INT TERM
  if $keep; then echo "kept: $dir/fleet.yaml played on network $net (podman kube down $dir/fleet.yaml)"; exit "$status"; fi
  # The containers with their anonymous volumes (the images' VOLUMEs), then the pods; the claims' volumes and the
  # volumes Podman 4.3 makes for each secret volume (named after the secret) are left by `kube down`.
  local ids; ids=$(pm ps -aq --filter "network=$net" 2>/dev/null || true)
  # shellcheck disable=SC2086
  [ -z "$ids" ] || pm rm -f -v -t 5 $ids >/dev/null 2>&1 || true
  pm kube down "$dir/fleet.yaml" >/dev/null 2>&1 || true
  for claim in $(sed -n 's/^  name: \(fleetlearn-.*-state\)$/\1/p' "$dir/fleet.yaml"); do pm volume rm -f "$claim" >/dev/null 2>&1 || true; done
  for s in "${secrets[@]}"; do pm secret rm "$s" >/dev/null 2>&1 || true; pm volume rm -f "$s" >/dev/null 2>&1 || true; done
  pm network rm -f "$net" >/dev/null 2>&1 || true
  rm -rf "$dir"
  exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM
pm network create "$net" >/dev/null 2>"$dir/network.err" || { cat "$dir/network.err" >&2; exit 1; } # (netavark prints a syslog warning here)
for f in "$dir"/podman-secrets/*.yaml; do
  name=$(basename "$f" .yaml)
  pm secret rm "$name" >/dev/null 2>&1 || true
  pm secret create "$name" "$f" >/dev/null
  secrets+=("$name")
done
start=$(date +%s.%N)
pm kube play --network "$net" "$dir/fleet.yaml" >/dev/null
played=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "kube play: $(pm pod ps -q --filter "network=$net" | wc -l) pods on $net in $played s"
deadline=$(( $(date +%s) + timeout ))
# /healthz answers 503 until the aggregator is connected to the broker, then 200.
until curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "FAIL: the aggregator did not answer on 127.0.0.1:$port"; exit 1; }
  sleep 1
done
echo "aggregator healthy after $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
while true; do
  rounds=$(curl -fsS "http://127.0.0.1:$port/api/rounds" 2>/dev/null || echo '[]')
  r=$(jq -c '[.[] | select(.round == 1 and .status != "open")] | first // empty' <<< "$rounds")
  if [ -n "$r" ]; then break; fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "FAIL: round 1 did not close within $timeout s"; pm ps -a --filter "network=$net" --format '{{.Names}} {{.Status}}'
    exit 1
  fi
  sleep 2
done
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "round 1: $(jq -r '"\(.status), \(.participants)/\(.cohortSize) participants, note \(.note)"' <<< "$r") after $took s"
if [ "$(jq -r .status <<< "$r")" = applied ] && [ "$(jq -r .participants <<< "$r")" -eq "$agents" ]; then
  echo "PASS: podman kube play: broker + aggregator + $agents agents, round 1 applied with all $agents"
else
  echo "FAIL: round 1 was not applied with all $agents agents"; exit 1
fi
