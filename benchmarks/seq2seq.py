"""Chapters 5 and 6: our encoder layer and encoder-decoder stacks against PyTorch's, and decoding with and
without the key/value cache.

Three comparisons, each timed interleaved (a fresh random order at every repetition, so a background
load hits all candidates alike) and reported as medians:

1. a training step (forward, backward, Adam step) of one pre-norm GELU causal `EncoderLayer` (the GPT
   block of chapter 10) against `torch.nn.TransformerEncoderLayer` with the same weights;
2. a training step of the chapter-6 date model's layer stacks (post-norm and pre-norm) against
   `torch.nn.Transformer` with the same weights (copied by `transformer_stacks_from_torch`);
3. greedy decoding of 32 tokens for a batch with `greedy_decode(use_cache=True)` (self-attention keys
   and values cached per layer, the memory's cross-attention keys and values projected once) against
   `use_cache=False`, and beam search (k=4) with and without the cache.

The first step of 1 and 2 checks that both candidates compute the same loss.

    .venv/bin/python benchmarks/seq2seq.py
    .venv/bin/python benchmarks/seq2seq.py --reps 10 --threads 1
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
import warnings

import torch
import torch.nn as nn

from transformer_lit.decoder import Transformer, beam_search, greedy_decode, transformer_stacks_from_torch
from transformer_lit.encoder import encoder_layer_from_torch

from _timing import interleaved   # the shared interleaved timer (benchmarks/_timing.py)


def interleaved_ms(fns: dict, reps: int, warmup: int = 2) -> dict[str, float]:
    "Median milliseconds of each zero-argument function, timed interleaved (`_timing.interleaved`)."
    return {name: 1e3 * statistics.median(t) for name, t in interleaved(fns, reps, warmup).items()}


def train_step(module, forward, target):
    "A closure doing one MSE training step of `module`; returns the loss."
    opt = torch.optim.Adam(module.parameters(), lr=1e-4)
    def step():
        loss = ((forward() - target) ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()
    return step


def check_same(first: dict[str, float]):
    a, b = first.values()
    if abs(a - b) > 1e-4 * max(1.0, abs(a)):
        raise RuntimeError(f"the candidates disagree on the first loss: {first}")


def bench_gpt_block(reps: int) -> dict[str, float]:
    torch.manual_seed(0)
    B, T, C, nh = 12, 64, 128, 4
    theirs = nn.TransformerEncoderLayer(C, nh, 4 * C, dropout=0.0, activation="gelu", batch_first=True,
                                        norm_first=True)
    ours = encoder_layer_from_torch(theirs)
    x, target = torch.randn(B, T, C), torch.randn(B, T, C)
    causal = nn.Transformer.generate_square_subsequent_mask(T)
    fns = {"ours EncoderLayer (is_causal)": train_step(ours, lambda: ours(x, is_causal=True), target),
           "torch TransformerEncoderLayer": train_step(theirs, lambda: theirs(x, src_mask=causal, is_causal=True),
                                                       target)}
    check_same({k: f() for k, f in fns.items()})
    return interleaved_ms(fns, reps)


def bench_stacks(norm_first: bool, reps: int) -> dict[str, float]:
    torch.manual_seed(0)
    B, S, T, C = 128, 30, 11, 64
    theirs = nn.Transformer(C, 4, 2, 2, 4 * C, dropout=0.0, batch_first=True, norm_first=norm_first)
    enc, dec = transformer_stacks_from_torch(theirs)
    ours = nn.ModuleList([enc, dec])
    src, tgt, target = torch.randn(B, S, C), torch.randn(B, T, C), torch.randn(B, T, C)
    kpm = torch.arange(S) < torch.randint(8, S + 1, (B,))[:, None]       # (B, S) True = real token
    causal = nn.Transformer.generate_square_subsequent_mask(T)
    fwd_ours = lambda: dec(tgt, enc(src, kpm), memory_key_padding_mask=kpm)
    fwd_theirs = lambda: theirs(src, tgt, tgt_mask=causal, tgt_is_causal=True, src_key_padding_mask=~kpm,
                                memory_key_padding_mask=~kpm)
    fns = {"ours Encoder + Decoder": train_step(ours, fwd_ours, target),
           "torch nn.Transformer": train_step(theirs, fwd_theirs, target)}
    check_same({k: f() for k, f in fns.items()})
    return interleaved_ms(fns, reps)


def bench_decoding(reps: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = Transformer(64, 64, d_model=64, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=256,
                        dropout=0.0, norm_first=True, max_len=64).eval()
    src = torch.randint(3, 64, (256, 25))
    kw = dict(bos_id=1, eos_id=2, max_len=32)
    out = greedy_decode(model, src, **kw)
    print(f"(greedy decoding writes {out.shape[1] - 1} tokens per source)")
    g = lambda c: (lambda: greedy_decode(model, src, use_cache=c, **kw))
    b = lambda c: (lambda: beam_search(model, src, beam_size=4, use_cache=c, **kw))
    return interleaved_ms({"greedy, cached": g(True), "greedy, uncached": g(False),
                        "beam k=4, cached": b(True), "beam k=4, uncached": b(False)}, reps, warmup=1)


def table(title: str, res: dict[str, float], ref: str):
    "Print medians and each candidate's ratio to the reference candidate `ref`."
    print(f"\n{title}")
    print(f"{'candidate':>34} {'median ms':>10} {'/ ' + ref:>24}")
    for name, ms in res.items():
        print(f"{name:>34} {ms:10.1f} {ms / res[ref]:24.2f}")


def main():
    # torch's own note that its nested-tensor fast path is off for pre-norm layers: not about our code
    warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=20, help="timed repetitions (decoding: a quarter of them)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    table("GPT block training step (B=12, T=64, C=128, 4 heads)", bench_gpt_block(args.reps),
          "torch TransformerEncoderLayer")
    for nf in (False, True):
        table(f"date-model stacks training step, norm_first={nf} (B=128, S=30, T=11, C=64, 2+2 layers)",
              bench_stacks(nf, args.reps), "torch nn.Transformer")
    table("decoding 256 sources, up to 32 tokens (C=64, 2+2 layers)", bench_decoding(max(3, args.reps // 4)),
          "greedy, uncached")


if __name__ == "__main__":
    main()
