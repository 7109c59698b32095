#!/usr/bin/env bash
# Builds a FleetLearn vehicle image: a Debian root filesystem (mmdebstrap, packages.txt) with the self-contained
# fleetlearn-agent from edge-agent/ installed as a release with its systemd unit, as a squashfs image, wrapped in a
# signed RAUC bundle (verity format) with an install hook that refuses rollbacks. Writes into --out:
#   fleetlearn-vehicle-VERSION-ARCH.raucb            the signed bundle a vehicle installs into its other A/B slot
#   fleetlearn-vehicle-VERSION-ARCH.rootfs.img       the squashfs image inside it (what a slot holds)
#   fleetlearn-vehicle-VERSION-ARCH.manifest.json    version, commit, digests, sizes, packages
#   keyring.pem                                      the release CA a vehicle verifies bundles with
#   system.conf                                      the A/B slot RAUC configuration the image carries
# Reproducible: the same SOURCE_DATE_EPOCH (default: the commit's time), base rootfs and agent give the same image
# digest. The bundle's digest differs between builds: RAUC draws a random verity salt and the CMS signature carries
# the signing time, so the manifest gives the image digest and the bundle digest separately.
#
# usage: firmware-images/build.sh --out DIR [--arch amd64|arm64] [--version V] [--keys DIR] [--agent DIR]
#   --version V   the image version (Debian version ordering; default 0.1.<commits>); a vehicle refuses older ones
#   --keys DIR    signing.key, signing.crt, keyring.pem (default $FLEETLEARN_FIRMWARE_KEYS or
#                 ~/.config/fleetlearn/firmware-keys, created there as development keys when missing)
#   --agent DIR   an edge-agent/publish.sh output folder (default edge-agent/out/linux-x64|linux-arm64, published if missing)
#   --zstd-level N  the image's zstd level (default 3: fast builds; 19 for a release: a smaller download, slower build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out="" arch="" version="" zstd_level=3 keys="${FLEETLEARN_FIRMWARE_KEYS:-$HOME/.config/fleetlearn/firmware-keys}" agent=""
die() { echo "build.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    --arch) arch=${2:?--arch needs amd64 or arm64}; shift 2 ;;
    --version) version=${2:?--version needs a version}; shift 2 ;;
    --keys) keys=${2:?--keys needs a folder}; shift 2 ;;
    --agent) agent=${2:?--agent needs a folder}; shift 2 ;;
    --zstd-level) zstd_level=${2:?--zstd-level needs 1..22}; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (--help lists the options)" ;;
  esac
done
[ -n "$out" ] || die "--out DIR is required"
[[ "$zstd_level" =~ ^[0-9]+$ ]] && [ "$zstd_level" -ge 1 ] && [ "$zstd_level" -le 22 ] || die "--zstd-level '$zstd_level' is not 1..22"
[ -n "$arch" ] || arch=$(dpkg --print-architecture)
case "$arch" in amd64) rid=linux-x64 ;; arm64) rid=linux-arm64 ;; *) die "--arch '$arch' is not amd64 or arm64" ;; esac
[ "$(id -u)" -eq 0 ] || die "run as root: the root filesystem keeps its owners (mmdebstrap --mode=root, tar -p)"
if [ -z "$version" ]; then version="0.1.$(git -C "$repo" rev-list --count HEAD 2>/dev/null || echo 0)"; fi
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "--version '$version' is not a version (digits first, then [A-Za-z0-9.+~-])"
commit=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$commit-dirty"; fi
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}
[[ "$SOURCE_DATE_EPOCH" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH '$SOURCE_DATE_EPOCH' is not a number of seconds"

bash "$repo/scripts/install-deps.sh" mmdebstrap squashfs-tools rauc openssl jq
t0=$(date +%s.%N)
lap() { awk -v what="$1" -v now="$(date +%s.%N)" -v t0="$t0" 'BEGIN { printf "build.sh: %-34s %6.1f s\n", what, now - t0 }' >&2; }

# ---- inputs: the agent bundle and the signing keys ------------------------------------------------------------------
[ -n "$agent" ] || agent="$repo/edge-agent/out/$rid"
if [ ! -x "$agent/fleetlearn-agent" ]; then
  [ "$agent" = "$repo/edge-agent/out/$rid" ] || die "no fleetlearn-agent in --agent $agent"
  echo "build.sh: publishing the agent for $rid (edge-agent/publish.sh)" >&2
  bash "$repo/edge-agent/publish.sh" "$rid"
fi
for f in fleetlearn-agent manifest.json SHA256SUMS fleetlearn-agent.service appsettings.json README.md; do
  [ -f "$agent/$f" ] || die "$agent/$f is missing (an edge-agent/publish.sh output folder has it)"
done
(cd "$agent" && sha256sum -c --quiet SHA256SUMS) || die "$agent does not match its SHA256SUMS"
bash "$here/make-signing-keys.sh" "$keys"
for f in signing.key signing.crt keyring.pem; do [ -f "$keys/$f" ] || die "no $f in --keys $keys"; done
openssl verify -CAfile "$keys/keyring.pem" "$keys/signing.crt" >/dev/null || die "$keys/signing.crt is not issued by $keys/keyring.pem"
lap "inputs"

# ---- base root filesystem (cached by its package list) --------------------------------------------------------------
base=$(bash "$here/rootfs.sh" --packages "$here/packages.txt" --arch "$arch")
lap "base rootfs"

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/fleetlearn-fw.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir "$root"
tar -C "$root" --numeric-owner -xpf "$base"

# ---- the agent: the layout of edge-agent/install.sh ----------------------------------------------------------------
agent_version=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$agent/manifest.json" | head -n 1)
agent_sha=$(sha256sum "$agent/fleetlearn-agent" | cut -d' ' -f1)
release="${agent_version:-unknown}-${agent_sha:0:12}"
release=${release//[^A-Za-z0-9._+-]/_}
opt="$root/opt/fleetlearn-agent"
install -d -m 0755 "$opt/releases/$release" "$root/etc/fleetlearn" "$root/etc/systemd/system/multi-user.target.wants" \
  "$root/etc/systemd/system/fleetlearn-agent.service.d" "$root/etc/rauc" "$root/data"
install -m 0755 "$agent/fleetlearn-agent" "$opt/releases/$release/fleetlearn-agent"
for f in manifest.json SHA256SUMS README.md; do install -m 0644 "$agent/$f" "$opt/releases/$release/$f"; done
ln -s "releases/$release" "$opt/current"
install -m 0644 "$agent/fleetlearn-agent.service" "$root/etc/systemd/system/fleetlearn-agent.service"
ln -s ../fleetlearn-agent.service "$root/etc/systemd/system/multi-user.target.wants/fleetlearn-agent.service"
install -m 0644 "$agent/appsettings.json" "$root/etc/fleetlearn/appsettings.json"
# The root filesystem is read-only and the same on every vehicle: what is this vehicle's (its settings, certificate and
# the aggregator's key) lives on the data partition, provisioned once (see README.md). No link for
# appsettings.Production.json: the host's JSON provider fails on a link whose target is missing (a vehicle without a
# fleet overlay); a fleet's settings go into agent.env, or into the image.
ln -s /data/fleetlearn/agent.env "$root/etc/fleetlearn/agent.env"
ln -s /data/fleetlearn/certs "$root/etc/fleetlearn/certs"
ln -s /data/fleetlearn/aggregator-signing.pub.pem "$root/etc/fleetlearn/aggregator-signing.pub.pem"
cat > "$root/etc/systemd/system/fleetlearn-agent.service.d/10-vehicle-image.conf" <<'CONF'
# The vehicle image: this vehicle's settings and certificates are on the data partition (/data/fleetlearn).
# An unprovisioned vehicle (no agent.env yet) does not start the agent; provisioning and a reboot (or a start) do.
[Unit]
RequiresMountsFor=/data
ConditionPathExists=/data/fleetlearn/agent.env
CONF
# The service user, with fixed ids (a reproducible image; install.sh's useradd would pick the next free id).
grep -q '^fleetlearn-agent:' "$root/etc/passwd" || {
  echo 'fleetlearn-agent:x:990:990:FleetLearn edge agent:/var/lib/fleetlearn-agent:/usr/sbin/nologin' >> "$root/etc/passwd"
  echo 'fleetlearn-agent:x:990:' >> "$root/etc/group"
  echo 'fleetlearn-agent:!*:19000::::::' >> "$root/etc/shadow"
}
# RAUC on the vehicle: the slots and the keyring it verifies the next bundle with.
sed "s/@ARCH@/$arch/" "$here/system.conf" > "$root/etc/rauc/system.conf"
install -m 0644 "$keys/keyring.pem" "$root/etc/rauc/keyring.pem"
# Identity: the image's version in os-release (the install hook compares the next bundle's version with it).
printf '%s\n' 'IMAGE_ID=fleetlearn-vehicle' "IMAGE_VERSION=$version" "FLEETLEARN_COMMIT=$commit" >> "$root/usr/lib/os-release"
echo fleetlearn-vehicle > "$root/etc/hostname"
: > "$root/etc/machine-id" # empty: systemd makes one at first boot (a machine-id baked in would be every vehicle's)
rm -f "$root/var/lib/dbus/machine-id" "$root/etc/ssh/ssh_host_"* 2>/dev/null || true
rm -rf "$root/var/cache/ldconfig/aux-cache" "$root/var/log/"* "$root/tmp/"* "$root/var/tmp/"*
# Record the packages before the squashfs is made (dpkg's database is in it, this is the manifest's copy).
packages=$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Package}=${Version}\n' | sort)
# No time later than SOURCE_DATE_EPOCH (the files written above carry the build's clock).
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"
lap "rootfs staged"

# ---- squashfs image ------------------------------------------------------------------------------------------------
stem="fleetlearn-vehicle-$version-$arch"
image="$work/bundle/rootfs.img"
mkdir -p "$work/bundle"
# mksquashfs takes SOURCE_DATE_EPOCH (exported above) as the creation time and every file's time; sorted entries and
# -reproducible's fixed block order make the image a function of the tree alone. No xattrs (none are set in this tree,
# and the build host's must not leak in).
mksquashfs "$root" "$image" -comp zstd -Xcompression-level "$zstd_level" -b 256K -noappend -no-xattrs -reproducible \
  -quiet -no-progress >&2
image_sha=$(sha256sum "$image" | cut -d' ' -f1)
lap "squashfs image"

# ---- RAUC bundle ---------------------------------------------------------------------------------------------------
install -m 0755 "$here/hook.sh" "$work/bundle/hook.sh"
cat > "$work/bundle/manifest.raucm" <<MF
[update]
compatible=fleetlearn-vehicle-$arch
version=$version
build=$SOURCE_DATE_EPOCH-${commit:0:12}
description=FleetLearn vehicle image (fleetlearn-agent $agent_version)

[bundle]
format=verity

[hooks]
filename=hook.sh
hooks=install-check

[image.rootfs]
filename=rootfs.img
MF
rm -f "$out/$stem.raucb"
rauc bundle --cert="$keys/signing.crt" --key="$keys/signing.key" --keyring="$keys/keyring.pem" \
  "$work/bundle" "$out/$stem.raucb" >&2
lap "signed bundle"
# What a vehicle does first: verify the signature and the payload against the keyring.
rauc extract --keyring="$keys/keyring.pem" "$out/$stem.raucb" "$work/check" >/dev/null 2>&1 \
  || die "the bundle just built does not verify against $keys/keyring.pem"
cmp -s "$work/check/rootfs.img" "$image" || die "the image extracted from the bundle differs from the one built"
install -m 0644 "$image" "$out/$stem.rootfs.img"
install -m 0644 "$keys/keyring.pem" "$out/keyring.pem"
sed "s/@ARCH@/$arch/" "$here/system.conf" > "$out/system.conf"
bundle_sha=$(sha256sum "$out/$stem.raucb" | cut -d' ' -f1)
signer=$(openssl x509 -in "$keys/signing.crt" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
jq -n --arg name fleetlearn-vehicle --arg version "$version" --arg commit "$commit" --arg arch "$arch" \
  --arg compatible "fleetlearn-vehicle-$arch" --arg zstd "$zstd_level" --argjson epoch "$SOURCE_DATE_EPOCH" \
  --arg image "$stem.rootfs.img" --arg image_sha "$image_sha" --argjson image_bytes "$(stat -c %s "$image")" \
  --arg bundle "$stem.raucb" --arg bundle_sha "$bundle_sha" --argjson bundle_bytes "$(stat -c %s "$out/$stem.raucb")" \
  --arg base "$(basename "$base")" --arg base_sha "$(sha256sum "$base" | cut -d' ' -f1)" \
  --arg agent_version "$agent_version" --arg agent_sha "$agent_sha" --arg release "$release" --arg signer "$signer" \
  --arg keyring_sha "$(sha256sum "$keys/keyring.pem" | cut -d' ' -f1)" --arg packages "$packages" \
  '{name: $name, version: $version, commit: $commit, arch: $arch, compatible: $compatible, source_date_epoch: $epoch,
    image: {file: $image, sha256: $image_sha, bytes: $image_bytes, format: ("squashfs (zstd " + $zstd + ")")},
    bundle: {file: $bundle, sha256: $bundle_sha, bytes: $bundle_bytes, format: "RAUC verity", signer: $signer,
             keyring: "keyring.pem", keyring_sha256: $keyring_sha},
    base_rootfs: {file: $base, sha256: $base_sha},
    agent: {version: $agent_version, sha256: $agent_sha, path: ("/opt/fleetlearn-agent/releases/" + $release + "/fleetlearn-agent")},
    packages: ($packages | split("\n") | map(select(length > 0)))}' > "$out/$stem.manifest.json"
lap "done"
echo "image   $out/$stem.rootfs.img  sha256 $image_sha  $(stat -c %s "$image") bytes"
echo "bundle  $out/$stem.raucb  sha256 $bundle_sha  $(stat -c %s "$out/$stem.raucb") bytes"
echo "manifest $out/$stem.manifest.json; keyring $out/keyring.pem"
