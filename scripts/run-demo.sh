#!/usr/bin/env bash
# The main job: installs what it needs, builds, and runs a fleet of 100 vehicles over MQTT on this machine — the
# embedded broker, the aggregator worker and one edge-agent worker per vehicle — learning the perception head with
# secure aggregation (SecAgg+), distributed differential privacy and an 8-bit codec. Ends with a summary and the
# report's path.
# Usage: scripts/run-demo.sh [simulate option ...]
# Any `fleetlearn simulate` option may be given; one the script also sets replaces the script's value (each option
# reaches simulate once), e.g. `--rounds 20` or `--secagg off --dp off`. The previous run's results in the output
# folder (runs/demo unless --out says otherwise) are replaced only once simulate has accepted the options.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh dataset-fashion-mnist

defaults=(--transport mqtt --broker embedded --vehicles 100 --cohort 50 --rounds 10 --local-epochs 1 --lr 0.1
  --dp distributed --clip 1 --noise-multiplier 1 --secagg plus --codec rot+q8 --out runs/demo)

# Names of the options the user gave (--name or --name=value).
declare -A given=()
for arg in "$@"; do
  case "$arg" in
    --) break ;;
    --*) given["${arg%%=*}"]=1 ;;
  esac
done
# The defaults the user did not override (every default is one --name value pair).
args=()
for ((i = 0; i < ${#defaults[@]}; i += 2)); do
  [ -n "${given[${defaults[i]}]:-}" ] || args+=("${defaults[i]}" "${defaults[i + 1]}")
done

exec bash scripts/fleetlearn simulate "${args[@]}" "$@" --replace-out
