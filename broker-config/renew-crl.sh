#!/usr/bin/env bash
# Issues a fresh CRL of the dev device CA in CERT_DIR, valid DAYS days (default 30, the CA's default_crl_days), and
# replaces ca.crl atomically. Usage: renew-crl.sh [CERT_DIR] [DAYS]   (default: certs 30)
# A CRL past its next update makes Mosquitto refuse every client, and the embedded broker too: run this daily (cron or a
# systemd timer) and alert on check-crl.sh. Mosquitto reads crlfile when it starts: restart it after a renewal; the
# embedded broker (fleetlearn broker --crl) reads the file again on the next connection.
set -euo pipefail
dir=${1:-certs}; days=${2:-30}
[[ "$days" =~ ^[1-9][0-9]*$ ]] || { echo "renew-crl.sh: DAYS must be a positive whole number, not '$days'." >&2; exit 2; }
cd "$dir"
if [ ! -f ca.cnf ] || [ ! -f ca.key ] || [ ! -f ca.crt ]; then
  echo "renew-crl.sh: $(pwd) holds no dev CA (ca.cnf, ca.key, ca.crt); create it with make-dev-ca.sh." >&2; exit 2
fi
openssl ca -config ca.cnf -gencrl -crldays "$days" -out ca.crl.new 2>/dev/null
mv -f ca.crl.new ca.crl
echo "renewed $(pwd)/ca.crl: $(openssl crl -in ca.crl -noout -nextupdate)"
