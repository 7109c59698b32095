#!/usr/bin/env bash
# Local-training throughput of the 2NN (784-200-200-10, SGD lr 0.05, 1 thread) on Fashion-MNIST:
# FleetLearn's CPU backend against the PyTorch peer, alternating runs in one session so machine
# noise hits both alike. Reports the best of N runs for each and the ratio.
# Usage: bench/train-vs-torch.sh [batch ...]   (default: 50 10); RUNS=3 and SAMPLES=20000 by default.
# The peer is bench/peer_torch.py (PyTorch from Debian); one JSON line per batch size on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
samples=${SAMPLES:-20000}
batches=("$@")
[ ${#batches[@]} -gt 0 ] || batches=(50 10)
peer=bench/peer_torch.py
bash scripts/install-deps.sh dataset-fashion-mnist python3-torch libopenblas0-pthread
fl="bash scripts/fleetlearn"   # builds when needed
$fl --version >/dev/null
for b in "${batches[@]}"; do
  best_peer=0 best_ours=0
  for r in $(seq "$runs"); do
    p=$(/usr/bin/python3 "$peer" speed --batch "$b" --samples "$samples" --threads 1 | tail -n 1 | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["samples_per_second"]))')
    o=$($fl bench train --batch "$b" --threads 1 --samples "$samples" --json 2>/dev/null | tail -n 1 | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["samples_per_second"]))')
    echo "batch $b run $r: peer $p samples/s, fleetlearn $o samples/s" >&2
    [ "$p" -gt "$best_peer" ] && best_peer=$p
    [ "$o" -gt "$best_ours" ] && best_ours=$o
  done
  python3 -c "import json; print(json.dumps({'batch': $b, 'threads': 1, 'peer_samples_per_second': $best_peer, 'fleetlearn_samples_per_second': $best_ours, 'ratio': round($best_ours / $best_peer, 2)}))"
done
