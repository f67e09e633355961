"""Tokens per second of greedy generation: our GPT with and without its KV cache, and transformers' generate.

A GPT-2-small-shaped model with random weights (ours, copied into a Hugging Face GPT2LMHeadModel with
`gpt_to_hf`, SDPA attention) continues a 16-token prompt by 256 tokens, greedily, so all three
candidates must produce the same tokens (checked). Candidates run interleaved in a fresh random order
at every repetition. Generating without the cache re-reads the whole context at every step and is
slow on a CPU, so it runs in fewer repetitions (`--no-cache-reps`).

    .venv/bin/python benchmarks/generate.py
    .venv/bin/python benchmarks/generate.py --reps 5 --no-cache-reps 2 --threads 1
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

import torch

from transformer_lit.gpt import GPT, GPTConfig, generate
from transformer_lit.hf import gpt_to_hf


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions of the cached candidates")
    ap.add_argument("--no-cache-reps", type=int, default=1, help="timed repetitions without the cache")
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging
    logging.set_verbosity_error()
    random.seed(0)
    torch.manual_seed(0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}")
    ours = GPT(GPTConfig()).eval()                                   # GPT-2 small: 12 x 768, 50257 tokens
    theirs = gpt_to_hf(ours, attn_implementation="sdpa").eval()
    prompt = torch.randint(ours.config.vocab_size, (1, args.prompt_tokens))
    N = args.new_tokens
    candidates = {
        "ours, KV cache": lambda: generate(ours, prompt, N, temperature=0),
        "ours, no cache": lambda: generate(ours, prompt, N, temperature=0, use_cache=False),
        "transformers generate (cache)": lambda: theirs.generate(
            prompt, max_new_tokens=N, min_new_tokens=N, do_sample=False, use_cache=True,
            pad_token_id=0, attention_mask=torch.ones_like(prompt)),
    }
    with torch.no_grad():
        candidates["ours, KV cache"]()                                 # warm-up
        candidates["transformers generate (cache)"]()
    times = {name: [] for name in candidates}
    outputs = {}
    for rep in range(max(args.reps, args.no_cache_reps)):
        names = [n for n in candidates if rep < (args.no_cache_reps if "no cache" in n else args.reps)]
        random.shuffle(names)
        for name in names:
            t0 = time.perf_counter()
            with torch.no_grad():
                out = candidates[name]()
            times[name].append(time.perf_counter() - t0)
            outputs[name] = out[0, -N:]
    ref = outputs["ours, KV cache"]
    for name, out in outputs.items():
        if not torch.equal(out, ref):
            raise RuntimeError(f"{name} generated other tokens than ours with the cache")
    tps = {name: N / statistics.median(t) for name, t in times.items()}
    base = tps["transformers generate (cache)"]
    print(f"\ngreedy, {args.prompt_tokens}-token prompt + {N} new tokens, GPT-2 small shape, random weights, batch 1")
    print("| candidate | tokens/s | ratio to transformers | reps |")
    print("|---|---:|---:|---:|")
    for name, v in tps.items():
        print(f"| {name} | {v:.2f} | {v / base:.2f} | {len(times[name])} |")
    print(f"\ncache speed-up (ours, cache / no cache): {tps['ours, KV cache'] / tps['ours, no cache']:.1f}x "
          f"(target >= 3x); ours with cache / transformers: {tps['ours, KV cache'] / base:.2f} (target >= 1.0)")
    print("all candidates generated the same tokens.")


if __name__ == "__main__":
    main()
