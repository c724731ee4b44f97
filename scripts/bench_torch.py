#!/usr/bin/python3
"""The four jem bench workloads in PyTorch (Debian's python3-torch), same
model, same math, same thread count: forward (batch 256, no grad), classifier
training step (batch 64, Adam), one SGLD step (batch 64, gradient w.r.t. the
input only) and one JEM iteration (K SGLD steps on 64 chains + a training step
on 64 data + 64 samples). Prints JSON like `jem bench --json`.

PyTorch's documented CPU performance settings, as used here:
- intra-op threads: torch.set_num_threads(--threads), the same count jem
  runs on (checked with torch.get_num_threads(); recorded in the JSON);
- forward-only work under torch.inference_mode() (no autograd records, no
  version counters); the SGLD steps ask autograd for the input's gradient
  only (torch.autograd.grad(..., [x])), so no weight gradients are computed;
- optimizer.zero_grad(set_to_none=True): gradients dropped rather than
  zeroed (the performance tuning guide's advice);
- memory format: plain contiguous NCHW tensors, not channels_last; PyTorch
  1.13 runs these convolutions through oneDNN (mkldnn) either way, and
  NCHW is what jem takes as input, so both see the same data layout;
- the allocator: glibc malloc as the process finds it. scripts/bench_compare.sh
  runs this script twice per round, once as installed and once with
  GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295
  (large blocks kept in the heap instead of being mapped and unmapped per
  tensor); the variable is recorded in the JSON, with the minor page faults
  of each workload's timed runs.
- --precision bf16: the forward pass and the SGLD steps (those of the JEM
  iteration too) under torch.autocast("cpu", dtype=torch.bfloat16), PyTorch's
  documented mixed precision on CPUs with AVX512-BF16 (convolutions and
  linear layers in bf16 through oneDNN); the training steps stay fp32, as
  in `jem bench --precision bf16`."""
import argparse, contextlib, json, os, resource, statistics, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride, slope):
        super().__init__()
        self.slope = slope
        self.c1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.c2 = nn.Conv2d(cout, cout, 3, stride, 1)
        self.sc = nn.Conv2d(cin, cout, 1, stride, 0) if stride != 1 or cin != cout else None

    def forward(self, x):
        h = self.c1(F.leaky_relu(x, self.slope))
        h = self.c2(F.leaky_relu(h, self.slope))
        return h + (self.sc(x) if self.sc is not None else x)


class WRN(nn.Module):
    def __init__(self, cin=1, stem=16, blocks=((32, 1), (64, 2), (128, 2)), classes=10, slope=0.2):
        super().__init__()
        self.slope = slope
        self.stem = nn.Conv2d(cin, stem, 3, 1, 1)
        c = stem
        for i, (w, s) in enumerate(blocks):
            setattr(self, "b%d" % (i + 1), Block(c, w, s, slope))
            c = w
        self.nblocks = len(blocks)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        h = self.stem(x)
        for i in range(self.nblocks):
            h = getattr(self, "b%d" % (i + 1))(h)
        h = F.leaky_relu(h, self.slope).mean(dim=(2, 3))
        return self.fc(h)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sgld-steps", type=int, default=20)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    a = ap.parse_args()
    # the forward and SGLD passes' precision
    low = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if a.precision == "bf16" else contextlib.nullcontext
    torch.set_num_threads(a.threads)
    if torch.get_num_threads() != a.threads:
        sys.exit("bench_torch: torch.get_num_threads() = %d, not %d" % (torch.get_num_threads(), a.threads))
    torch.manual_seed(1)
    m = WRN()
    opt = torch.optim.Adam(m.parameters(), lr=1e-6)
    x256 = torch.rand(256, 1, 28, 28) * 2 - 1
    x64 = torch.rand(64, 1, 28, 28) * 2 - 1
    y64 = torch.randint(0, 10, (64,))
    y128 = torch.randint(0, 10, (128,))

    def forward():
        with torch.inference_mode(), low():
            m(x256)

    def train(x, y):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()
        opt.step()

    def sgld(x, k):
        for _ in range(k):
            x = x.detach().requires_grad_(True)
            with low():
                e = m(x).float().logsumexp(1).sum()
            g, = torch.autograd.grad(e, [x])
            x = x + 1e-3 * g + 0.01 * torch.randn_like(x)
        return x.detach()

    def jem(k):
        xs = sgld(x64, k)
        train(torch.cat([x64, xs]), y128)

    work = [("forward", 256, forward), ("train_step", 64, lambda: train(x64, y64)),
            ("sgld_step", 64, lambda: sgld(x64, 1)), ("jem_iteration", 64, lambda: jem(a.sgld_steps))]
    out = {"threads": torch.get_num_threads(), "reps": a.reps, "torch": torch.__version__,
           "precision": a.precision,
           "settings": {"forward": "inference_mode", "memory_format": "contiguous (NCHW)",
                        "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
                        "zero_grad": "set_to_none", "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")},
           "workloads": {}}
    for name, batch, fn in work:
        fn()
        ts, faults = [], []
        for _ in range(a.reps):
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        med = statistics.median(ts)
        out["workloads"][name] = {"batch": batch, "images_per_s": batch / med, "ms": med * 1e3,
                                  "minor_faults": statistics.median(faults)}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
