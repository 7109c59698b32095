#!/usr/bin/env bash
# Creates a development device CA, a broker certificate, an aggregator certificate, per-vehicle certificates and an
# (empty) CRL under ./certs. Usage: make-dev-ca.sh [OUT_DIR] [vehicle-id ...]   (default: certs car-0 car-1)
# Production: keep the CA key offline, revoke with `openssl ca -revoke` and regenerate the CRL (renew-crl.sh). The CRL
# expires after default_crl_days (30): renew it daily, or Mosquitto refuses every client once it is stale (check-crl.sh).
set -euo pipefail
out=${1:-certs}; shift || true
vehicles=("$@"); [ ${#vehicles[@]} -gt 0 ] || vehicles=(car-0 car-1)
mkdir -p "$out"; cd "$out"
days=825
# Private keys are created 0600 (umask in a subshell), never readable by others even for a moment.
genkey() { (umask 077; openssl ecparam -name prime256v1 -genkey -noout -out "$1"); }
if [ ! -f ca.key ]; then
  genkey ca.key
  openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=FleetLearn dev device CA" -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  : > index.txt; echo 1000 > serial; echo 1000 > crlnumber
  cat > ca.cnf <<CNF
[ ca ]
default_ca = dev
[ dev ]
database = index.txt
serial = serial
crlnumber = crlnumber
default_md = sha256
default_crl_days = 30
certificate = ca.crt
private_key = ca.key
CNF
fi
issue() { # name cn ext
  genkey "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days $days -sha256 -out "$1.crt" -extfile <(printf '%s\n' "$3")
  rm -f "$1.csr"; chmod 600 "$1.key"
}
issue broker localhost "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
issue aggregator aggregator "extendedKeyUsage=clientAuth"
for v in "${vehicles[@]}"; do issue "$v" "$v" "extendedKeyUsage=clientAuth"; done
openssl ca -config ca.cnf -gencrl -out ca.crl 2>/dev/null
# Mosquitto started as root drops to user "mosquitto" before it reads its files: give that group read access to the
# broker's key (0640) and keep every other key 0600. Run as another user, Mosquitto stays that user and reads its own 0600 key.
if [ "$(id -u)" -eq 0 ] && getent group mosquitto >/dev/null; then
  chgrp mosquitto broker.key && chmod 640 broker.key
fi
echo "certificates in $(pwd): ca.crt ca.crl broker.* aggregator.* ${vehicles[*]/%/.*}"
