#!/usr/bin/env bash
# Creates a development firmware release CA and a bundle-signing certificate issued by it:
#   release-ca.key, release-ca.crt   the CA (in production its key stays offline, on an HSM)
#   signing.key, signing.crt         what build.sh signs RAUC bundles with
#   keyring.pem                      what a vehicle verifies bundles against (= release-ca.crt; /etc/rauc/keyring.pem)
# Usage: make-signing-keys.sh DIR [CN prefix]   (an existing DIR with keys is left as it is)
# Separate from broker-config/make-dev-ca.sh on purpose: a device (mTLS) CA must not be able to sign firmware.
set -euo pipefail
out=${1:?usage: make-signing-keys.sh DIR [CN prefix]}
prefix=${2:-FleetLearn dev}
mkdir -p "$out"
cd "$out"
if [ -f signing.key ] && [ -f signing.crt ] && [ -f keyring.pem ]; then
  echo "make-signing-keys.sh: keys already in $(pwd)" >&2; exit 0
fi
umask 077
openssl ecparam -name prime256v1 -genkey -noout -out release-ca.key
openssl req -x509 -new -key release-ca.key -sha256 -days 3650 -subj "/O=FleetLearn/CN=$prefix firmware release CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out release-ca.crt 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out signing.key
openssl req -new -key signing.key -subj "/O=FleetLearn/CN=$prefix firmware signing" -out signing.csr 2>/dev/null
# No extendedKeyUsage: RAUC 1.8 checks the certificate purpose "smimesign" by default, which an EKU limited to
# codeSigning would fail; keyUsage digitalSignature limits it to signing.
openssl x509 -req -in signing.csr -CA release-ca.crt -CAkey release-ca.key -CAcreateserial -days 1825 -sha256 \
  -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature") -out signing.crt 2>/dev/null
rm -f signing.csr release-ca.srl
cp release-ca.crt keyring.pem
chmod 0644 release-ca.crt signing.crt keyring.pem
echo "make-signing-keys.sh: release CA, signing certificate and keyring.pem in $(pwd)" >&2
