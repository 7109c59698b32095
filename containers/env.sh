# Sourced by FleetLearn's container scripts: Podman's settings for this repository, and the podman command with them.
# Installs Podman and its helpers when missing (Debian packages).
fleetlearn_containers_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CONTAINERS_CONF="$fleetlearn_containers_dir/containers.conf"
fleetlearn_podman_deps() {
  bash "$fleetlearn_containers_dir/../scripts/install-deps.sh" podman runc uidmap slirp4netns fuse-overlayfs jq "$@"
}
# podman with the flags the configuration file also sets (older Podman versions read some of them only from flags).
# netavark prints "failed to connect to syslog: Initialization" on a host without syslog: dropped, everything else kept.
pm() {
  podman --runtime runc --cgroup-manager=cgroupfs "$@" 2> >(grep -v '^failed to connect to syslog: Initialization$' >&2)
}
