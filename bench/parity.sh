#!/usr/bin/env bash
# Transport parity (issue 12): the in-process simulator and the MQTT simulation (real agents and aggregator over the
# embedded broker) run the same fleet with the same seed under over-selection, dropout mid-round and availability, and
# must end with the same model. Runs the two configurations of the issue on both transports, prints each model_sha256
# and PASS/FAIL per configuration; exits 1 on any mismatch. Extra arguments go to every run (e.g. --seed 7).
# Usage: bench/parity.sh [simulate options ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh dataset-fashion-mnist >&2
fl="bash scripts/fleetlearn"   # builds when needed
common=(--vehicles 60 --cohort 20 --rounds 4 --over-select 0.3 --dropout 0.1 --availability 0.8 --clip 1 --codec rot+q8)
configs=("--secagg plus --dp distributed" "--secagg off --dp central")
status=0
start=$SECONDS
for config in "${configs[@]}"; do
  read -r -a extra <<<"$config"
  declare -A hash=()
  for transport in inproc mqtt; do
    t0=$SECONDS
    summary=$($fl simulate "${common[@]}" "${extra[@]}" "$@" --transport "$transport" --json 2>/dev/null | tail -n 1)
    hash[$transport]=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["model_sha256"])' "$summary")
    printf '%-32s %-7s model_sha256 %s  (%ss)\n' "$config" "$transport" "${hash[$transport]}" "$((SECONDS - t0))"
  done
  if [ "${hash[inproc]}" = "${hash[mqtt]}" ]; then
    echo "PASS  $config"
  else
    echo "FAIL  $config: the transports disagree"
    status=1
  fi
  unset hash
done
echo "parity: $((SECONDS - start)) s in all"
exit $status
