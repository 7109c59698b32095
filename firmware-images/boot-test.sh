#!/usr/bin/env bash
# Boots a vehicle image as a container and checks what a vehicle would do: the image's own systemd is PID 1, the
# fleetlearn-agent unit (enabled in the image) starts from a provisioned data partition (/data/fleetlearn: agent.env,
# certificate, the aggregator's key), reports ready (Type=notify) and connects to the broker over mutual TLS (the
# Mosquitto broker image, on a Podman network made for the test). Prints the seconds to each step; exit 0 on success.
#
# usage: firmware-images/boot-test.sh [--image ROOTFS.img] [--timeout SECONDS (default 240)] [--keep]
#   --image   a squashfs image from build.sh (default: build one into a temporary folder)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$repo/containers/env.sh"
image="" timeout=240 keep=false
while [ $# -gt 0 ]; do
  case "$1" in
    --image) image=${2:?--image needs a squashfs image}; shift 2 ;;
    --timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
    --keep) keep=true; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "boot-test.sh: unknown argument '$1' (--help lists the options)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "boot-test.sh: run as root" >&2; exit 2; }
fleetlearn_podman_deps squashfs-tools openssl >&2
t=$(mktemp -d "${TMPDIR:-/tmp}/fleetlearn-boot.XXXXXX")
id="flboot$$"
net="$id-net"
teardown() {
  local status=$?
  trap - EXIT INT TERM
  if $keep; then echo "kept: containers $id-vehicle, $id-broker on $net; folder $t"; exit "$status"; fi
  pm rm -f -v -t 5 "$id-vehicle" "$id-broker" >/dev/null 2>&1 || true
  pm network rm -f "$net" >/dev/null 2>&1 || true
  rm -rf "$t"
  exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM
if [ -z "$image" ]; then
  bash "$here/build.sh" --out "$t/build" >&2
  image=$(ls "$t"/build/*.rootfs.img)
fi
[ -f "$image" ] || { echo "boot-test.sh: no image at $image" >&2; exit 2; }
pm image exists localhost/fleetlearn-broker:dev || bash "$repo/containers/build-images.sh" >&2
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# The slot's content, as the vehicle mounts it (read-only; the container gets a writable overlay above it).
unsquashfs -q -n -d "$t/root" "$image" >/dev/null
# The data partition, provisioned as at the factory: this vehicle's settings, certificate and the aggregator's key.
bash "$repo/broker-config/make-dev-ca.sh" "$t/certs" car-0 >/dev/null 2>&1
d="$t/data/fleetlearn"
install -d -m 0755 "$d"
install -d -m 0750 -g 990 "$d/certs"
install -m 0644 "$t/certs/ca.crt" "$d/certs/ca.crt"
install -m 0644 "$t/certs/car-0.crt" "$d/certs/vehicle.crt"
install -m 0640 -g 990 "$t/certs/car-0.key" "$d/certs/vehicle.key"
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl ec -pubout -out "$d/aggregator-signing.pub.pem" 2>/dev/null
chmod 0644 "$d/aggregator-signing.pub.pem"
printf '%s\n' Agent__VehicleId=car-0 Mqtt__Host=broker Mqtt__Port=8883 Mqtt__TlsServerName=localhost \
  VehicleData__Vehicles=10 VehicleData__Index=0 > "$d/agent.env"
chmod 0600 "$d/agent.env"
mkdir -p "$t/broker"; cp "$t/certs/"{ca.crt,ca.crl,broker.crt,broker.key} "$t/broker/"

pm network create "$net" >/dev/null 2>"$t/network.err" || { cat "$t/network.err" >&2; exit 1; } # (netavark prints a syslog warning here)
pm run -d --name "$id-broker" --network "$net" --network-alias broker -v "$t/broker:/run/fleetlearn/certs:ro" \
  localhost/fleetlearn-broker:dev >/dev/null
# systemd as PID 1 needs what a machine gives it (mounts, cgroups, namespaces for the unit's sandboxing): --privileged.
start=$(now)
pm run -d --name "$id-vehicle" --hostname car-0 --network "$net" --privileged --systemd=always \
  -v "$t/data:/data" --rootfs "$t/root:O" /sbin/init >/dev/null
deadline=$(( $(date +%s) + timeout ))
state="" booted="" active="" connected=""
while [ "$(date +%s)" -lt "$deadline" ]; do
  if [ -z "$booted" ]; then
    s=$(pm exec "$id-vehicle" systemctl is-system-running 2>/dev/null || true)
    case "$s" in running|degraded) booted=$(since "$start"); echo "systemd: $s after $booted s" ;; esac
  fi
  if [ -z "$active" ]; then
    state=$(pm exec "$id-vehicle" systemctl is-active fleetlearn-agent 2>/dev/null || true)
    if [ "$state" = active ]; then active=$(since "$start"); echo "fleetlearn-agent.service: active (ready) after $active s"; fi
  fi
  if [ -z "$connected" ] && pm logs "$id-broker" 2>&1 | grep -q "New client connected .* as car-0"; then
    connected=$(since "$start"); echo "broker: car-0 connected over mutual TLS after $connected s"
  fi
  if [ -n "$active" ] && [ -n "$connected" ]; then break; fi
  restarts=$(pm exec "$id-vehicle" systemctl show -p NRestarts --value fleetlearn-agent 2>/dev/null || echo 0)
  if [ "${restarts:-0}" -ge 2 ]; then echo "fleetlearn-agent.service failed and was restarted $restarts times"; break; fi
  sleep 1
done
if [ -n "$active" ] && [ -n "$connected" ]; then
  pm exec "$id-vehicle" sh -c '. /etc/os-release; echo "image: $PRETTY_NAME, IMAGE_VERSION=$IMAGE_VERSION"; systemctl show -p MainPID -p ExecMainStartTimestamp fleetlearn-agent; journalctl -u fleetlearn-agent --no-pager -n 5 -o cat' || true
  echo "PASS: the image boots, fleetlearn-agent starts and reaches the broker (agent ready after $active s, connected after $connected s)"
  exit 0
fi
echo "FAIL: agent state '${state:-unknown}', broker connection ${connected:-not seen} after $timeout s"
pm exec "$id-vehicle" systemctl status fleetlearn-agent --no-pager 2>&1 | tail -n 20 || true
pm exec "$id-vehicle" journalctl -u fleetlearn-agent --no-pager -n 30 2>&1 || true
pm logs --tail 10 "$id-broker" 2>&1 || true
exit 1
