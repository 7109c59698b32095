"""Peer of `fleetlearn bench extract --backbone resnet18`: torchvision's ResNet18 (random weights: speed does not depend
on them) forward to the 512 pooled features, per batch size, at a given thread count. One JSON line per batch size."""
import argparse, json, time
import torch, torchvision

p = argparse.ArgumentParser()
p.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--frames", type=int, default=64, help="frames per timed pass (rounded up to whole batches)")
p.add_argument("--repeat", type=int, default=2, help="timed passes; the best is reported")
a = p.parse_args()
torch.set_num_threads(a.threads)
m = torchvision.models.resnet18()
m.fc = torch.nn.Identity()
m.eval()
with torch.no_grad():
    for b in (int(x) for x in a.batches.split(",")):
        x = torch.randn(b, 3, 224, 224)
        m(x)  # warm-up
        best = 0.0
        for _ in range(a.repeat):
            n, t = 0, time.perf_counter()
            while n < a.frames:
                m(x)
                n += b
            best = max(best, n / (time.perf_counter() - t))
        print(json.dumps({"batch": b, "frames_per_second": best, "threads": a.threads,
                          "torch": torch.__version__, "torchvision": torchvision.__version__}), flush=True)
