"""Validation loss of nanoGPT's CPU recipe on the default corpus: our GPT and transformers' GPT2LMHeadModel.

Chapter 10 trains our GPT with nanoGPT's CPU recipe (4 blocks of width 128, 4 heads, context 64,
batch 12, 2000 steps of AdamW with beta2 0.99 and weight decay 0.1, lr 1e-3 with 100 warm-up steps
and a cosine decay to 1e-4, clipping at 1.0, no dropout) on the default corpus. This script trains,
with chapter 8's Trainer and exactly the same recipe, data, split and seed, both our GPT and Hugging
Face's GPT2LMHeadModel of the same shape, and prints their final losses: a reference for what the
recipe can reach on this corpus, independent of our implementation. It is slow (two full runs).

It is a reference for a *loss*, not a speed comparison: the two runs go one after the other, so their
times are printed for information only and are not comparable (a benchmark times its candidates
interleaved, see benchmarks/README.md). That is why it lives in tools/ and `make benchmark` does not
run it. Chapter 10 quotes its table.

    .venv/bin/python tools/recipe_loss.py
    .venv/bin/python tools/recipe_loss.py --steps 500 --threads 1
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch
import torch.nn.functional as F
from torch import nn

from transformer_lit.gpt import GPT, GPTConfig
from transformer_lit.tokenizer import CharTokenizer, load_corpus
from transformer_lit.training import TrainConfig, Trainer, train_val_split


class HFLanguageModel(nn.Module):
    "transformers' GPT2LMHeadModel behind chapter 8's convention: forward(idx, targets) -> (logits, loss)."

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel
        self.model = GPT2LMHeadModel(GPT2Config(
            vocab_size=vocab_size, n_positions=block_size, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
            attn_implementation="sdpa"))

    def forward(self, idx, targets=None):
        logits = self.model(input_ids=idx).logits                               # (B, T, V)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging
    logging.set_verbosity_error()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}")
    text = load_corpus()
    tok = CharTokenizer.train(text)
    train_ids, val_ids = train_val_split(torch.tensor(tok.encode(text), dtype=torch.long), 0.1)
    shape = dict(block_size=64, n_layer=4, n_head=4, n_embd=128)
    cfg = TrainConfig(block_size=64, batch_size=12, max_steps=args.steps, lr=1e-3, warmup_steps=min(100, args.steps),
                      min_lr_ratio=0.1, weight_decay=0.1, beta2=0.99, grad_clip=1.0, eval_interval=250,
                      eval_batches=20, seed=args.seed, device="cpu", progress=False)
    rows = []
    for name, make in (("ours (GPT)", lambda: GPT(GPTConfig(vocab_size=tok.vocab_size, **shape))),
                       ("transformers GPT2LMHeadModel", lambda: HFLanguageModel(tok.vocab_size, **shape))):
        torch.manual_seed(args.seed)
        trainer = Trainer(make(), train_ids, val_ids, cfg)
        t0 = time.perf_counter()
        h = trainer.fit()
        rows.append((name, h["train_eval"][-1], h["val_eval"][-1], time.perf_counter() - t0))
        print(f"{name}: done", flush=True)
    print(f"\nnanoGPT's CPU recipe, {args.steps} steps, default corpus ({len(text):,} characters, last 10% held out)")
    print("(times: one run after the other, for information only; not a speed comparison)")
    print("| model | train loss | validation loss | time (s) |")
    print("|---|---:|---:|---:|")
    for name, tr, va, sec in rows:
        print(f"| {name} | {tr:.4f} | {va:.4f} | {sec:.0f} |")


if __name__ == "__main__":
    main()
