"""Training throughput and model FLOPs utilisation (MFU) of chapter 8's Trainer on chapter 10's GPT.

For each shape, precision (fp32, bf16) and mode (eager, `torch.compile`) the script builds a GPT and a
`Trainer` and times `Trainer.train_step()` (forward, backward, clipping, AdamW: the library's own step,
data gather included), interleaved: every repetition runs one step of each variant, in a fresh random
order, so a background load hits all alike. It prints a table of median tokens/s and MFU.

FLOPs per token, forward and backward (Kaplan et al. 2020; PaLM, Chowdhery et al. 2022, appendix B):

    6 * N  +  12 * L * T * d

N counts the parameters that take part in matrix products: all but the position embedding (a tied
output layer counts once, for its product; the token lookup costs nothing), L the blocks, T the context,
d the width. MFU = FLOPs per token * tokens/s / the device's peak.

Peaks, per device (dense, no sparsity):
- NVIDIA H100 SXM and H200: 989 TFLOPS bf16, 495 TFLOPS TF32 (NVIDIA's H100/H200 data sheets; the H200
  has the H100 SXM's compute and more memory). H100 PCIe: 756 / 378. A100: 312 / 156. fp32 runs use the
  TF32 peak, because the Trainer enables TF32 on CUDA.
- Any other device, this CPU included: the peak is *measured*: a 2048 x 2048 x 2048 matrix product in
  float32 and in bfloat16 on the threads the benchmark uses, timed in every repetition among the
  training steps (so under the same background load), median. It is what this machine's matrix library
  reaches, not a data-sheet number; `--peak-tflops` overrides it.

Shapes: GPT-2 small (124M: 12 x 768, vocabulary 50,257) at T = 1024 and chapter 10's CPU recipe (4 x 128,
T = 64, B = 12, characters). On a machine without CUDA the GPT-2 shape runs at T = 64, B = 2, eager only
(compiling 124M parameters for the CPU takes minutes), so that the whole script takes a few minutes;
on CUDA everything runs at full size.

    .venv/bin/python benchmarks/throughput.py                  # this machine's table
    .venv/bin/python benchmarks/throughput.py --threads 1 --reps 10
    python benchmarks/throughput.py --batch-size 16            # on a GPU: GPT-2 124M at B = 16, T = 1024
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

import torch

from transformer_lit.gpt import GPT, GPTConfig
from transformer_lit.parallel import strategy_for
from transformer_lit.training import TrainConfig, Trainer, windows

# name pattern in torch.cuda.get_device_name() -> (bf16 dense peak, TF32 dense peak), FLOP/s. Order matters.
GPU_PEAKS = [("H200", "NVIDIA H200", 989e12, 495e12),
             ("H100 PCIe", "NVIDIA H100 PCIe", 756e12, 378e12),
             ("H100", "NVIDIA H100 SXM", 989e12, 495e12),
             ("A100", "NVIDIA A100", 312e12, 156e12)]


def flops_per_token(c: GPTConfig) -> float:
    "6 N + 12 L T d: forward and backward, N = the parameters in matrix products (not the position embedding)."
    model = GPT(c) if isinstance(c, GPTConfig) else c
    n = sum(p.numel() for p in model.parameters())
    if model.pos_enc is not None:
        n -= sum(p.numel() for p in model.pos_enc.parameters())
    return 6 * n + 12 * c.n_layer * c.block_size * c.n_embd


def matmul_step(device: torch.device, dtype: torch.dtype, n: int = 2048):
    "A function that runs one n x n x n matrix product in `dtype` on `device`; its FLOPs are 2 n^3."
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)

    def step():
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
    return step, 2 * n ** 3


def table_peaks(device: torch.device, override: float | None) -> tuple[str, dict | None]:
    "(how the peak is found, {precision: FLOP/s}), or None: measure it."
    if override:
        return f"given: {override:g} TFLOPS", {"fp32": override * 1e12, "bf16": override * 1e12}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for pattern, label, bf16, tf32 in GPU_PEAKS:
            if pattern in name:
                return (f"{label} data sheet, dense: bf16 {bf16 / 1e12:.0f} TFLOPS, TF32 {tf32 / 1e12:.0f} TFLOPS "
                        f"(device: {name})"), {"bf16": bf16, "fp32": tf32}
    return (f"measured on this {device.type} ({torch.get_num_threads()} threads): median 2048^3 matrix product, "
            f"timed among the training steps"), None


def make_trainer(fields: dict, B: int, precision: str, compile: bool, device: torch.device) -> Trainer:
    torch.manual_seed(0)
    c = GPTConfig(**fields)
    data = torch.randint(c.vocab_size, (max(200_000, 4 * B * c.block_size),))
    cfg = TrainConfig(block_size=c.block_size, batch_size=B, max_steps=10_000, warmup_steps=10, eval_interval=0,
                      device=str(device), precision=precision, compile=compile, progress=False)
    return Trainer(GPT(c), data, None, cfg, strategy=strategy_for(cfg))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=None, help="timed steps per variant (default: 20 small, 5 large)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--batch-size", type=int, default=None, help="batch of the GPT-2 shape (default: 8 on CUDA, 2 on CPU)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, instead of the table/measurement")
    ap.add_argument("--compile-large", action="store_true", help="also compile the GPT-2 shape on a CPU (minutes)")
    ap.add_argument("--only", choices=["gpt2", "recipe"], default=None, help="one shape only")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    random.seed(0)
    how, peaks = table_peaks(device, args.peak_tflops)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if cuda else "")
          + f"; load average {os.getloadavg()[0]:.1f}")
    print(f"peak: {how}")
    gpt2 = dict(vocab_size=50257, block_size=1024 if cuda else 64, n_layer=12, n_head=12, n_embd=768)
    recipe = dict(vocab_size=76, block_size=64, n_layer=4, n_head=4, n_embd=128)
    shapes = {"gpt2": (f"GPT-2 124M (T={gpt2['block_size']}, B={args.batch_size or (8 if cuda else 2)})", gpt2,
                       args.batch_size or (8 if cuda else 2), cuda or args.compile_large),
              "recipe": ("chapter 10 recipe (4x128, T=64, B=12)", recipe, 12, True)}
    rows = []
    for key, (label, fields, B, compile_ok) in shapes.items():
        if args.only and key != args.only:
            continue
        variants = [(p, m) for p in ("fp32", "bf16") for m in ("eager", "compiled") if m == "eager" or compile_ok]
        trainers = {v: make_trainer(fields, B, v[0], v[1] == "compiled", device) for v in variants}
        fpt = flops_per_token(GPTConfig(**fields))
        tokens = B * fields["block_size"]
        reps = args.reps or (20 if fields["n_embd"] <= 256 else 5)
        steps = {v: trainers[v].train_step for v in variants}      # each ends with .item(): synchronised
        matmuls = {}
        if peaks is None:                                           # the peak, measured among the steps
            for p, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                steps[("peak", p)], matmuls[p] = matmul_step(device, dtype)
        times = {v: [] for v in steps}
        order = list(steps)
        for rep in range(args.warmup + reps):
            random.shuffle(order)
            for v in order:
                t0 = time.perf_counter()
                steps[v]()
                if rep >= args.warmup:
                    times[v].append(time.perf_counter() - t0)
        peak = peaks or {p: flops / statistics.median(times[("peak", p)]) for p, flops in matmuls.items()}
        for v in variants:
            tok_s = tokens / statistics.median(times[v])
            rows.append((label, *v, tok_s, fpt * tok_s, peak[v[0]], reps))
        for v in [v for v in [(p, m) for p in ("fp32", "bf16") for m in ("eager", "compiled")] if v not in variants]:
            rows.append((label, *v, None, None, peak[v[0]], 0))
        t = trainers[variants[0]]
        kernel = t.strategy.describe(t.model, windows(t.train_data, torch.zeros(1, dtype=torch.long), t.cfg.block_size)[0])
        print(f"{label}: {fpt / 1e6:.1f} MFLOP per token; {kernel}")
        del trainers
    print()
    print(f"load average at the end {os.getloadavg()[0]:.1f}\n")
    print("| shape | precision | mode | tokens/s | achieved TFLOPS | peak TFLOPS | MFU | steps |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for label, prec, mode, tok_s, achieved, peak, reps in rows:
        if tok_s is None:
            print(f"| {label} | {prec} | {mode} | not run | | {peak / 1e12:.3g} | | |")
        else:
            print(f"| {label} | {prec} | {mode} | {tok_s:,.0f} | {achieved / 1e12:.3g} | {peak / 1e12:.3g} | "
                  f"{100 * achieved / peak:.1f}% | {reps} |")
    print("\nmedians over interleaved steps; MFU = (6 N + 12 L T d) x tokens/s / peak. On a CPU the peak is the "
          "measured matrix-product peak, so MFU there says how close the step comes to the matrix library.")


if __name__ == "__main__":
    main()
