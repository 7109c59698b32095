#!/usr/bin/env bash
# Exits 1 when the CRL expires within DAYS days (default 7) or has expired, 2 when it cannot be read, 0 otherwise.
# Usage: check-crl.sh [CRL_FILE] [DAYS]   (default: certs/ca.crl 7). Run it from monitoring: renew with renew-crl.sh.
set -euo pipefail
crl=${1:-certs/ca.crl}; days=${2:-7}
[[ "$days" =~ ^[0-9]+$ ]] || { echo "check-crl.sh: DAYS must be a whole number, not '$days'." >&2; exit 2; }
if ! next=$(openssl crl -in "$crl" -noout -nextupdate 2>/dev/null); then
  echo "check-crl.sh: cannot read the CRL '$crl'." >&2; exit 2
fi
next=${next#nextUpdate=}
left=$(( $(date -u -d "$next" +%s) - $(date -u +%s) ))
if (( left <= 0 )); then
  echo "check-crl.sh: $crl expired at $next: the broker refuses every client. Renew it now (renew-crl.sh)."; exit 1
elif (( left <= days * 86400 )); then
  echo "check-crl.sh: $crl expires at $next, in $(( left / 3600 )) h (under $days days): renew it (renew-crl.sh)."; exit 1
fi
echo "check-crl.sh: $crl is valid until $next ($(( left / 86400 )) days)."
