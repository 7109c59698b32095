#!/bin/sh
# RAUC bundle hook (runs on the vehicle, from the bundle, before anything is written).
# install-check: replaces RAUC's own compatible check, so it checks the compatible itself, then refuses a rollback: a
# bundle whose version is older than the running system's IMAGE_VERSION (/etc/os-release) is rejected (exit 10, the
# reason on stderr, which RAUC reports). The same version again is allowed (a reinstall of the other slot).
# FLEETLEARN_OS_RELEASE overrides the os-release path (tests).
set -u
case "${1:-}" in
  install-check)
    if [ "${RAUC_MF_COMPATIBLE:-}" != "${RAUC_SYSTEM_COMPATIBLE:-}" ]; then
      echo "bundle compatible '${RAUC_MF_COMPATIBLE:-}' does not match this system's '${RAUC_SYSTEM_COMPATIBLE:-}'" >&2
      exit 10
    fi
    os_release=${FLEETLEARN_OS_RELEASE:-/etc/os-release}
    installed=$(sed -n 's/^IMAGE_VERSION="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$os_release" 2>/dev/null | tail -n 1)
    if [ -z "$installed" ]; then
      echo "no IMAGE_VERSION in $os_release: cannot tell the installed version, refusing the bundle" >&2
      exit 10
    fi
    if [ -z "${RAUC_MF_VERSION:-}" ]; then
      echo "the bundle has no version: refusing it" >&2
      exit 10
    fi
    if dpkg --compare-versions "$RAUC_MF_VERSION" lt "$installed"; then
      echo "rollback refused: bundle version $RAUC_MF_VERSION is older than the installed $installed" >&2
      exit 10
    fi
    ;;
  *) ;;
esac
exit 0
