#!/usr/bin/env bash
# Installs (or updates, or rolls back) the FleetLearn edge agent on a vehicle: the single-file binary as a release under
# /opt/fleetlearn-agent, the systemd unit, the config overlays, this vehicle's settings and its certificates.
# Idempotent: running it again with the same inputs changes nothing; a new binary becomes a new release and the one
# before stays as the rollback target. See edge-agent/README.md.
#
# usage: install.sh [options]
#   --binary PATH            fleetlearn-agent to install (default: beside this script, else out/<this machine's RID>/)
#   --vehicle-id ID          Agent:VehicleId = MQTT client id = certificate CN          (required on the first install)
#   --broker HOST[:PORT]     the fleet's MQTT broker (Mqtt:Host, Mqtt:Port)             (required on the first install)
#   --data-index N           VehicleData:Index, this vehicle's part of the stand-in data (required on the first install)
#   --fleet NAME             Mqtt:Fleet (topic prefix fleetlearn/v1/NAME/)
#   --set Section__Key=VALUE any other setting for agent.env (repeatable)
#   --certs DIR              ca.crt and ID.crt + ID.key (as broker-config/make-dev-ca.sh makes them) or vehicle.crt + vehicle.key
#   --aggregator-key PATH    the aggregator's plan-signing public key (aggregator-signing.pub.pem)
#   --development            also install appsettings.Development.json and set DOTNET_ENVIRONMENT=Development
#   --no-start               install and daemon-reload, but do not enable or (re)start the service
#   --rollback               make the previous release current again, and restart
#   --destdir DIR            install under DIR (packaging, CI): no user, no chown, no systemctl
#   --dry-run                print what would be done; change nothing
set -euo pipefail

name=fleetlearn-agent
user=fleetlearn-agent
here=$(cd "$(dirname "$0")" && pwd)

binary="" vehicle="" broker="" data_index="" fleet="" certs="" aggregator_key="" destdir=""
development=false start=true rollback=false dry=false
sets=()
die() { echo "install.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --vehicle-id) vehicle=${2:?--vehicle-id needs an id}; shift 2 ;;
    --broker) broker=${2:?--broker needs HOST[:PORT]}; shift 2 ;;
    --data-index) data_index=${2:?--data-index needs a number}; shift 2 ;;
    --fleet) fleet=${2:?--fleet needs a name}; shift 2 ;;
    --set) sets+=("${2:?--set needs Section__Key=VALUE}"); shift 2 ;;
    --certs) certs=${2:?--certs needs a folder}; shift 2 ;;
    --aggregator-key) aggregator_key=${2:?--aggregator-key needs a path}; shift 2 ;;
    --development) development=true; shift ;;
    --no-start) start=false; shift ;;
    --rollback) rollback=true; shift ;;
    --destdir) destdir=${2:?--destdir needs a folder}; shift 2 ;;
    --dry-run) dry=true; shift ;;
    -h|--help) sed -n '2,/^set -euo pipefail$/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (--help lists the options)" ;;
  esac
done

# Paths on the vehicle; D prefixes every one of them (empty on a vehicle).
D=${destdir%/}
opt=/opt/$name
etc=/etc/fleetlearn
state=/var/lib/$name
cache=/var/cache/$name
unit=/etc/systemd/system/$name.service
envfile=$etc/agent.env
if [ -n "$destdir" ] && ! $dry; then mkdir -p "$destdir" && D=$(cd "$destdir" && pwd) || die "cannot create --destdir $destdir"; fi
system=true # a real system: a user to create, owners to set, systemd to tell
if [ -n "$destdir" ] || $dry; then system=false; fi
if $system && [ "$(id -u)" -ne 0 ]; then die "run as root (or use --destdir / --dry-run)"; fi

say() { echo "install.sh: $*" >&2; }
# run CMD...: runs it, or prints it under --dry-run.
run() {
  if $dry; then printf '+'; printf ' %q' "$@"; printf '\n'; else "$@"; fi
}
# owner USER:GROUP PATH: chown on a real system only.
owner() { if $system; then chown "$1" "$2"; elif $dry; then printf '+ chown %q %q\n' "$1" "$2"; fi; }
# put MODE SRC DST: installs SRC as DST (through a rename) when the content differs; sets the mode either way.
changed=false
put() {
  if [ -f "$3" ] && cmp -s "$2" "$3"; then
    [ "$(stat -c %a "$3")" = "${1#0}" ] || run chmod "$1" "$3"
    return 0
  fi
  run install -m "$1" "$2" "$3.new"
  run mv -f "$3.new" "$3"
  changed=true
}
systemctl_() { if $system; then systemctl "$@"; else printf '+ systemctl%s  (skipped: %s)\n' "$(printf ' %q' "$@")" "$([ -n "$destdir" ] && echo DESTDIR || echo dry run)"; fi; }

# ---- rollback -------------------------------------------------------------------------------------------------------
if $rollback; then
  [ -L "$D$opt/previous" ] || die "no previous release to roll back to ($opt/previous does not exist)"
  cur=$(readlink "$D$opt/current") prev=$(readlink "$D$opt/previous")
  say "rolling back: $cur -> $prev"
  run ln -sfn "$prev" "$D$opt/current.new"
  run mv -Tf "$D$opt/current.new" "$D$opt/current"
  run ln -sfn "$cur" "$D$opt/previous.new"
  run mv -Tf "$D$opt/previous.new" "$D$opt/previous"
  run rm -rf "$D$cache"/* # the old release's unpacked native libraries
  if $start; then systemctl_ restart "$name"; fi
  say "current release: $(basename "$prev")"
  exit 0
fi

# ---- inputs ---------------------------------------------------------------------------------------------------------
if [ -z "$binary" ]; then
  case "$(uname -m)" in x86_64) rid=linux-x64 ;; aarch64|arm64) rid=linux-arm64 ;; *) rid=unknown ;; esac
  if [ -f "$here/$name" ]; then binary="$here/$name"; else binary="$here/out/$rid/$name"; fi
fi
[ -f "$binary" ] || die "no binary at $binary (run edge-agent/publish.sh, or pass --binary)"
bindir=$(cd "$(dirname "$binary")" && pwd)
if [ -f "$bindir/SHA256SUMS" ] && grep -q "  $(basename "$binary")\$" "$bindir/SHA256SUMS"; then
  (cd "$bindir" && grep "  $(basename "$binary")\$" SHA256SUMS | sha256sum -c --quiet -) || die "$binary does not match $bindir/SHA256SUMS"
fi
sha=$(sha256sum "$binary" | cut -d' ' -f1)
version=unknown
if [ -f "$bindir/manifest.json" ]; then
  version=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$bindir/manifest.json" | head -n 1)
fi
# One folder per content: the same binary again is the same release, another one never overwrites it.
release="${version:-unknown}-${sha:0:12}"
release=${release//[^A-Za-z0-9._+-]/_}

for f in appsettings.json fleetlearn-agent.service; do [ -f "$here/$f" ] || die "missing $here/$f"; done
[ -z "$aggregator_key" ] || [ -f "$aggregator_key" ] || die "no aggregator key at $aggregator_key"
# The agent refuses to start without a P-256 public key in PEM; refuse it here, before anything is installed.
if [ -n "$aggregator_key" ]; then
  grep -q -- "-----BEGIN PUBLIC KEY-----" "$aggregator_key" \
    && openssl pkey -pubin -in "$aggregator_key" -noout -text 2>/dev/null | grep -q "NIST CURVE: P-256" \
    || die "--aggregator-key $aggregator_key is not a P-256 public key in PEM (expected aggregator-signing.pub.pem as the aggregator writes it)"
fi
if [ -n "$data_index" ]; then [[ "$data_index" =~ ^[0-9]+$ ]] || die "--data-index must be a number"; fi
if [ -n "$vehicle" ]; then [[ "$vehicle" =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "--vehicle-id '$vehicle' is not a valid vehicle id"; fi
for s in "${sets[@]}"; do [[ "$s" =~ ^[A-Za-z0-9_]+__[A-Za-z0-9_]+=.*$ ]] || die "--set '$s' is not Section__Key=VALUE"; done

# The vehicle id for the certificates: the one given, else the one already installed.
if [ -z "$vehicle" ] && [ -f "$D$envfile" ]; then vehicle=$(sed -n 's/^Agent__VehicleId=//p' "$D$envfile" | tail -n 1); fi
if [ ! -f "$D$envfile" ]; then
  missing=()
  [ -n "$vehicle" ] || missing+=(--vehicle-id)
  [ -n "$broker" ] || missing+=(--broker)
  [ -n "$data_index" ] || missing+=(--data-index)
  [ ${#missing[@]} -eq 0 ] || die "first install: ${missing[*]} required ($envfile does not exist yet)"
fi

cert_src="" key_src=""
if [ -n "$certs" ]; then
  [ -f "$certs/ca.crt" ] || die "no ca.crt in $certs"
  if [ -n "$vehicle" ] && [ -f "$certs/$vehicle.crt" ]; then cert_src="$certs/$vehicle.crt" key_src="$certs/$vehicle.key"
  else cert_src="$certs/vehicle.crt" key_src="$certs/vehicle.key"; fi
  [ -f "$cert_src" ] && [ -f "$key_src" ] || die "no ${vehicle:-vehicle}.crt and .key (nor vehicle.crt and .key) in $certs"
  if command -v openssl >/dev/null; then
    # The broker takes the certificate's CN as the username its ACL grants vehicles/%u/ to.
    cn=$(openssl x509 -in "$cert_src" -noout -subject -nameopt RFC2253 | sed -n 's/^subject=.*CN=\([^,]*\).*/\1/p')
    [ -z "$vehicle" ] || [ "$cn" = "$vehicle" ] || die "$cert_src is issued to CN=$cn, not to vehicle $vehicle"
    [ "$(openssl x509 -in "$cert_src" -noout -pubkey)" = "$(openssl pkey -in "$key_src" -pubout)" ] || die "$key_src is not the key of $cert_src"
    openssl verify -CAfile "$certs/ca.crt" "$cert_src" >/dev/null || die "$cert_src is not signed by $certs/ca.crt"
  else
    say "openssl not found: certificates not checked here (the agent checks them at start)"
  fi
fi

# ---- user and folders -----------------------------------------------------------------------------------------------
if $system; then
  if ! getent passwd "$user" >/dev/null; then
    say "creating system user $user"
    useradd --system --user-group --home-dir "$state" --no-create-home --shell /usr/sbin/nologin "$user"
  fi
elif $dry; then
  printf '+ useradd --system --user-group --home-dir %q --no-create-home --shell /usr/sbin/nologin %q  (if missing)\n' "$state" "$user"
fi
run install -d -m 0755 "$D$opt" "$D$opt/releases" "$D$etc" "$D$(dirname "$unit")"
run install -d -m 0750 "$D$etc/certs" "$D$state" "$D$cache"
owner "root:$user" "$D$etc/certs"
owner "$user:$user" "$D$state"
owner "$user:$user" "$D$cache"

# ---- release --------------------------------------------------------------------------------------------------------
rel="$D$opt/releases/$release"
if [ -f "$rel/$name" ] && [ "$(sha256sum "$rel/$name" | cut -d' ' -f1)" = "$sha" ]; then
  say "release $release already installed"
else
  say "installing release $release"
  run install -d -m 0755 "$rel"
  for f in manifest.json SHA256SUMS README.md; do
    if [ -f "$bindir/$f" ]; then run install -m 0644 "$bindir/$f" "$rel/$f"; fi
  done
  if [ ! -f "$bindir/README.md" ] && [ -f "$here/README.md" ]; then run install -m 0644 "$here/README.md" "$rel/README.md"; fi
  # The binary last: a release folder with a binary is complete.
  run install -m 0755 "$binary" "$rel/$name.new"
  run mv -f "$rel/$name.new" "$rel/$name"
fi
current=$(readlink "$D$opt/current" 2>/dev/null || true)
if [ "$current" != "releases/$release" ]; then
  changed=true
  # previous = the release that was current; both links are swapped with rename(2), never left half-made.
  if [ -n "$current" ]; then
    run ln -sfn "$current" "$D$opt/previous.new"
    run mv -Tf "$D$opt/previous.new" "$D$opt/previous"
  fi
  run ln -sfn "releases/$release" "$D$opt/current.new"
  run mv -Tf "$D$opt/current.new" "$D$opt/current"
  run rm -rf "$D$cache"/* # the release before's unpacked native libraries
  # Keep the current and previous releases and the newest two others; older ones go.
  if [ -d "$D$opt/releases" ] && ! $dry; then
    keep_prev=$(readlink "$D$opt/previous" 2>/dev/null || true)
    ls -1t "$D$opt/releases" | tail -n +5 | while read -r old; do
      [ "releases/$old" = "releases/$release" ] || [ "releases/$old" = "$keep_prev" ] || rm -rf "$D$opt/releases/$old"
    done
  fi
fi

# ---- configuration --------------------------------------------------------------------------------------------------
# appsettings.json holds the shipped defaults and is replaced on every install; a fleet's own settings go in
# appsettings.Production.json (never touched here), a vehicle's in agent.env.
put 0644 "$here/appsettings.json" "$D$etc/appsettings.json"
if $development; then put 0644 "$here/appsettings.Development.json" "$D$etc/appsettings.Development.json"; fi

# agent.env: this vehicle's Section__Key=value lines (systemd EnvironmentFile). Given keys are set, others kept.
env_settings=()
[ -z "$vehicle" ] || env_settings+=("Agent__VehicleId=$vehicle")
if [ -n "$broker" ]; then
  if [[ "$broker" =~ ^(.+):([0-9]+)$ ]]; then env_settings+=("Mqtt__Host=${BASH_REMATCH[1]}" "Mqtt__Port=${BASH_REMATCH[2]}")
  else env_settings+=("Mqtt__Host=$broker"); fi
fi
[ -z "$fleet" ] || env_settings+=("Mqtt__Fleet=$fleet")
[ -z "$data_index" ] || env_settings+=("VehicleData__Index=$data_index")
if $development; then env_settings+=("DOTNET_ENVIRONMENT=Development"); fi
env_settings+=("${sets[@]}")
new_env=$(mktemp)
trap 'rm -f "$new_env"' EXIT
if [ -f "$D$envfile" ]; then
  cp "$D$envfile" "$new_env"
else
  printf '%s\n' "# This vehicle's FleetLearn agent settings (Section__Key=value; systemd EnvironmentFile)." \
    "# Written by install.sh; edit, then: systemctl restart $name" > "$new_env"
fi
for kv in "${env_settings[@]}"; do # replaced where it stands, else appended
  KV="$kv" awk 'BEGIN { kv = ENVIRON["KV"]; key = substr(kv, 1, index(kv, "=")) }
    substr($0, 1, length(key)) == key { if (!done) print kv; done = 1; next } { print }
    END { if (!done) print kv }' "$new_env" > "$new_env.tmp"
  mv "$new_env.tmp" "$new_env"
done
if $dry && ! { [ -f "$D$envfile" ] && cmp -s "$new_env" "$D$envfile"; }; then
  echo "+ write $envfile:"; sed 's/^/    /' "$new_env"
fi
put 0600 "$new_env" "$D$envfile" # systemd reads it as root and hands the agent the values; the agent never opens it

# ---- certificates and the aggregator's key --------------------------------------------------------------------------
if [ -n "$certs" ]; then
  put 0644 "$certs/ca.crt" "$D$etc/certs/ca.crt"
  put 0644 "$cert_src" "$D$etc/certs/vehicle.crt"
  put 0640 "$key_src" "$D$etc/certs/vehicle.key"
  owner "root:$user" "$D$etc/certs/vehicle.key"
fi
if [ -n "$aggregator_key" ]; then put 0644 "$aggregator_key" "$D$etc/aggregator-signing.pub.pem"; fi

# ---- systemd --------------------------------------------------------------------------------------------------------
put 0644 "$here/fleetlearn-agent.service" "$D$unit"
systemctl_ daemon-reload
if $start; then
  systemctl_ enable "$name"
  if ! $system; then
    systemctl_ restart "$name"
  elif $changed || ! systemctl is-active --quiet "$name"; then
    # Type=notify: restart returns once the agent reported ready, or fails when its settings were refused.
    if ! systemctl restart "$name"; then
      say "$name did not start; see: journalctl -u $name -n 50 --no-pager   (previous release: install.sh --rollback)"
      exit 1
    fi
  fi
fi
say "done: release $release$([ -n "$destdir" ] && echo " under $destdir")$($changed || echo ' (nothing changed)')"
