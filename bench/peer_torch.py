#!/usr/bin/python3
"""FleetLearn's PyTorch peer: the same work as `fleetlearn bench train` and `fleetlearn simulate`, done by PyTorch, so
that a benchmark reports a ratio measured in one run on one machine.

The model is the FedAvg paper's 2NN (McMahan et al. 2017): 784-200-200-10, ReLU, softmax cross-entropy, plain SGD.

  peer_torch.py speed  --batch B [--samples N] [--threads T] [--lr 0.05]
      One epoch over the first N training images in a random order, after a 2,000-image warm-up: samples/s.
  peer_torch.py fedavg --partition iid|shards|dirichlet [--alpha A] --clients K --fraction C --epochs E --batch B
                       --lr LR --rounds R --target ACC [--seed S] [--threads T]
      FedAvg: each round max(1, round(C*K)) clients drawn without replacement train E local epochs from the global
      model; the server averages their weights by sample count. Test accuracy per round on stderr.

Each mode ends with one JSON object on stdout. Data: --data DIR, else $FLEETLEARN_DATA, else Debian's
dataset-fashion-mnist folder. Run with Debian's /usr/bin/python3 (python3-torch; with libopenblas0-pthread installed,
or PyTorch falls back to reference BLAS and is an unfair peer).
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn

DEBIAN_FOLDER = "/usr/share/datasets/fashion-mnist"


def read_idx(folder, stem):
    """An IDX file (gzipped or not) as a numpy array of its declared shape."""
    for name, opener in ((stem + ".gz", gzip.open), (stem, open)):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            with opener(path, "rb") as f:
                zero, dtype, dims = struct.unpack(">HBB", f.read(4))
                if zero != 0 or dtype != 0x08:
                    sys.exit(f"peer_torch: {path} is not an unsigned-byte IDX file")
                shape = struct.unpack(">" + "I" * dims, f.read(4 * dims))
                return np.frombuffer(f.read(), dtype=np.uint8).reshape(shape)
    sys.exit(f"peer_torch: {folder} has no {stem}(.gz); give --data DIR or install dataset-fashion-mnist")


def load(folder):
    """Training and test split: pixels scaled to [0, 1] (as FleetLearn does), labels as int64."""
    def split(prefix):
        images = read_idx(folder, f"{prefix}-images-idx3-ubyte")
        labels = read_idx(folder, f"{prefix}-labels-idx1-ubyte")
        return images.reshape(len(images), -1).astype(np.float32) / 255.0, labels.astype(np.int64)
    return split("train"), split("t10k")


def two_nn():
    return nn.Sequential(nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 10))


def sgd_epochs(model, x, y, epochs, batch, lr, rng):
    """Plain minibatch SGD over (x, y) for the given epochs, a fresh random order each epoch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), batch):
            rows = order[start:start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(xs[rows]), ys[rows]).backward()
            optimizer.step()


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(dim=1).numpy() == y).mean())


def speed(args, data):
    (x, y), _ = data
    n = min(args.samples, len(x))
    rng = np.random.default_rng(args.seed)
    model = two_nn()
    sgd_epochs(model, x[:2000], y[:2000], 1, args.batch, args.lr, rng)  # warm-up: allocator, BLAS threads, autograd
    start = time.perf_counter()
    sgd_epochs(model, x[:n], y[:n], 1, args.batch, args.lr, rng)
    seconds = time.perf_counter() - start
    return {"peer": f"torch {torch.__version__}", "mode": "speed", "threads": args.threads, "batch": args.batch,
            "samples": n, "seconds": round(seconds, 4), "samples_per_second": round(n / seconds)}


def partition(labels, clients, scheme, alpha, rng):
    """Row indices per client: iid, pathological shards (2 label-sorted shards each) or Dirichlet(alpha) per class."""
    n = len(labels)
    if scheme == "iid":
        return np.array_split(rng.permutation(n), clients)
    if scheme == "shards":
        shards = np.array_split(np.argsort(labels, kind="stable"), 2 * clients)
        pick = rng.permutation(2 * clients)
        return [np.concatenate((shards[pick[2 * c]], shards[pick[2 * c + 1]])) for c in range(clients)]
    if scheme == "dirichlet":
        parts = [[] for _ in range(clients)]
        for label in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == label))
            cuts = (np.cumsum(rng.dirichlet([alpha] * clients)) * len(rows)).astype(int)[:-1]
            for c, chunk in enumerate(np.split(rows, cuts)):
                parts[c].extend(chunk.tolist())
        return [np.asarray(p, dtype=np.int64) for p in parts]
    sys.exit(f"peer_torch: --partition {scheme}: expected iid, shards or dirichlet")


def fedavg(args, data):
    (x, y), (test_x, test_y) = data
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    parts = partition(y, args.clients, args.partition, args.alpha, rng)
    cohort = max(1, int(round(args.fraction * args.clients)))
    global_model = two_nn()
    start = time.perf_counter()
    reached, acc = None, float("nan")
    for r in range(1, args.rounds + 1):
        base = {k: v.clone() for k, v in global_model.state_dict().items()}
        total = {k: torch.zeros_like(v) for k, v in base.items()}
        weight = 0
        for client in rng.choice(args.clients, cohort, replace=False):
            rows = parts[client]
            if len(rows) == 0:
                continue
            local = two_nn()
            local.load_state_dict(base)
            sgd_epochs(local, x[rows], y[rows], args.epochs, args.batch, args.lr, rng)
            for k, v in local.state_dict().items():
                total[k] += len(rows) * v
            weight += len(rows)
        global_model.load_state_dict({k: v / weight for k, v in total.items()})
        acc = accuracy(global_model, test_x, test_y)
        if reached is None and acc >= args.target:
            reached = r
        print(json.dumps({"round": r, "test_accuracy": round(acc, 4), "seconds": round(time.perf_counter() - start, 2)}),
              file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    return {"peer": f"torch {torch.__version__}", "mode": "fedavg", "partition": args.partition, "clients": args.clients,
            "cohort": cohort, "rounds": args.rounds, "target": args.target, "rounds_to_target": reached,
            "final_accuracy": round(acc, 4), "seconds": round(seconds, 3), "seconds_per_round": round(seconds / args.rounds, 4)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["speed", "fedavg"])
    p.add_argument("--data", default=os.environ.get("FLEETLEARN_DATA") or DEBIAN_FOLDER)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--partition", default="iid")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--target", type=float, default=0.85)
    args = p.parse_args()
    if args.batch < 1 or args.samples < 1 or args.threads < 1 or args.rounds < 1 or args.clients < 1:
        sys.exit("peer_torch: --batch, --samples, --threads, --rounds and --clients must be positive")
    torch.set_num_threads(args.threads)
    data = load(args.data)
    print(json.dumps(speed(args, data) if args.mode == "speed" else fedavg(args, data)))


if __name__ == "__main__":
    main()
