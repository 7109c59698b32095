#!/usr/bin/env bash
# Privacy–utility table: 10,000 vehicles (6 Fashion-MNIST images each), cohort 1,000 per round,
# DP-FedAvg with central noise, 2NN, E=5, B=10, client lr 0.1, clip C=1, 100 rounds, δ = 1e-5.
# One line of JSON per noise multiplier: final accuracy and the fleet's ε (q = K/N = 0.1).
# Usage: [ROUNDS=100] bench/privacy-utility.sh [sigma ...]   (default: none 0.7 1.0 1.5)
set -euo pipefail
cd "$(dirname "$0")/.."
sigmas=("$@")
[ ${#sigmas[@]} -gt 0 ] || sigmas=(none 0.7 1.0 1.5)
rounds=${ROUNDS:-100}
bash scripts/install-deps.sh dataset-fashion-mnist
fl="bash scripts/fleetlearn"   # builds when needed
for s in "${sigmas[@]}"; do
  if [ "$s" = none ]; then dp=(--dp off); else dp=(--dp central --clip 1.0 --noise-multiplier "$s" --delta 1e-5); fi
  echo "== sigma $s" >&2
  $fl simulate --vehicles 10000 --cohort 1000 --rounds "$rounds" --local-epochs 5 --batch 10 --lr 0.1 --eval-every 10 --seed 1 \
    "${dp[@]}" --json | tail -n 1 | python3 -c "
import json, sys
d = json.load(sys.stdin)
print(json.dumps({'sigma': '$s', 'rounds': d['rounds'], 'final_accuracy': d['final_accuracy'], 'epsilon': d['epsilon'],
                  'max_vehicle_epsilon': d['max_vehicle_epsilon'], 'delta': d['delta'], 'seconds': round(d['seconds'], 1)}))"
done
