#!/usr/bin/env bash
# A FleetLearn fleet in containers: Mosquitto (broker-config/: mutual TLS, per-vehicle ACL), the aggregator and N edge
# agents (the vehicle binary), each its own container on a Podman network made for the run, each agent with its own
# volume (LiteDB outbox, device key, ledger), certificate (CN = vehicle id) and part of the data. Waits for R rounds,
# prints one line per round and a `done:` summary like `fleetlearn simulate`, then removes everything it made (also
# on Ctrl-C or an error). Builds the images first when they are missing (containers/build-images.sh).
#
# usage: scripts/container-fleet.sh --agents N --rounds R [options]
#   --cohort K              vehicles per round (default N)           --min-participants M  (default: K, 3/4 of K with --chaos)
#   --secagg off|full|plus  secure aggregation (default off)          --dp off|central|distributed  (default off)
#   --clip C                clip norm / norm bound (default 1)        --noise-multiplier S  σ (default 1)
#   --codec CODEC           update codec (default none)               --model SPEC  (default 784-200-200-10)
#   --local-epochs E        (default 1)    --batch B (default 10)     --lr LR (default 0.1)
#   --phase-timeout S       seconds per secure-aggregation phase (default 60)
#   --eval-epsilon E        each vehicle's ε for one noised accuracy report (Agent:EvaluationEpsilon; charged to its own
#                           ledger). Without it, under DP vehicles report no accuracy and the lines show "—".
#   --chaos                 kill, pause and disconnect random agent containers during the run
#   --seed S                seed of the chaos choices and the partition (default 1)
#   --json                  one JSON object per round, and a JSON summary as the last stdout line
#   --keep                  leave the containers, network, volumes and run folder (printed) for inspection
#   --rebuild               rebuild the role images first (after a code change)
# Exit status: 0 when every round applied, 1 when a round aborted or the run failed, 2 on bad arguments.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
source "$repo/containers/env.sh"

agents="" rounds="" cohort="" min_participants="" secagg=off dp=off clip=1 noise=1 codec=none model=784-200-200-10
epochs=1 batch=10 lr=0.1 phase_timeout=60 chaos=false seed=1 json=false keep=false rebuild=false eval_epsilon=""
die() { echo "container-fleet.sh: $*" >&2; exit 2; }
num() { [[ "$2" =~ ^[0-9]+$ ]] || die "$1 '$2' is not a whole number"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --agents) agents=${2:?--agents needs a number}; num --agents "$agents"; shift 2 ;;
    --rounds) rounds=${2:?--rounds needs a number}; num --rounds "$rounds"; shift 2 ;;
    --cohort) cohort=${2:?--cohort needs a number}; num --cohort "$cohort"; shift 2 ;;
    --min-participants) min_participants=${2:?--min-participants needs a number}; num --min-participants "$min_participants"; shift 2 ;;
    --secagg) secagg=${2:?--secagg needs off, full or plus}; shift 2 ;;
    --dp) dp=${2:?--dp needs off, central or distributed}; shift 2 ;;
    --eval-epsilon) eval_epsilon=${2:?--eval-epsilon needs a number}; [[ "$eval_epsilon" =~ ^[0-9]*\.?[0-9]+$ ]] || die "--eval-epsilon '$eval_epsilon' is not a positive number"; shift 2 ;;
    --clip) clip=${2:?--clip needs a number}; shift 2 ;;
    --noise-multiplier) noise=${2:?--noise-multiplier needs a number}; shift 2 ;;
    --codec) codec=${2:?--codec needs a codec}; shift 2 ;;
    --model) model=${2:?--model needs layer widths}; shift 2 ;;
    --local-epochs) epochs=${2:?--local-epochs needs a number}; num --local-epochs "$epochs"; shift 2 ;;
    --batch) batch=${2:?--batch needs a number}; num --batch "$batch"; shift 2 ;;
    --lr) lr=${2:?--lr needs a number}; shift 2 ;;
    --phase-timeout) phase_timeout=${2:?--phase-timeout needs seconds}; num --phase-timeout "$phase_timeout"; shift 2 ;;
    --chaos) chaos=true; shift ;;
    --seed) seed=${2:?--seed needs a number}; num --seed "$seed"; shift 2 ;;
    --json) json=true; shift ;;
    --keep) keep=true; shift ;;
    --rebuild) rebuild=true; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (--help lists the options)" ;;
  esac
done
[ -n "$agents" ] || die "--agents N is required"
[ -n "$rounds" ] || die "--rounds R is required"
[ "$agents" -ge 1 ] && [ "$agents" -le 200 ] || die "--agents $agents: expected 1..200 (one container each)"
[ "$rounds" -ge 1 ] || die "--rounds $rounds: at least 1"
[ -n "$cohort" ] || cohort=$agents
[ "$cohort" -ge 1 ] && [ "$cohort" -le "$agents" ] || die "--cohort $cohort: expected 1..$agents (--agents)"
if [ -z "$min_participants" ]; then
  if $chaos; then min_participants=$(( (3 * cohort + 3) / 4 )); else min_participants=$cohort; fi
fi
[ "$min_participants" -ge 1 ] && [ "$min_participants" -le "$cohort" ] || die "--min-participants $min_participants: expected 1..$cohort (--cohort)"
case "$secagg" in off|full|plus|plus:*) ;; *) die "--secagg '$secagg': expected off, full or plus" ;; esac
case "$dp" in off|central|distributed) ;; *) die "--dp '$dp': expected off, central or distributed" ;; esac
[[ "$model" =~ ^784(-[0-9]+)+$ ]] || die "--model '$model': expected layer widths 784-…-10 (Fashion-MNIST pixels in)"
[ "$(id -u)" -eq 0 ] || die "run as root (rootful Podman)"

# Human-readable lines go to stdout, or to stderr with --json (stdout then carries only JSON, the summary last).
if $json; then exec 3>&2; else exec 3>&1; fi
say() { echo "$*" >&3; }
t_start=$(date +%s.%N)
elapsed() { awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# ---- images ----------------------------------------------------------------------------------------------------------
fleetlearn_podman_deps openssl >&2
need_build=$rebuild
for role in broker aggregator agent; do pm image exists "localhost/fleetlearn-$role:dev" || need_build=true; done
if $need_build; then
  say "container-fleet: building the images (containers/build-images.sh)"
  bash "$repo/containers/build-images.sh" >&3
fi

# ---- the run's network, folder and teardown ----------------------------------------------------------------------
run_id="fl$$"
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/fleetlearn-fleet.XXXXXX")
net="$run_id-net"
label="fleetlearn.run=$run_id"
chaos_pid=""
teardown() {
  local status=$?
  trap - EXIT INT TERM
  [ -z "$chaos_pid" ] || kill "$chaos_pid" 2>/dev/null || true
  if $keep; then
    say "kept: containers labelled $label, network $net, run folder $run_dir (remove: podman rm -f \$(podman ps -aq --filter label=$label); podman volume prune -f --filter label=$label; podman network rm $net)"
  else
    local ids; ids=$(pm ps -aq --filter "label=$label" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$ids" ] || pm rm -f -v -t 5 $ids >/dev/null 2>&1 || true
    pm volume ls -q --filter "label=$label" 2>/dev/null | xargs -r podman volume rm -f >/dev/null 2>&1 || true
    pm network rm -f "$net" >/dev/null 2>&1 || true
    rm -rf "$run_dir"
  fi
  exit "$status"
}
trap teardown EXIT
trap 'say "container-fleet: interrupted; tearing down"; exit 130' INT TERM

pm network create --label "$label" "$net" >/dev/null 2>"$run_dir/network.err" || { cat "$run_dir/network.err" >&2; die "podman network create $net failed"; }

# Certificates: the device CA, the broker, the aggregator, one per vehicle (CN = vehicle id = MQTT username).
vehicles=()
for ((i = 0; i < agents; i++)); do vehicles+=("car-$i"); done
bash "$repo/broker-config/make-dev-ca.sh" "$run_dir/certs" "${vehicles[@]}" >/dev/null 2>&1 \
  || die "broker-config/make-dev-ca.sh failed (openssl)"
# The aggregator's plan-signing key (P-256, PKCS#8), made here so that every agent pins its public key from the start.
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$run_dir/aggregator-signing.pem"
openssl ec -in "$run_dir/aggregator-signing.pem" -pubout -out "$run_dir/aggregator-signing.pub.pem" 2>/dev/null
mkdir -p "$run_dir/broker" "$run_dir/aggregator"
cp "$run_dir/certs/"{ca.crt,ca.crl,broker.crt,broker.key} "$run_dir/broker/"
cp "$run_dir/certs/"{ca.crt,aggregator.crt,aggregator.key} "$run_dir/aggregator/"
cp "$run_dir/aggregator-signing.pem" "$run_dir/aggregator/"
chown -R 991:991 "$run_dir/aggregator"; chmod 0700 "$run_dir/aggregator"

# ---- broker and aggregator -----------------------------------------------------------------------------------------
t_containers=$(date +%s.%N)
pm run -d --name "$run_id-broker" --label "$label" --network "$net" --network-alias broker \
  -v "$run_dir/broker:/run/fleetlearn/certs:ro" localhost/fleetlearn-broker:dev >/dev/null
pm volume create --label "$label" "$run_id-aggregator" >/dev/null
mqtt_tls=(-e Mqtt__Host=broker -e Mqtt__Port=8883 -e Mqtt__UseTls=true -e Mqtt__TlsServerName=localhost)
pm run -d --name "$run_id-aggregator" --label "$label" --network "$net" --network-alias aggregator \
  -p 127.0.0.1::8080 -v "$run_id-aggregator:/var/lib/fleetlearn-aggregator" -v "$run_dir/aggregator:/run/fleetlearn:ro" \
  "${mqtt_tls[@]}" -e Mqtt__ClientId=aggregator \
  -e Mqtt__CaFile=/run/fleetlearn/ca.crt -e Mqtt__CertFile=/run/fleetlearn/aggregator.crt -e Mqtt__KeyFile=/run/fleetlearn/aggregator.key \
  -e Aggregator__SigningKeyPath=/run/fleetlearn/aggregator-signing.pem -e Aggregator__DeviceCaFile=/run/fleetlearn/ca.crt -e Aggregator__Model="$model" \
  -e Aggregator__Rounds="$((rounds + 1))" -e Aggregator__CohortSize="$cohort" -e Aggregator__MinParticipants="$min_participants" \
  -e Aggregator__LocalEpochs="$epochs" -e Aggregator__Batch="$batch" -e Aggregator__LearningRate="$lr" \
  -e Aggregator__Seed="$seed" -e Aggregator__Codec="$codec" -e Aggregator__SecureAggregation="$secagg" \
  -e Aggregator__Privacy="$dp" -e Aggregator__NoiseMultiplier="$noise" -e Aggregator__ClipNorm="$clip" \
  -e Aggregator__PhaseTimeout="$(printf '00:%02d:%02d' $((phase_timeout / 60)) $((phase_timeout % 60)))" \
  -e Aggregator__HttpPort=8080 -e Aggregator__HttpHost='*' localhost/fleetlearn-aggregator:dev >/dev/null
http=$(pm port "$run_id-aggregator" 8080/tcp | head -n 1 | sed 's/^0\.0\.0\.0/127.0.0.1/')
[ -n "$http" ] || die "the aggregator's HTTP port was not published"

# ---- agents --------------------------------------------------------------------------------------------------------
start_agent() { # index
  local i=$1 v=car-$1 dir="$run_dir/agents/car-$1"
  mkdir -p "$dir/certs"
  cp "$run_dir/certs/ca.crt" "$dir/certs/ca.crt"
  cp "$run_dir/certs/$v.crt" "$dir/certs/vehicle.crt"
  cp "$run_dir/certs/$v.key" "$dir/certs/vehicle.key"
  cp "$run_dir/aggregator-signing.pub.pem" "$dir/aggregator-signing.pub.pem"
  chown -R 990:990 "$dir"; chmod 0750 "$dir/certs"; chmod 0640 "$dir/certs/vehicle.key"
  pm volume create --label "$label" "$run_id-$v" >/dev/null
  pm run -d --name "$run_id-$v" --label "$label" --label fleetlearn.role=agent --network "$net" \
    -v "$run_id-$v:/var/lib/fleetlearn-agent" -v "$dir/certs:/etc/fleetlearn/certs:ro" \
    -v "$dir/aggregator-signing.pub.pem:/etc/fleetlearn/aggregator-signing.pub.pem:ro" \
    "${mqtt_tls[@]}" -e Agent__VehicleId="$v" ${eval_epsilon:+-e Agent__EvaluationEpsilon="$eval_epsilon"} -e Agent__PinnedModelSpec="$model" -e Agent__Seed=$((seed * 1000 + i)) \
    -e VehicleData__Vehicles="$agents" -e VehicleData__Index="$i" -e VehicleData__Seed="$seed" \
    localhost/fleetlearn-agent:dev >/dev/null
}
for ((i = 0; i < agents; i++)); do start_agent "$i"; done
# Up = the aggregator answers /healthz and every agent container is running.
deadline=$(( $(date +%s) + 180 ))
until curl -fsS "http://$http/healthz" >/dev/null 2>&1; do
  if ! pm ps -q --filter "name=^$run_id-aggregator\$" --filter status=running | grep -q .; then
    pm logs --tail 20 "$run_id-aggregator" >&2 || true
    die "the aggregator container stopped (its last lines are above)"
  fi
  [ "$(date +%s)" -lt "$deadline" ] || { pm logs --tail 20 "$run_id-aggregator" >&2 || true; die "the aggregator did not answer on $http within 180 s"; }
  sleep 0.5
done
running=$(pm ps -q --filter "label=$label" --filter status=running | wc -l)
startup=$(awk -v a="$t_containers" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
say "container-fleet: $agents agents over Mosquitto (mutual TLS) on podman network $net, cohort $cohort per round (at least $min_participants), $rounds rounds, E=$epochs B=$batch lr=$lr, seed $seed"
say "model $model; codec $codec, secure aggregation $secagg, DP $dp$([ "$dp" = off ] || echo " σ=$noise C=$clip"); $running containers up in $startup s; aggregator http://$http"

# ---- chaos ---------------------------------------------------------------------------------------------------------
# From 10 s after the fleet is up, one disruption at a time, in turn kill, pause, disconnect, each on a random agent,
# with 8-15 s between them: kill (SIGKILL, restarted 5 s later on its volume: the round it was in counts it as a dropout, its
# outbox resends what it had), pause (15 s, podman pause) and network disconnect (15 s). One at a time is what secure
# aggregation with --min-participants below the cohort is sized for; overlapping ones (tried: a new one every 3-6 s)
# abort every round in MaskedInputCollection, and 4-8 s apart three kills fell into one round of 8 (5 noise shares < 6:
# aborted). A round with more dropouts than the cohort minus --min-participants is aborted, and the summary says so. Every action is appended to chaos.log and reported in the summary.
chaos_loop() {
  RANDOM=$seed
  local actions=(kill pause disconnect) n=0 i c at
  sleep 10
  while true; do
    i=$((RANDOM % agents)) c="$run_id-car-$i" at=$(elapsed)
    case "${actions[$((n % 3))]}" in
      kill) pm kill -s KILL "$c" >/dev/null 2>&1 && echo "$at kill car-$i" >> "$run_dir/chaos.log"
        sleep 5; pm start "$c" >/dev/null 2>&1 || true ;;
      pause) pm pause "$c" >/dev/null 2>&1 && echo "$at pause car-$i" >> "$run_dir/chaos.log"
        sleep 15; pm unpause "$c" >/dev/null 2>&1 || true ;;
      disconnect) pm network disconnect "$net" "$c" >/dev/null 2>&1 && echo "$at disconnect car-$i" >> "$run_dir/chaos.log"
        sleep 15; pm network connect "$net" "$c" >/dev/null 2>&1 || true ;;
    esac
    n=$((n + 1))
    sleep $((8 + RANDOM % 8))
  done
}
: > "$run_dir/chaos.log"
if $chaos; then chaos_loop & chaos_pid=$!; fi

# ---- rounds ------------------------------------------------------------------------------------------------------
bytes() { awk -v b="$1" 'BEGIN { if (b < 1024) printf "%d B", b; else if (b < 1048576) printf "%.1f KiB", b / 1024;
  else if (b < 1073741824) printf "%.1f MiB", b / 1048576; else printf "%.2f GiB", b / 1073741824 }'; }
# A series by name, with or without labels ("name{}" or "name{otel_scope_name=…}" from OpenTelemetry's exporter); the first
# of the names given that is present.
metric() { awk -v names="$*" 'BEGIN { n = split(names, want, " ") } /^[^#]/ { line = $0; sub(/\{[^}]*\}/, "", line); split(line, f, " "); for (i = 1; i <= n; i++) if (f[1] == want[i] && !(i in got)) got[i] = f[2] }
  END { for (i = 1; i <= n; i++) if (i in got) { printf "%.0f", got[i]; exit } printf "0" }' "$run_dir/metrics"; }
metric_f() { awk -v names="$*" 'BEGIN { n = split(names, want, " ") } /^[^#]/ { line = $0; sub(/\{[^}]*\}/, "", line); split(line, f, " "); for (i = 1; i <= n; i++) if (f[1] == want[i] && !(i in got)) got[i] = f[2] }
  END { for (i = 1; i <= n; i++) if (i in got) { print got[i]; exit } print "NaN" }' "$run_dir/metrics"; }
# Mean accuracy that the agents' own evaluations give model V: each vehicle scores every global model on its hold-out
# frames when the model reaches it with the next round's plan. That is why the aggregator runs one round more than
# asked (Aggregator:Rounds = R + 1): its plan carries model R to the vehicles; the script stops the fleet there.
# Under DP a vehicle reports nothing unless it has an evaluation budget (Agent:EvaluationEpsilon; docs/privacy.md): it logs
# "model V is not reported" instead, and counts as answered.
accuracy_of() { # version wait-seconds
  local v=$1 until=$(( $(date +%s) + $2 )) ids
  while true; do
    : > "$run_dir/scores"
    local have=0 log
    for ((i = 0; i < agents; i++)); do
      log=$(pm logs "$run_id-car-$i" 2>&1 || true)
      sed -n "s/.*: model $v scores \([0-9.]*\) on .*/\1/p" <<< "$log" | tail -n 1 >> "$run_dir/scores"
      if grep -q -e ": model $v scores " -e ": model $v is not reported" <<< "$log"; then have=$((have + 1)); fi
    done
    local up; up=$(pm ps -q --filter "label=fleetlearn.role=agent" --filter "label=$label" --filter status=running | wc -l)
    if [ "$have" -ge "$up" ] || [ "$(date +%s)" -ge "$until" ]; then break; fi
    sleep 1
  done
  awk '{ s += $1; n++ } END { if (n) printf "%.4f %d\n", s / n, n; else print "NaN 0" }' "$run_dir/scores"
}
printed=0 applied=0 last_up=0 last_down=0 final_acc=NaN max_eps=NaN
deadline=$(( $(date +%s) + rounds * (4 * phase_timeout + 600) ))
while [ "$printed" -lt "$rounds" ]; do
  if [ "$(date +%s)" -ge "$deadline" ]; then die "round $((printed + 1)) did not close in time (see: podman logs $run_id-aggregator)"; fi
  if ! pm ps -q --filter "name=^$run_id-aggregator\$" --filter status=running | grep -q .; then
    pm logs --tail 30 "$run_id-aggregator" >&2 || true
    die "the aggregator container stopped"
  fi
  curl -fsS "http://$http/api/rounds" -o "$run_dir/rounds.json" 2>/dev/null || { sleep 1; continue; }
  closed=$(jq '[.[] | select(.status != "open")] | length' "$run_dir/rounds.json")
  if [ "$closed" -le "$printed" ]; then sleep 1; continue; fi
  r=$(jq -c "[.[] | select(.status != \"open\")] | sort_by(.round) | .[$printed]" "$run_dir/rounds.json")
  curl -fsS "http://$http/metrics" -o "$run_dir/metrics" 2>/dev/null || true
  round=$(jq -r .round <<< "$r") status=$(jq -r .status <<< "$r") parts=$(jq -r .participants <<< "$r") size=$(jq -r .cohortSize <<< "$r")
  loss=$(jq -r '.trainLoss // "NaN"' <<< "$r") note=$(jq -r .note <<< "$r") version=$(jq -r '.modelVersionOut // empty' <<< "$r")
  seconds=$(awk -v a="$(date -d "$(jq -r .startedAt <<< "$r")" +%s.%N)" -v b="$(date -d "$(jq -r .closedAt <<< "$r")" +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
  up_total=$(metric fleetlearn_aggregator_bytes_received_bytes_total fleetlearn_aggregator_bytes_received_total)
  down_total=$(metric fleetlearn_aggregator_bytes_published_bytes_total fleetlearn_aggregator_bytes_published_total fleetlearn_aggregator_bytes_sent_total)
  max_eps=$(metric_f fleetlearn_aggregator_vehicle_epsilon_max)
  up=$((up_total - last_up)) down=$((down_total - last_down)); last_up=$up_total last_down=$down_total
  acc=NaN scored=0
  if [ "$status" = applied ] && [ -n "$version" ]; then
    read -r acc scored < <(accuracy_of "$version" 90)
    applied=$((applied + 1)); final_acc=$acc
  fi
  verdict=applied; [ "$status" = applied ] || verdict="aborted ($note)"
  privacy=""; [ "$dp" = off ] || privacy=$(awk -v e="$max_eps" 'BEGIN { printf "  ε (vehicle max %.2f)", e }')
  say "$(awk -v r="$round" -v R="$rounds" -v a="$acc" -v l="$loss" -v p="$parts" -v s="$size" 'BEGIN {
    printf "round %4d/%d  accuracy %s  loss %s  participants %4d/%d", r, R, (a == "NaN" ? "   —  " : sprintf("%.4f", a)),
      (l == "NaN" ? "   —  " : sprintf("%.4f", l)), p, s }')  $verdict  up $(printf '%9s' "$(bytes "$up")")  down $(printf '%9s' "$(bytes "$down")")$privacy  $(awk -v s="$seconds" 'BEGIN { printf "%.2f", s }') s"
  if $json; then
    jq -nc --argjson round "$round" --arg acc "$acc" --arg loss "$loss" --argjson selected "$size" --argjson participants "$parts" \
      --arg status "$status" --arg note "$note" --argjson up "$up" --argjson down "$down" --arg eps "$max_eps" --arg seconds "$seconds" \
      --argjson scored "$scored" \
      '{round: $round, test_accuracy: ($acc | tonumber? // null), train_loss: ($loss | tonumber? // null), selected: $selected,
        participants: $participants, applied: ($status == "applied"), abort_reason: (if $status == "applied" then null else $note end),
        bytes_up: $up, bytes_down: $down, max_vehicle_epsilon: ($eps | tonumber? // null), seconds: ($seconds | tonumber? // null),
        accuracy_from_vehicles: $scored}'
  fi
  printed=$((printed + 1))
done
if [ -n "$chaos_pid" ]; then kill "$chaos_pid" 2>/dev/null || true; wait "$chaos_pid" 2>/dev/null || true; chaos_pid=""; fi

# ---- summary -------------------------------------------------------------------------------------------------------
seconds=$(elapsed)
chaos_text="" chaos_json="[]"
if $chaos; then
  kills=$(grep -c ' kill ' "$run_dir/chaos.log" || true) pauses=$(grep -c ' pause ' "$run_dir/chaos.log" || true)
  disconnects=$(grep -c ' disconnect ' "$run_dir/chaos.log" || true)
  chaos_text="; chaos: $kills killed, $pauses paused, $disconnects disconnected ($(awk '{ printf "%s%s %s at %ss", (NR > 1 ? ", " : ""), $2, $3, $1 }' "$run_dir/chaos.log")) and $applied/$rounds rounds still applied"
  chaos_json=$(awk '{ printf "%s{\"at_s\":%s,\"action\":\"%s\",\"vehicle\":\"%s\"}", (NR > 1 ? "," : "[") , $1, $2, $3 } END { if (NR) print "]"; else print "[]" }' "$run_dir/chaos.log")
fi
eps_text="no differential privacy"
[ "$dp" = off ] || eps_text=$(awk -v e="$max_eps" 'BEGIN { printf "ε %.2f (largest per vehicle, the aggregator'"'"'s ledger)", e }')
say "done: $applied/$rounds rounds applied over MQTT in containers; final accuracy $(awk -v a="$final_acc" 'BEGIN { print (a == "NaN" ? "—" : sprintf("%.4f", a)) }'); $eps_text; $(bytes "$last_up") received and $(bytes "$last_down") published by the aggregator$chaos_text; $seconds s"
if $json; then
  jq -nc --argjson agents "$agents" --argjson rounds "$rounds" --argjson applied "$applied" --arg acc "$final_acc" \
    --argjson up "$last_up" --argjson down "$last_down" --arg eps "$max_eps" --arg seconds "$seconds" --arg startup "$startup" \
    --argjson chaos "$chaos_json" --arg secagg "$secagg" --arg dp "$dp" --arg codec "$codec" --arg model "$model" \
    '{summary: true, transport: "mqtt (containers: mosquitto, aggregator, agents)", agents: $agents, model: $model,
      secagg: $secagg, dp: $dp, codec: $codec, rounds: $rounds, rounds_applied: $applied,
      final_accuracy: ($acc | tonumber? // null), bytes_up: $up, bytes_down: $down,
      max_vehicle_epsilon: ($eps | tonumber? // null), startup_seconds: ($startup | tonumber), seconds: ($seconds | tonumber),
      chaos: $chaos}'
fi
# A run whose rounds aborted is a failed run, whatever it printed.
[ "$applied" -eq "$rounds" ] || { say "container-fleet: only $applied of $rounds rounds applied"; exit 1; }
