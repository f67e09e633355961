"""Chapter 12's speed targets: our Llama against transformers' LlamaForCausalLM (SDPA attention), side by side.

1. Milliseconds per training step (forward, backward, clipping, AdamW) at two shapes: the chapter's
   character-level model and a Llama-shaped ~100M-parameter model with a short context. Ours is copied
   into a `LlamaForCausalLM` with `llama_to_hf`, both see the same batch, and the first step checks that
   both losses agree. Target: ours / theirs <= 1.0.
2. Tokens per second of greedy generation at the ~100M Llama shape with random weights: chapter 10's
   `generate` with its KV cache against `transformers`' `generate` (cache on). Both must produce the same
   tokens (checked). Target: ours / theirs >= 1.0.

Candidates run interleaved, in a fresh random order at every repetition, so a background load hits
all alike; the tables give medians.

    .venv/bin/python benchmarks/llama.py
    .venv/bin/python benchmarks/llama.py --threads 1 --reps 5 --new-tokens 128
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

from transformer_lit.gpt import generate
from transformer_lit.llama import Llama, LlamaConfig, llama_to_hf

from _timing import interleaved   # the shared interleaved timer (benchmarks/_timing.py)

# name -> (LlamaConfig fields, batch size, block size used)
TRAIN_SHAPES = {
    "chapter's model (char, 4x128, GQA 4/2, T=64, B=12)": (
        dict(vocab_size=76, block_size=64, n_layer=4, n_head=4, n_kv_head=2, n_embd=128, d_ff=392, tie_weights=True), 12),
    "Llama-shaped 100M (12x768, GQA 12/4, T=64, B=4)": (
        dict(vocab_size=32000, block_size=64, n_layer=12, n_head=12, n_kv_head=4, n_embd=768, tie_weights=True), 4),
}
GEN_SHAPE = dict(vocab_size=32000, block_size=1024, n_layer=12, n_head=12, n_kv_head=4, n_embd=768, tie_weights=True)


def train_step(model, logits_of, x, y):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)

    def step():
        logits = logits_of(x)                                                   # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()
    return step


def bench_train(fields: dict, B: int, reps: int, warmup: int) -> dict[str, float]:
    torch.manual_seed(0)
    ours = Llama(LlamaConfig(**fields)).train()
    theirs = llama_to_hf(ours, attn_implementation="sdpa").train()
    assert theirs.config._attn_implementation == "sdpa"
    T, V = fields["block_size"], fields["vocab_size"]
    x, y = torch.randint(V, (B, T)), torch.randint(V, (B, T))
    steps = {"ours (Llama)": train_step(ours, lambda x: ours(x)[0], x, y),
             "transformers LlamaForCausalLM (sdpa)": train_step(theirs, lambda x: theirs(input_ids=x).logits, x, y)}
    first = [fn() for fn in steps.values()]
    if abs(first[0] - first[1]) > 1e-4 * max(1.0, abs(first[0])):
        raise RuntimeError(f"the two models disagree on the first loss: {first}")
    times = interleaved(steps, reps, warmup)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def bench_generate(reps: int, prompt_tokens: int, N: int) -> dict[str, float]:
    torch.manual_seed(0)
    ours = Llama(LlamaConfig(**GEN_SHAPE)).eval()
    theirs = llama_to_hf(ours, attn_implementation="sdpa").eval()
    prompt = torch.randint(GEN_SHAPE["vocab_size"], (1, prompt_tokens))
    outputs = {}

    def run(name, fn):
        def call():
            with torch.no_grad():
                outputs[name] = fn()[0, -N:]
        return call
    candidates = {
        "ours, generate with KV cache": run("ours", lambda: generate(ours, prompt, N, temperature=0)),
        "transformers generate (cache)": run("theirs", lambda: theirs.generate(
            prompt, max_new_tokens=N, min_new_tokens=N, do_sample=False, use_cache=True,
            pad_token_id=0, attention_mask=torch.ones_like(prompt))),
    }
    times = interleaved(candidates, reps, warmup=1)
    if not torch.equal(outputs["ours"], outputs["theirs"]):
        raise RuntimeError("ours and transformers generated different tokens")
    return {name: N / statistics.median(t) for name, t in times.items()}, ours.num_params()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (default: 20 small, 5 large, 3 generation)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--only", choices=["train", "generate"], default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging
    logging.set_verbosity_error()
    random.seed(0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}")
    if args.only != "generate":
        rows = []
        for shape, (fields, B) in TRAIN_SHAPES.items():
            reps = args.reps or (20 if fields["n_embd"] <= 256 else 5)
            ours, theirs = bench_train(fields, B, reps, args.warmup).values()
            rows.append((shape, ours, theirs, reps))
        print("\ntraining step (forward, backward, clipping, AdamW)")
        print("| shape | ours (ms/step) | transformers sdpa (ms/step) | ratio ours/theirs | reps |")
        print("|---|---:|---:|---:|---:|")
        for shape, o, t, n in rows:
            print(f"| {shape} | {o:.1f} | {t:.1f} | {o / t:.2f} | {n} |")
        print("target: ratio <= 1.0")
    if args.only != "train":
        tps, n_params = bench_generate(args.reps or 3, args.prompt_tokens, args.new_tokens)
        ours, theirs = tps.values()
        print(f"\ngreedy generation, {args.prompt_tokens}-token prompt + {args.new_tokens} new tokens, batch 1, "
              f"Llama shape 12x768, GQA 12/4, {n_params / 1e6:.0f}M parameters, random weights")
        print("| candidate | tokens/s | ratio to transformers |")
        print("|---|---:|---:|")
        for name, v in tps.items():
            print(f"| {name} | {v:.1f} | {v / theirs:.2f} |")
        print("both generated the same tokens; target: ours / transformers >= 1.0")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
