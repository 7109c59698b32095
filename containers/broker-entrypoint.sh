#!/bin/sh
# Starts Mosquitto with broker-config/: copies the mounted certificates where mosquitto.conf expects them (certs/,
# readable by the mosquitto user it drops to), then runs it in the foreground.
set -eu
src=${FLEETLEARN_BROKER_CERTS:-/run/fleetlearn/certs}
dst=/etc/mosquitto/fleetlearn/certs
mkdir -p "$dst"
for f in ca.crt ca.crl broker.crt broker.key; do
  if [ ! -f "$src/$f" ]; then
    echo "fleetlearn-broker: $src/$f is missing (mount the folder broker-config/make-dev-ca.sh made at $src)" >&2
    exit 78
  fi
  cp "$src/$f" "$dst/$f"
done
chown -R mosquitto:mosquitto "$dst" /var/lib/mosquitto
chmod 0600 "$dst/broker.key"
exec mosquitto -c /etc/mosquitto/fleetlearn/mosquitto.conf
