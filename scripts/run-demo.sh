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

# The user's options, each once: "--name value" (the value is the next word unless that starts with --), "--name=value"
# or a flag "--name"; a later occurrence replaces an earlier one. Entries are kept as "name<US>word[<US>word]".
us=$'\x1f'
entries=()
add() { # name words...
  local name=$1 kept=() e; shift
  for e in ${entries[@]+"${entries[@]}"}; do [ "${e%%"$us"*}" = "$name" ] || kept+=("$e"); done
  local IFS="$us"; entries=(${kept[@]+"${kept[@]}"} "$name$us$*")
}
user=("$@")
for ((i = 0; i < ${#user[@]}; i++)); do
  arg=${user[i]}
  case "$arg" in
    --*=*) add "${arg%%=*}" "$arg" ;;
    --*) if ((i + 1 < ${#user[@]})) && [[ "${user[i + 1]}" != --* ]]; then add "$arg" "$arg" "${user[i + 1]}"; i=$((i + 1)); else add "$arg" "$arg"; fi ;;
    *) echo "run-demo.sh: '$arg' is not an option (options start with --; see: bash scripts/fleetlearn simulate --help)" >&2; exit 2 ;;
  esac
done
declare -A given=()
final=()
for e in ${entries[@]+"${entries[@]}"}; do
  given["${e%%"$us"*}"]=1
  IFS="$us" read -r -a words <<<"$e"
  final+=("${words[@]:1}")
done
# The defaults the user did not override (every default is one --name value pair).
args=()
for ((i = 0; i < ${#defaults[@]}; i += 2)); do
  [ -n "${given[${defaults[i]}]:-}" ] || args+=("${defaults[i]}" "${defaults[i + 1]}")
done

# RUN_DEMO_PRINT=1 prints the merged options instead of running (scripts/doc-commands.sh tests the merge with it).
[ -z "${RUN_DEMO_PRINT:-}" ] || { printf "%s\n" "${args[@]}" ${final[@]+"${final[@]}"}; exit 0; }
exec bash scripts/fleetlearn simulate "${args[@]}" ${final[@]+"${final[@]}"} --replace-out
