"""Serving under load: throughput, time to first token and time per output token, for four ways to serve.

For 1, 4, 16 and 64 requests that arrive together, with a mix of prompt lengths (8 to 192 tokens) and
answer lengths (16 to 96 tokens), greedy, on a GPT-2-shaped model with random weights:

  (a) one request at a time with `generate_stream` (chapter 10's sampling loop, its own KV cache);
  (b) static batches of up to 16 requests in arrival order, left-padded (`ragged_batch`), each batch decoded
      until its longest answer is done, a request's tokens counted when produced;
  (c) chapter 16's `LLMEngine`: continuous batching over the paged KV cache;
  (d) Hugging Face `transformers`' batched `generate` on the same weights (`gpt_to_hf`), static batches of
      up to 16, left-padded with an attention mask, a streamer timing each token.

Throughput is all output tokens over the time from the arrival to the last token; TTFT and TPOT are
per request, median and 99th percentile. The modes of one level run in a fresh random order. The engine's
greedy answers are checked equal to (a)'s. A benchmark, not a test: read the load average it prints.

    .venv/bin/python benchmarks/serving.py
    .venv/bin/python benchmarks/serving.py --levels 1 4 16 --threads 1
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

import torch

from transformer_lit.gpt import GPT, GPTConfig, generate_stream, ragged_batch
from transformer_lit.hf import gpt_to_hf
from transformer_lit.serving import EngineConfig, LLMEngine, SamplingParams, Sequence, request_metrics


def workload(n: int, vocab: int, seed: int) -> list[tuple[list[int], int]]:
    r = random.Random(seed)
    return [([r.randrange(vocab) for _ in range(r.randint(8, 192))], r.randint(16, 96)) for _ in range(n)]


def new_seqs(reqs, t0):
    return [Sequence(p, SamplingParams(max_tokens=m, temperature=0), arrival=t0) for p, m in reqs]


@torch.no_grad()
def one_at_a_time(model, reqs):
    t0 = time.perf_counter()
    seqs = new_seqs(reqs, t0)
    for s, (p, m) in zip(seqs, reqs):
        for nxt in generate_stream(model, torch.tensor([p]), m, temperature=0):
            s.tokens.append(int(nxt[0]))
            s.token_times.append(time.perf_counter())
    return seqs, t0


@torch.no_grad()
def static_batches(model, reqs, size: int = 16):
    from transformer_lit.gpt import decoding_layout
    t0 = time.perf_counter()
    seqs = new_seqs(reqs, t0)
    with decoding_layout(model):
        for i in range(0, len(reqs), size):
            group, ss = reqs[i:i + size], seqs[i:i + size]
            idx, pos, mask = ragged_batch([p for p, _ in group])
            caches = model.new_caches()
            logits, _ = model(idx, caches=caches, positions=pos, attn_mask=mask, last_only=True)   # (B, 1, V)
            keys = mask[:, 0, -1]                                                 # (B, T): the real prompt columns
            keys[:, -1] = True
            last = pos[:, -1]
            for step in range(max(m for _, m in group)):
                nxt = logits[:, -1].argmax(-1)                                    # (B,)
                now = time.perf_counter()
                for s, (_, m), t in zip(ss, group, nxt.tolist()):
                    if step < m:
                        s.tokens.append(t)
                        s.token_times.append(now)
                last = last + 1
                keys = torch.cat([keys, torch.ones(len(group), 1, dtype=torch.bool)], 1)   # (B, T_k)
                logits, _ = model(nxt[:, None], caches=caches, positions=last[:, None], attn_mask=keys[:, None, None])
    return seqs, t0


ENGINE_STEPS: dict[int, list[dict]] = {}        # the engine's step history, per level: where its time went


@torch.no_grad()
def engine(model, reqs):
    eng = LLMEngine(model, EngineConfig(block_size=16, num_blocks=1024, max_num_seqs=64, max_tokens_per_step=512))
    t0 = time.perf_counter()
    seqs = eng.generate([p for p, _ in reqs], [SamplingParams(max_tokens=m, temperature=0) for _, m in reqs])
    for s in seqs:
        s.arrival = t0
    ENGINE_STEPS[len(reqs)] = list(eng.history)
    return seqs, t0


def step_profile(history: list[dict]) -> str:
    "Seconds in steps that prefill, seconds in decode-only steps, and the median decode-only step by its rows."
    prefill = sum(h["seconds"] for h in history if any(k == "prefill" for _, _, k in h["rows"]))
    by_rows: dict[int, list[float]] = {}
    for h in history:
        if all(k == "decode" for _, _, k in h["rows"]):
            by_rows.setdefault(len(h["rows"]), []).append(h["seconds"])
    medians = ", ".join(f"{b}: {1e3 * statistics.median(v):.1f}" for b, v in sorted(by_rows.items()) if b in (1, 2, 4, 8, 16, 32, 64))
    total = sum(h["seconds"] for h in history)
    return (f"{total:.2f} s in {len(history)} steps, {prefill:.2f} s of them in steps with a prefill; "
            f"median decode-only step (ms) by rows: {medians}")


@torch.no_grad()
def hf_batches(hf, reqs, size: int = 16):
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):
        def __init__(self):
            self.times = []

        def put(self, value):
            self.times.append(time.perf_counter())

        def end(self):
            pass

    t0 = time.perf_counter()
    seqs = new_seqs(reqs, t0)
    for i in range(0, len(reqs), size):
        group, ss = reqs[i:i + size], seqs[i:i + size]
        T = max(len(p) for p, _ in group)
        ids = torch.tensor([[0] * (T - len(p)) + p for p, _ in group])
        att = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p, _ in group])
        clock = Clock()
        M = max(m for _, m in group)
        out = hf.generate(ids, attention_mask=att, max_new_tokens=M, min_new_tokens=M, do_sample=False,
                          pad_token_id=0, streamer=clock)
        times = clock.times[1:]                                               # the first put is the prompt
        for b, (s, (_, m)) in enumerate(zip(ss, group)):
            s.tokens += out[b, T:T + m].tolist()
            s.token_times += times[:m]
    return seqs, t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64], help="concurrent requests")
    ap.add_argument("--n-layer", type=int, default=6)
    ap.add_argument("--n-embd", type=int, default=384)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging
    logging.set_verbosity_error()
    torch.manual_seed(0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}, load average at start {os.getloadavg()[0]:.1f}")
    model = GPT(GPTConfig(vocab_size=args.vocab, block_size=512, n_layer=args.n_layer, n_head=args.n_embd // 64,
                          n_embd=args.n_embd)).eval()
    hf = gpt_to_hf(model)
    print(f"model: GPT-2-shaped, {args.n_layer} layers of width {args.n_embd}, vocabulary {args.vocab}, "
          f"{model.num_params() / 1e6:.1f}M parameters, float32, random weights")
    modes = {"(a) one at a time": lambda r: one_at_a_time(model, r), "(b) static batches": lambda r: static_batches(model, r),
             "(c) engine": lambda r: engine(model, r), "(d) HF generate": lambda r: hf_batches(hf, r)}
    warm = workload(2, args.vocab, seed=99)
    for fn in modes.values():                                                   # first-call costs out of the way
        fn(warm)
    rows = []
    for c in args.levels:
        reqs = workload(c, args.vocab, seed=c)
        names = list(modes)
        random.shuffle(names)
        results = {}
        for name in names:
            seqs, t0 = modes[name](reqs)
            results[name] = (seqs, request_metrics(seqs, t0))
        ref = [s.output for s in results["(a) one at a time"][0]]
        assert [s.output for s in results["(c) engine"][0]] == ref, "the engine's greedy answers differ from generate's"
        for name in modes:
            rows.append((c, name, results[name][1]))
        base = results["(a) one at a time"][1]["throughput"]
        for name in modes:
            m = results[name][1]
            print(f"C={c:3d} {name:20s} {m['throughput']:8.0f} tok/s ({m['throughput'] / base:4.1f}x)  "
                  f"TTFT {1e3 * m['ttft_p50']:7.0f} / {1e3 * m['ttft_p99']:7.0f} ms  "
                  f"TPOT {1e3 * m['tpot_p50']:6.1f} / {1e3 * m['tpot_p99']:6.1f} ms", flush=True)
    for c, history in ENGINE_STEPS.items():
        if c in args.levels:
            print(f"engine at C={c}: {step_profile(history)}")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}\n")
    print("| concurrent | mode | tokens/s | vs (a) | TTFT p50 (ms) | TTFT p99 (ms) | TPOT p50 (ms) | TPOT p99 (ms) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for c, name, m in rows:
        base = next(r[2]["throughput"] for r in rows if r[0] == c and r[1] == "(a) one at a time")
        print(f"| {c} | {name} | {m['throughput']:.0f} | {m['throughput'] / base:.1f}x | {1e3 * m['ttft_p50']:.0f} | "
              f"{1e3 * m['ttft_p99']:.0f} | {1e3 * m['tpot_p50']:.1f} | {1e3 * m['tpot_p99']:.1f} |")


if __name__ == "__main__":
    main()
