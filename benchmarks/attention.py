"""Forward+backward time of our MultiHeadAttention (fast and explicit path) against torch.nn.MultiheadAttention.

All candidates share the same weights (copied with `mha_to_torch`) and inputs, and are timed interleaved:
every repetition runs each candidate once, in a fresh random order, so a background load or a change of
clock speed hits all of them alike. The table reports medians and ratios to PyTorch's layer.

    .venv/bin/python benchmarks/attention.py            # CPU (and CUDA when available)
    .venv/bin/python benchmarks/attention.py --reps 20  # fewer repetitions
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

import torch

from transformer_lit.attention import causal_mask
from transformer_lit.multi_head import MultiHeadAttention, mha_to_torch

SHAPES = [(8, 256, 256, 8), (1, 1024, 512, 8)]   # (B, T, d_model, n_heads)


def candidates(ours, theirs, x, causal: bool):
    "name -> function running one forward and backward pass."
    T = x.shape[1]
    blocked = ~causal_mask(T, device=x.device) if causal else None   # torch's convention: True = blocked
    upstream = torch.randn_like(x)

    def run(fn):
        def step():
            out = fn()
            out.backward(upstream)
        return step

    return {
        "ours, fast path": run(lambda: ours(x, is_causal=causal)[0]),
        "ours, explicit path": run(lambda: ours(x, is_causal=causal, need_weights=True)[0]),
        "torch MHA": run(lambda: theirs(x, x, x, attn_mask=blocked, is_causal=causal, need_weights=False)[0]),
        "torch MHA, need_weights": run(lambda: theirs(x, x, x, attn_mask=blocked, need_weights=True)[0]),
    }


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(fns: dict, device, reps: int, warmup: int, params) -> dict[str, float]:
    "Median seconds per call of each function, interleaved in random order per repetition."
    times = {name: [] for name in fns}
    names = list(fns)
    for rep in range(warmup + reps):
        random.shuffle(names)
        for name in names:
            for p in params:
                p.grad = None
            sync(device)
            t0 = time.perf_counter()
            fns[name]()
            sync(device)
            if rep >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", action="append", help="cpu and/or cuda (default: cpu, and cuda if available)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    random.seed(0)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} torch threads, float32, forward+backward, "
          f"{args.reps} interleaved repetitions after {args.warmup} warm-up")
    for dev in devices:
        device = torch.device(dev)
        if device.type == "cuda":
            print(f"GPU: {torch.cuda.get_device_name()}")
        print(f"\n{'device':>6} {'B':>3} {'T':>5} {'d':>4} {'h':>2} {'mask':>6}  {'candidate':<24} {'median ms':>10} {'/ torch':>8}")
        for B, T, d, h in SHAPES:
            for causal in (False, True):
                ours = MultiHeadAttention(d, h).to(device)
                theirs = mha_to_torch(ours)
                x = torch.randn(B, T, d, device=device, requires_grad=True)
                params = [*ours.parameters(), *theirs.parameters(), x]
                med = bench(candidates(ours, theirs, x, causal), device, args.reps, args.warmup, params)
                for name, t in med.items():
                    print(f"{dev:>6} {B:>3} {T:>5} {d:>4} {h:>2} {'causal' if causal else 'none':>6}  "
                          f"{name:<24} {1e3 * t:>10.2f} {t / med['torch MHA']:>8.3f}")


if __name__ == "__main__":
    main()
