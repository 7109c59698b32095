#!/usr/bin/env bash
# Tests the vehicle image build: builds twice with the same SOURCE_DATE_EPOCH and inputs and compares the image
# digests; checks that `rauc extract --keyring` accepts the bundle and refuses it with one flipped byte in the payload,
# one flipped byte in the signature, or signed by another CA; runs the install hook's rollback check; and checks the
# image holds the agent as published. Ends with "firmware-images: N passed, N failed". Exit status 0 when all pass.
#
# usage: firmware-images/test.sh [--keep DIR]   (--keep: build into DIR and leave it; default a temporary folder)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=${2:?--keep needs a folder}; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
if [ -n "$keep" ]; then mkdir -p "$keep"; t=$(cd "$keep" && pwd); else t=$(mktemp -d); trap 'rm -rf "$t"' EXIT; fi
passed=0 failed=0
ok() { echo "PASS $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@" >"$t/last.log" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/    /' "$t/last.log" | tail -n 20; fi; }
refused() { local what=$1; shift; if "$@" >"$t/last.log" 2>&1; then bad "$what (accepted)"; else ok "$what: $(grep -v '^$' "$t/last.log" | tail -n 1 | cut -c1-150)"; fi; }

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
keys="$t/keys"
start=$(date +%s)
check "build 1" bash "$here/build.sh" --out "$t/a" --version 1.2.0 --keys "$keys"
check "build 2 (same inputs, same SOURCE_DATE_EPOCH)" bash "$here/build.sh" --out "$t/b" --version 1.2.0 --keys "$keys"
echo "two builds: $(( $(date +%s) - start )) s"
arch=$(dpkg --print-architecture)
stem="fleetlearn-vehicle-1.2.0-$arch"
bundle="$t/a/$stem.raucb"
[ -f "$bundle" ] || { echo "no bundle at $bundle"; echo "firmware-images: $passed passed, $((failed + 1)) failed"; exit 1; }
check "keyring, manifest and system.conf beside the bundle" test -s "$t/a/keyring.pem" -a -s "$t/a/$stem.manifest.json" -a -s "$t/a/system.conf"

# Reproducible: the image (what a slot holds) is bit for bit the same; so is the manifest's record of it.
ia=$(jq -r .image.sha256 "$t/a/$stem.manifest.json") ib=$(jq -r .image.sha256 "$t/b/$stem.manifest.json")
check "image digests equal ($ia)" test "$ia" = "$ib"
check "image digest = sha256 of the image file" test "$ia" = "$(sha256sum "$t/a/$stem.rootfs.img" | cut -d' ' -f1)"

# Verification as a vehicle does it.
check "rauc extract --keyring accepts the bundle" rauc extract --keyring="$t/a/keyring.pem" "$bundle" "$t/x"
check "the extracted image is the built one" cmp "$t/x/rootfs.img" "$t/a/$stem.rootfs.img"
check "rauc info --keyring shows the version" sh -c "rauc info --keyring='$t/a/keyring.pem' '$bundle' | grep -Eq \"^Version:[[:space:]]*'1.2.0'\""

check "system.conf (the image's A/B slots) loads in RAUC with the bundle" rauc --conf="$t/a/system.conf" --keyring="$t/a/keyring.pem" info "$bundle"

size=$(stat -c %s "$bundle")
flip() { # copy with one byte inverted at offset $2
  cp "$bundle" "$1"
  local b; b=$(od -An -tu1 -j "$2" -N1 "$bundle" | tr -d ' ')
  printf "$(printf '\\%03o' $(( 255 - b )))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
  cmp -s "$bundle" "$1" && { echo "flip did not change $1"; return 1; }; return 0
}
flip "$t/payload.raucb" $(( size / 3 ))
refused "payload byte flipped: rauc extract refuses" rauc extract --keyring="$t/a/keyring.pem" "$t/payload.raucb" "$t/xp"
# The signature (CMS) sits at the end, before its 8-byte size: flip a byte 200 bytes before the end.
flip "$t/signature.raucb" $(( size - 200 ))
refused "signature byte flipped: rauc extract refuses" rauc extract --keyring="$t/a/keyring.pem" "$t/signature.raucb" "$t/xs"
refused "signature byte flipped: rauc info --keyring refuses" rauc info --keyring="$t/a/keyring.pem" "$t/signature.raucb"

# Another CA's signature over the same content.
bash "$here/make-signing-keys.sh" "$t/foreign" "Foreign" 2>/dev/null
cp -a "$t/x" "$t/foreign-content"
rauc bundle --cert="$t/foreign/signing.crt" --key="$t/foreign/signing.key" "$t/foreign-content" "$t/foreign.raucb" >/dev/null 2>&1
check "foreign bundle verifies against its own keyring" rauc extract --keyring="$t/foreign/keyring.pem" "$t/foreign.raucb" "$t/xf0"
refused "foreign-signed bundle: rauc extract refuses" rauc extract --keyring="$t/a/keyring.pem" "$t/foreign.raucb" "$t/xf"
refused "foreign-signed bundle: rauc info refuses" rauc info --keyring="$t/a/keyring.pem" "$t/foreign.raucb"

# The install hook (RAUC runs it as `hook.sh install-check` with the bundle's and the system's values).
hook() { # installed-version bundle-version [system compatible]
  printf 'ID=debian\nIMAGE_ID=fleetlearn-vehicle\nIMAGE_VERSION=%s\n' "$1" > "$t/os-release"
  FLEETLEARN_OS_RELEASE="$t/os-release" RAUC_MF_VERSION="$2" RAUC_MF_COMPATIBLE="fleetlearn-vehicle-$arch" \
    RAUC_SYSTEM_COMPATIBLE="${3:-fleetlearn-vehicle-$arch}" sh "$t/x/hook.sh" install-check
}
check "hook: 1.2.0 over 1.1.9 accepted" hook 1.1.9 1.2.0
check "hook: 1.2.0 over 1.2.0 accepted (reinstall)" hook 1.2.0 1.2.0
check "hook: 1.10.0 over 1.9.0 accepted (version order, not text order)" hook 1.9.0 1.10.0
refused "hook: 1.2.0 over 1.3.0 refused (rollback)" hook 1.3.0 1.2.0
refused "hook: other compatible refused" hook 1.1.0 1.2.0 fleetlearn-vehicle-other
check "hook: refusal exits 10 (RAUC's 'rejected')" sh -c "$(declare -f hook); t='$t' arch='$arch'; hook 1.3.0 1.2.0 2>/dev/null; test \$? -eq 10"

# The image holds the published agent, its unit enabled, the fixed service user and the version.
unsquashfs -d "$t/root" "$t/a/$stem.rootfs.img" opt etc usr/lib/os-release >/dev/null 2>&1 || true
agent_sha=$(jq -r .agent.sha256 "$t/a/$stem.manifest.json")
check "agent binary in the image = the published one" test "$(sha256sum "$t/root/opt/fleetlearn-agent/current/fleetlearn-agent" | cut -d' ' -f1)" = "$agent_sha"
check "agent unit enabled" test -L "$t/root/etc/systemd/system/multi-user.target.wants/fleetlearn-agent.service"
check "service user" grep -q '^fleetlearn-agent:x:990:990:' "$t/root/etc/passwd"
check "IMAGE_VERSION in os-release" grep -qx 'IMAGE_VERSION=1.2.0' "$t/root/usr/lib/os-release"
check "keyring in the image = the one beside the bundle" cmp "$t/root/etc/rauc/keyring.pem" "$t/a/keyring.pem"

echo "firmware-images: $passed passed, $failed failed ($(( $(date +%s) - start )) s)"
[ "$failed" -eq 0 ]
