#!/usr/bin/env bash
# Builds (or takes from the cache) a Debian root filesystem tarball with mmdebstrap: variant minbase plus the packages
# listed in a file, no Recommends, without documentation, manual pages, translations and the Mesa GPU drivers that
# ffmpeg's dependencies pull in (a vehicle's agent decodes video headless). The tarball is cached under its key: the
# sha256 of the package list, suite, architecture, mirror, exclusions and this script's version, so a CI run only
# builds it when one of them changes. Prints the tarball's path on stdout.
#
# usage: firmware-images/rootfs.sh --packages FILE [--packages FILE ...] [--arch amd64|arm64] [--suite bookworm] [--mirror URL] [--cache DIR]
#   FLEETLEARN_CACHE (default ~/.cache/fleetlearn) is the cache's root; SOURCE_DATE_EPOCH fixes the tarball's times.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
packages_files=() arch="" suite=bookworm mirror="" cache="${FLEETLEARN_CACHE:-$HOME/.cache/fleetlearn}/rootfs"
die() { echo "rootfs.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --packages) packages_files+=("${2:?--packages needs a file}"); shift 2 ;;
    --arch) arch=${2:?--arch needs amd64 or arm64}; shift 2 ;;
    --suite) suite=${2:?--suite needs a name}; shift 2 ;;
    --mirror) mirror=${2:?--mirror needs a URL}; shift 2 ;;
    --cache) cache=${2:?--cache needs a folder}; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (--help lists the options)" ;;
  esac
done
[ ${#packages_files[@]} -gt 0 ] || die "--packages FILE is required"
for f in "${packages_files[@]}"; do [ -f "$f" ] || die "no package list at $f"; done
[ -n "$arch" ] || arch=$(dpkg --print-architecture)
case "$arch" in amd64|arm64) ;; *) die "--arch '$arch' is not amd64 or arm64" ;; esac
if [ -z "$mirror" ]; then
  # The mirror apt uses here (deb822 URIs: or a one-line deb entry), else Debian's CDN.
  mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\/*\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
  [ -n "$mirror" ] || mirror=$(sed -n 's/^deb  *\(\[[^]]*\] *\)\{0,1\}\(http[^ ]*\/debian\/*\) .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n 1)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi
bash "$here/../scripts/install-deps.sh" mmdebstrap >&2 || true
command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (apt-get install mmdebstrap)"
if [ "$arch" != "$(dpkg --print-architecture)" ]; then
  # A foreign architecture runs its maintainer scripts under qemu user-mode emulation (binfmt_misc).
  bash "$here/../scripts/install-deps.sh" qemu-user-static binfmt-support >&2 || true
fi

packages=$(cat "${packages_files[@]}" | sed 's/#.*//' | tr -s ' \t\n' '\n' | sed '/^$/d' | sort -u | paste -sd, -)
[ -n "$packages" ] || die "${packages_files[*]} list no package"
excludes=(
  '/usr/share/doc/*' '/usr/share/man/*' '/usr/share/info/*' '/usr/share/locale/*' '/usr/share/lintian/*'
  '/usr/lib/*/dri/*' '/usr/lib/*/libLLVM*' '/usr/lib/*/libz3.so*' '/usr/lib/*/libvulkan_*.so'
)
script_version=1
key=$(printf '%s\n' "v$script_version" "$suite" "$arch" "$mirror" "$packages" "${excludes[@]}" | sha256sum | cut -c1-16)
tarball="$cache/$suite-$arch-$key.tar"
if [ -f "$tarball" ]; then
  echo "rootfs.sh: cached $tarball" >&2
  echo "$tarball"; exit 0
fi
mkdir -p "$cache"
# One build per key at a time: a second caller waits for the first and takes its tarball.
exec 9>"$cache/.lock-$key"
flock 9
if [ -f "$tarball" ]; then
  echo "rootfs.sh: cached $tarball" >&2
  echo "$tarball"; exit 0
fi
partial="$cache/.partial-$$-$key.tar" # mmdebstrap picks the format from the extension
trap 'rm -f "$partial"' EXIT
dpkgopts=()
for e in "${excludes[@]}"; do dpkgopts+=(--dpkgopt="path-exclude=$e"); done
dpkgopts+=(--dpkgopt='path-include=/usr/share/doc/*/copyright') # the licences stay
echo "rootfs.sh: mmdebstrap $suite $arch: $packages (mirror $mirror)" >&2
start=$(date +%s)
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date +%s)} mmdebstrap --variant=minbase --mode=root --format=tar --arch="$arch" \
  --aptopt='APT::Install-Recommends "false"' "${dpkgopts[@]}" --include="$packages" \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log "$1"/var/log/apt/*' \
  "$suite" "$partial" "$mirror" >&2
[ "$(stat -c %s "$partial")" -gt 1000000 ] || die "mmdebstrap left no root filesystem in $partial"
mv "$partial" "$tarball"
echo "rootfs.sh: built $tarball ($(stat -c %s "$tarball") bytes) in $(( $(date +%s) - start )) s" >&2
echo "$tarball"
