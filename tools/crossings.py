"""Module crossings of one training step's forward pass and loss: how often a reader jumps between files.

A reader who follows `model(x, y)` downward reads one function after another; every time the next
one lives in another module of `transformer_lit` (or back in the caller), they open another file.
This script runs one forward pass with its loss, in training mode, for the CLI recipe's GPT (4 blocks
of width 128, 4 heads, context 64, batch 12) and for a Llama and a DeepSeek of the same size, traces
every Python function entered and left (`sys.setprofile`), and prints:

- the sequence of modules the reader is in (the innermost frame that belongs to `transformer_lit`;
  torch's own functions are not counted, they are the library the book builds on), with runs of the
  same module merged;
- `crossings`: the number of changes of module in that sequence, for the whole step;
- `per path`: the same count after the repetition over blocks is folded (a repeated run of modules,
  e.g. the same block four times, counted once): the path a reader follows once.

    .venv/bin/python tools/crossings.py
    .venv/bin/python tools/crossings.py --model gpt --show

The caller (this script, standing for the training loop) is named `caller`. It uses only the models'
constructors and `model(x, y)`, so it runs on older versions of the package too.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

PACKAGE = os.sep + "transformer_lit" + os.sep


def _module_of(frame) -> str | None:
    "The `transformer_lit` module (or `caller` for this file) of the innermost frame that has one."
    while frame is not None:
        path = frame.f_code.co_filename
        if PACKAGE in path:
            return os.path.splitext(os.path.basename(path))[0]
        if os.path.abspath(path) == os.path.abspath(__file__):
            return "caller"
        frame = frame.f_back
    return None


def trace_modules(fn) -> list[str]:
    "Call `fn()` and return the modules the reader passes through, consecutive repeats merged."
    seq: list[str] = ["caller"]

    def profile(frame, event, arg):
        if event == "call":
            mod = _module_of(frame)
        elif event == "return":
            mod = _module_of(frame.f_back)                    # back in the caller's module
        else:
            return
        if mod is not None and mod != seq[-1]:
            seq.append(mod)

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    if seq[-1] != "caller":
        seq.append("caller")
    return seq


def fold_repeats(seq: list[str]) -> list[str]:
    "Fold every run of a repeated subsequence (`a b c a b c` -> `a b c`), until none is left."
    seq = list(seq)
    changed = True
    while changed:
        changed = False
        for p in range(1, len(seq) // 2 + 1):
            for i in range(len(seq) - 2 * p + 1):
                if seq[i:i + p] == seq[i + p:i + 2 * p]:
                    del seq[i + p:i + 2 * p]
                    changed = True
                    break
            if changed:
                break
    return seq


def build(name: str):
    "The model `name` (gpt, llama or deepseek) at the CLI recipe's size, in training mode."
    V, T, L, H, C = 65, 64, 4, 4, 128
    if name == "gpt":
        from transformer_lit.gpt import GPT, GPTConfig
        return GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=C, dropout=0.0))
    if name == "llama":
        from transformer_lit.llama import Llama, LlamaConfig
        return Llama(LlamaConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_kv_head=2, n_embd=C))
    if name == "deepseek":
        from transformer_lit.deepseek import DeepSeek, DeepSeekConfig
        return DeepSeek(DeepSeekConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=C, n_routed_experts=8,
                                       first_k_dense=1, moe_d_ff=64, num_experts_per_tok=2))
    raise ValueError(f"crossings: model must be gpt, llama or deepseek, got {name!r}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["gpt", "llama", "deepseek", "all"], default="all")
    ap.add_argument("--show", action="store_true", help="print the whole sequence, not only the folded path")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    names = ["gpt", "llama", "deepseek"] if args.model == "all" else [args.model]
    print(f"{'model':<9} {'crossings':>9} {'per path':>8}  path (repeats folded)")
    for name in names:
        model = build(name).train()
        x = torch.randint(65, (12, 64))
        y = torch.randint(65, (12, 64))
        model(x, y)                                                # warm-up: lazy imports, caches
        seq = trace_modules(lambda: model(x, y)[1])
        path = fold_repeats(seq)
        print(f"{name:<9} {len(seq) - 1:>9} {len(path) - 1:>8}  {' -> '.join(path)}")
        if args.show:
            print("  full:", " -> ".join(seq))


if __name__ == "__main__":
    main()
