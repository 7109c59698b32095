#!/usr/bin/env bash
# Tests FleetLearn's images (root on a Debian machine; installs mmdebstrap, rauc, squashfs-tools, podman, ... when
# missing). Default: the vehicle image (firmware-images/test.sh: two reproducible builds, signature and payload checks,
# the rollback hook). --all adds the container checks: the image booted under its own systemd with the agent reaching
# the broker (firmware-images/boot-test.sh), `podman kube play` of the Kubernetes manifests with one round applied
# (containers/kube/test.sh) and a container fleet (scripts/container-fleet.sh --agents 4 --rounds 1, SecAgg+ and
# distributed DP). Ends with one line "images: N passed, N failed".
#
# usage: scripts/test-images.sh [--all]
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
all=false
case "${1:-}" in --all) all=true ;; "") ;; -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) echo "test-images.sh: unknown argument '$1' (--all or nothing)" >&2; exit 2 ;; esac
passed=0 failed=0
step() { # name command...
  local name=$1 t0; shift; t0=$(date +%s)
  echo "== $name" >&2
  if "$@"; then passed=$((passed + 1)); echo "== $name: passed ($(( $(date +%s) - t0 )) s)" >&2
  else failed=$((failed + 1)); echo "== $name: FAILED ($(( $(date +%s) - t0 )) s)" >&2; fi
}
keep=$(mktemp -d "${TMPDIR:-/tmp}/fleetlearn-images.XXXXXX")
trap 'rm -rf "$keep"' EXIT
step "vehicle image: build x2, verify, refuse tampered and foreign bundles, rollback hook" bash "$repo/firmware-images/test.sh" --keep "$keep"
if $all; then
  img=$(ls "$keep"/a/*.rootfs.img 2>/dev/null | head -n 1)
  step "containers: build images" bash "$repo/containers/build-images.sh"
  step "vehicle image boots; agent unit starts and reaches the broker" bash "$repo/firmware-images/boot-test.sh" ${img:+--image "$img"}
  step "podman kube play: broker + aggregator + 4 agents, one round" bash "$repo/containers/kube/test.sh" --agents 4
  step "container fleet: 4 agents, 1 round, SecAgg+ and distributed DP" \
    bash -c "bash '$repo/scripts/container-fleet.sh' --agents 4 --rounds 1 --model 784-32-10 --secagg plus --dp distributed --json | tail -n 1 | jq -e '.rounds_applied == 1'"
fi
echo "images: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
