#!/usr/bin/env bash
# FedAvg benchmark against the PyTorch peer, in one run on one machine:
#   100 vehicles, fraction 0.1, E=5, B=10, lr 0.05, 2NN, Fashion-MNIST.
# Prints, per partition, rounds to the target and seconds per round for both, and the ratio.
# Usage: [INIT=he|uniform] bench/fedavg-vs-torch.sh [iid|shards] [rounds] [target] [seeds...]
# INIT=uniform starts from PyTorch's nn.Linear initialization, as the peer does. The peer is bench/peer_torch.py.
set -euo pipefail
cd "$(dirname "$0")/.."
partition=${1:-iid}
rounds=${2:-30}
target=${3:-0.85}
shift $(( $# < 3 ? $# : 3 ))
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1)
peer=bench/peer_torch.py
bash scripts/install-deps.sh dataset-fashion-mnist python3-torch libopenblas0-pthread
fl="bash scripts/fleetlearn"   # builds when needed
$fl --version >/dev/null
for seed in "${seeds[@]}"; do
  echo "== $partition seed $seed: PyTorch peer ($rounds rounds)" >&2
  peer_out=$(/usr/bin/python3 "$peer" fedavg --partition "$partition" --clients 100 --fraction 0.1 --epochs 5 --batch 10 --lr 0.05 \
    --rounds "$rounds" --target "$target" --seed "$seed" --threads 1 | tail -n 1)
  echo "== $partition seed $seed: FleetLearn ($rounds rounds)" >&2
  ours=$($fl simulate --vehicles 100 --fraction 0.1 --local-epochs 5 --batch 10 --lr 0.05 --partition "$partition" \
    --rounds "$rounds" --target "$target" --seed "$seed" --init "${INIT:-he}" --json | tail -n 1)
  python3 - "$partition" "$seed" "$peer_out" "$ours" <<'PY'
import json, sys
partition, seed, peer, ours = sys.argv[1:]
p, o = json.loads(peer), json.loads(ours)
ps = p["seconds_per_round"]
fs = o["seconds_per_round"]
print(json.dumps({"partition": partition, "seed": int(seed), "target": o["target"],
                  "peer_rounds_to_target": p["rounds_to_target"], "peer_final_accuracy": p["final_accuracy"],
                  "ours_rounds_to_target": o["rounds_to_target"], "ours_final_accuracy": o["final_accuracy"],
                  "peer_seconds_per_round": round(ps, 3), "ours_seconds_per_round": round(fs, 3),
                  "time_ratio_ours_over_peer": round(fs / ps, 3), "backend": o["backend"]}))
PY
done
