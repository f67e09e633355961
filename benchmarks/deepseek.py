"""Chapter 14's speed comparisons, side by side, interleaved, medians.

1. Greedy decoding, tokens per second, random weights: a `DeepSeek` (multi-head latent attention, absorbed form,
   latent cache; dense SwiGLU blocks) against chapter 12's `Llama` with multi-head attention (as many key/value
   heads as query heads) of the same width, depth, heads and feed-forward width, both through chapter 10's
   `generate` with their caches, at a short and a long context. Also the cache bytes per token of each.
   Then ours against `transformers`' `DeepseekV3ForCausalLM.generate` for the same DeepSeek weights (same
   tokens checked).
2. The MoE layer's forward pass: our `DeepSeekMoE` against `transformers`' `DeepseekV3MoE` with the same
   weights (outputs checked equal), at a training shape (many tokens) and a decoding shape (one token per row).

Candidates run in a fresh random order at every repetition, so a background load hits all alike.

    .venv/bin/python benchmarks/deepseek.py
    .venv/bin/python benchmarks/deepseek.py --threads 1 --reps 5 --new-tokens 64
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

import torch

from transformer_lit.deepseek import DeepSeek, DeepSeekConfig, DeepSeekMoE, deepseek_from_hf, latent_cache_bytes
from transformer_lit.gpt import generate, perturb_
from transformer_lit.llama import Llama, LlamaConfig, kv_cache_bytes

from _timing import interleaved   # the shared interleaved timer (benchmarks/_timing.py)

WIDTH = dict(vocab_size=1024, n_layer=6, n_head=8, n_embd=512)
MLA = dict(kv_lora_rank=128, qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64, d_ff=1376)
MOE = dict(vocab_size=1024, n_embd=512, n_routed_experts=64, num_experts_per_tok=6, n_group=8, topk_group=4,
           moe_d_ff=256, n_shared_experts=2, routed_scaling_factor=2.5)


def decoding(args):
    import transformers
    print(f"\n### Greedy decoding, batch 1, random weights ({WIDTH}, MLA d_c 128 + 32)\n")
    print("Decoding alone: (time of prompt + N new tokens - time of prompt + 1) / (N - 1); prefill: prompt + 1 token.\n")
    print("| prompt | model | cache bytes/token (fp32) | prefill (ms) | decoding tokens/s | decoding ratio to MHA |")
    print("|---|---|---:|---:|---:|---:|")
    for T in (16, args.long_prompt):
        block = T + args.new_tokens + 8
        torch.manual_seed(0)
        ds = perturb_(DeepSeek(DeepSeekConfig(**WIDTH, **MLA, block_size=block)), 0.02).eval()
        llama_cfg = LlamaConfig(**WIDTH, n_kv_head=8, d_ff=1376, block_size=block, norm_eps=1e-6)
        mha = perturb_(Llama(llama_cfg), 0.02).eval()
        prompt = torch.randint(WIDTH["vocab_size"], (1, T))
        models = {"MLA (ours, latent cache)": ds, "MHA (chapter 12's Llama)": mha}
        runs = {(name, n): (lambda m=m, n=n: generate(m, prompt, n, temperature=0))
                for name, m in models.items() for n in (1, args.new_tokens)}
        med = {k: statistics.median(v) for k, v in interleaved(runs, args.reps).items()}
        size = {"MLA (ours, latent cache)": latent_cache_bytes(ds.config, 1, dtype=torch.float32),
                "MHA (chapter 12's Llama)": kv_cache_bytes(llama_cfg, 1, dtype=torch.float32)}
        rate = {name: (args.new_tokens - 1) / (med[(name, args.new_tokens)] - med[(name, 1)]) for name in models}
        for name in models:
            print(f"| {T} | {name} | {size[name]:,} | {1e3 * med[(name, 1)]:.0f} | {rate[name]:.0f} | "
                  f"{rate[name] / rate['MHA (chapter 12' + chr(39) + 's Llama)']:.2f} |")
    # ours against transformers, the same DeepSeek weights
    cfg = transformers.DeepseekV3Config(vocab_size=1024, hidden_size=512, intermediate_size=1376, moe_intermediate_size=256,
                                        num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=8, n_routed_experts=16,
                                        num_experts_per_tok=4, n_group=4, topk_group=2, n_shared_experts=1, first_k_dense_replace=1,
                                        kv_lora_rank=128, q_lora_rank=None, qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64,
                                        max_position_embeddings=512, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    theirs = transformers.DeepseekV3ForCausalLM(cfg).eval()
    ours = deepseek_from_hf(theirs)
    prompt = torch.randint(1024, (1, 16))
    mask = torch.ones_like(prompt)
    a = generate(ours, prompt, args.new_tokens, temperature=0)
    b = theirs.generate(prompt, attention_mask=mask, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
    assert torch.equal(a, b), "ours and transformers' generate chose different tokens"
    runs = {"ours (generate, latent cache)": lambda: generate(ours, prompt, args.new_tokens, temperature=0),
            "transformers DeepseekV3ForCausalLM.generate": lambda: theirs.generate(
                prompt, attention_mask=mask, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)}
    med = {k: statistics.median(v) for k, v in interleaved(runs, args.reps).items()}
    print(f"\n### The same DeepSeek-V3 weights (6 layers of width 512, 1 dense + 5 MoE of 16 experts): ours vs transformers\n")
    print("| generate | tokens/s | ours / theirs |\n|---|---:|---:|")
    ref = args.new_tokens / med["transformers DeepseekV3ForCausalLM.generate"]
    for k, s in med.items():
        print(f"| {k} | {args.new_tokens / s:.0f} | {args.new_tokens / s / ref:.2f} |")


def moe_layer(args):
    import transformers
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE
    c = DeepSeekConfig(**MOE)
    hf = transformers.DeepseekV3Config(hidden_size=512, n_routed_experts=64, num_experts_per_tok=6, n_group=8, topk_group=4,
                                       moe_intermediate_size=256, n_shared_experts=2, routed_scaling_factor=2.5)
    torch.manual_seed(0)
    ours = perturb_(DeepSeekMoE(c), 0.02).eval()
    theirs = DeepseekV3MoE(hf).eval()
    theirs.load_state_dict(ours.state_dict(), strict=False)
    print(f"\n### MoE layer forward (width 512, 64 routed experts of 256, 6 per token, 8 groups / 4, 2 shared)\n")
    print("| tokens | ours (ms) | transformers (ms) | ours / theirs |\n|---|---:|---:|---:|")
    for B, T in ((8, 256), (1, 1), (32, 1)):
        x = torch.randn(B, T, 512)
        with torch.no_grad():
            assert torch.allclose(ours(x), theirs(x), atol=1e-5)
            med = {k: statistics.median(v) for k, v in interleaved({"ours": lambda: ours(x), "theirs": lambda: theirs(x)},
                                                                   args.reps * 4).items()}
        print(f"| {B} x {T} | {1e3 * med['ours']:.2f} | {1e3 * med['theirs']:.2f} | {med['ours'] / med['theirs']:.2f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--long-prompt", type=int, default=1024)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging
    logging.set_verbosity_error()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} thread(s), "
          f"load average {os.getloadavg()[0]:.1f}")
    decoding(args)
    moe_layer(args)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
