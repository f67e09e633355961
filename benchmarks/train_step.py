"""Milliseconds per training step: our GPT against Hugging Face's GPT2LMHeadModel (SDPA attention).

Both models have the same sizes and the same weights (ours is copied into theirs with `gpt_to_hf`), see
the same batches, and are trained by the same optimizer (AdamW, lr 1e-3, betas (0.9, 0.99), weight
decay 0.1, gradient clipping 1.0). Both losses are the mean cross-entropy of the logits against the
same targets, computed by `torch.nn.functional.cross_entropy`; the first step checks that the two
losses agree, so the two steps compute the same thing. A step is forward, backward, clipping and the
optimizer step. Steps are timed interleaved, in a fresh random order at every repetition, so a
background load hits both alike. Two shapes: chapter 10's CPU recipe (character-level) and GPT-2 small
with a short context.

    .venv/bin/python benchmarks/train_step.py
    .venv/bin/python benchmarks/train_step.py --reps 5 --threads 1
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

import torch
import torch.nn.functional as F

from transformer_lit.gpt import GPT, GPTConfig, gpt_to_hf

# name -> (GPTConfig fields, batch size)
SHAPES = {
    "recipe (char, 4x128, T=64, B=12)": (dict(vocab_size=76, block_size=64, n_layer=4, n_head=4, n_embd=128), 12),
    "GPT-2 small (T=64, B=4)": (dict(vocab_size=50257, block_size=64, n_layer=12, n_head=12, n_embd=768), 4),
}


def make_step(model, logits_of, opt, x, y):
    "One training step of `model`; returns the loss."
    def step():
        logits = logits_of(x)                                                  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()
    return step


def bench_shape(fields: dict, B: int, reps: int, warmup: int) -> dict[str, float]:
    torch.manual_seed(0)
    ours = GPT(GPTConfig(**fields)).train()
    theirs = gpt_to_hf(ours, attn_implementation="sdpa").train()
    assert theirs.config._attn_implementation == "sdpa", theirs.config._attn_implementation
    T, V = fields["block_size"], fields["vocab_size"]
    x = torch.randint(V, (B, T))
    y = torch.randint(V, (B, T))
    adamw = lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    steps = {
        "ours (GPT)": make_step(ours, lambda x: ours(x)[0], adamw(ours), x, y),
        "transformers GPT2LMHeadModel (sdpa)": make_step(theirs, lambda x: theirs(input_ids=x).logits, adamw(theirs), x, y),
    }
    first = {name: fn() for name, fn in steps.items()}                       # same weights, same batch
    a, b = first.values()
    if abs(a - b) > 1e-4 * max(1.0, abs(a)):
        raise RuntimeError(f"the two models disagree on the first loss: {first}")
    times = {name: [] for name in steps}
    names = list(steps)
    for rep in range(warmup + reps):
        random.shuffle(names)
        for name in names:
            t0 = time.perf_counter()
            steps[name]()
            if rep >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per shape (default: 30 recipe, 5 GPT-2 small)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--shape", choices=list(SHAPES), action="append", help="only these shapes (default: all)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging
    logging.set_verbosity_error()
    random.seed(0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}")
    rows = []
    for shape in args.shape or SHAPES:
        fields, B = SHAPES[shape]
        reps = args.reps or (30 if fields["n_embd"] <= 256 else 5)
        ms = bench_shape(fields, B, reps, args.warmup)
        ours, theirs = ms.values()
        rows.append((shape, ours, theirs, ours / theirs, reps))
    print()
    print(f"| shape | ours (ms/step) | transformers sdpa (ms/step) | ratio ours/theirs | reps |")
    print(f"|---|---:|---:|---:|---:|")
    for shape, o, t, r, n in rows:
        print(f"| {shape} | {o:.1f} | {t:.1f} | {r:.2f} | {n} |")
    print("\nmedians over interleaved repetitions; ratio <= 1.0 means ours is no slower (the target).")


if __name__ == "__main__":
    main()
