"""Milliseconds per training step, measured side by side: what the `Trainer` and our GPT cost.

Three comparisons, each timed interleaved (`_timing.interleaved`: a fresh random order at every repetition,
so a background load hits all candidates alike), reported as medians, at one thread and at two:

(a) a `Trainer` step (chapter 8: window drawing, forward, backward, clipping, fused AdamW, schedule,
    bookkeeping) against a bare loop (forward, backward, clip, the same optimizer step) around an identical
    GPT, on the same kind of batches. Target: ratio <= 1.02.
(b) at the CLI recipe (4 layers, 128 wide, 64 tokens, batch 12; the default corpus's characters) our GPT (chapter 10) against
    a minimal GPT written below with plain `nn.Linear`, `F.scaled_dot_product_attention` and `nn.LayerNorm`
    (same shapes, same weights, no checks, no hooks), trained with a default `torch.optim.AdamW`:
    forward+backward (target <= 1.00) and the whole optimizer step, ours as the Trainer runs it (fused AdamW,
    `make_optimizer`), theirs with the default AdamW (target <= 0.95). The first step checks that both
    models give the same loss.
(c) with `--recipe`: the wall time of the whole `transformer-lit train` recipe (its defaults, 2000 steps),
    once per thread count, in a subprocess.

    .venv/bin/python benchmarks/train_step.py
    .venv/bin/python benchmarks/train_step.py --reps 50 --recipe
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved  # noqa: E402

from transformer_lit.gpt import GPT, GPTConfig  # noqa: E402
from transformer_lit.training import TrainConfig, Trainer, get_batch, make_optimizer  # noqa: E402

RECIPE = dict(vocab_size=0, block_size=64, n_layer=4, n_head=4, n_embd=128)   # vocab_size: the corpus's characters
B = 12


class MiniBlock(nn.Module):
    "A pre-norm GPT-2 block in plain PyTorch: no checks, no hooks."

    def __init__(self, C: int, nh: int):
        super().__init__()
        self.nh = nh
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.fc, self.fc2 = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):                                                        # (B, T, C)
        Bx, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(Bx, T, 3, self.nh, C // self.nh).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)             # (B, nh, T, hs)
        x = x + self.proj(y.transpose(1, 2).reshape(Bx, T, C))
        return x + self.fc2(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class MiniGPT(nn.Module):
    "GPT-2 in plain PyTorch: token and learned position embeddings, blocks, final norm, tied output layer."

    def __init__(self, V: int, T: int, L: int, nh: int, C: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.blocks = nn.ModuleList(MiniBlock(C, nh) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        self.lm_head = nn.Linear(C, V, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))                # (B, T, C)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))                                      # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def copy_weights(ours: GPT, mini: MiniGPT):
    "Our GPT's weights into the minimal one (the same arithmetic: the first losses must agree)."
    sd = ours.state_dict()
    names = {"ln1.weight": "norm1.weight", "ln1.bias": "norm1.bias", "qkv.weight": "self_attn.in_proj.weight",
             "qkv.bias": "self_attn.in_proj.bias", "proj.weight": "self_attn.out_proj.weight",
             "proj.bias": "self_attn.out_proj.bias", "ln2.weight": "norm2.weight", "ln2.bias": "norm2.bias",
             "fc.weight": "ff.linear1.weight", "fc.bias": "ff.linear1.bias", "fc2.weight": "ff.linear2.weight",
             "fc2.bias": "ff.linear2.bias"}
    theirs = {"wte.weight": "tok_emb.weight", "wpe.weight": "pos_enc.weight", "ln_f.weight": "ln_f.weight",
              "ln_f.bias": "ln_f.bias", **{f"blocks.{i}.{m}": f"blocks.{i}.{o}" for i in range(len(mini.blocks))
                                           for m, o in names.items()}}
    mini.load_state_dict({**{m: sd[o] for m, o in theirs.items()}, "lm_head.weight": sd["tok_emb.weight"]})


def ms(times: dict) -> dict:
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def trainer_vs_bare(reps: int, data: torch.Tensor) -> dict:
    cfg = TrainConfig(block_size=RECIPE["block_size"], batch_size=B, max_steps=10 ** 6, lr=1e-3, warmup_steps=100,
                      eval_interval=0, device="cpu", progress=False)
    torch.manual_seed(0)
    t_model, b_model = GPT(GPTConfig(**RECIPE)), GPT(GPTConfig(**RECIPE))
    b_model.load_state_dict(t_model.state_dict())
    trainer = Trainer(t_model, data, None, cfg)
    opt = make_optimizer(b_model, cfg)
    params = [p for g in opt.param_groups for p in g["params"]]
    g = torch.Generator().manual_seed(1)

    def bare():
        x, y = get_batch(data, cfg.block_size, B, g)
        loss = b_model(x, y)[1]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return ms(interleaved({"Trainer.train_step": trainer.train_step, "bare loop": bare}, reps, warmup=3))


def ours_vs_minimal(reps: int) -> tuple[dict, dict, float]:
    torch.manual_seed(0)
    ours = GPT(GPTConfig(**RECIPE)).train()
    mini = MiniGPT(RECIPE["vocab_size"], RECIPE["block_size"], RECIPE["n_layer"], RECIPE["n_head"], RECIPE["n_embd"]).train()
    copy_weights(ours, mini)
    x = torch.randint(RECIPE["vocab_size"], (B, RECIPE["block_size"]))
    y = torch.randint(RECIPE["vocab_size"], (B, RECIPE["block_size"]))
    gap = abs(ours(x, y)[1].item() - mini(x, y).item())
    if gap > 1e-4:
        raise RuntimeError(f"the two models disagree on the loss ({gap:.2e}): not the same arithmetic")
    cfg = TrainConfig(block_size=RECIPE["block_size"], batch_size=B, lr=1e-3, device="cpu")
    o_opt, m_opt = make_optimizer(ours, cfg), torch.optim.AdamW(mini.parameters(), lr=1e-3, betas=(0.9, 0.95),
                                                                 weight_decay=0.1)
    o_params = [p for g in o_opt.param_groups for p in g["params"]]

    def fb(model, loss_of):
        def run():
            loss_of().backward()
            model.zero_grad(set_to_none=True)
        return run

    def step(model, loss_of, opt, params):
        def run():
            loss_of().backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run

    fwd_bwd = ms(interleaved({"ours": fb(ours, lambda: ours(x, y)[1]), "minimal": fb(mini, lambda: mini(x, y))},
                             reps, warmup=3))
    whole = ms(interleaved({"ours": step(ours, lambda: ours(x, y)[1], o_opt, o_params),
                            "minimal": step(mini, lambda: mini(x, y), m_opt, list(mini.parameters()))}, reps, warmup=3))
    return fwd_bwd, whole, gap


def recipe_wall_time(threads: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "transformer_lit.cli", "train", "--out", str(Path(d) / "run"),
                        "--no-progress", "--device", "cpu"], check=True, env=env, capture_output=True)
        return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=40, help="timed repetitions per candidate")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads to measure at")
    ap.add_argument("--recipe", action="store_true", help="also time the whole `transformer-lit train` recipe")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"load average at start {os.getloadavg()[0]:.2f}")
    from transformer_lit.tokenizer import CharTokenizer, load_corpus
    text = load_corpus()
    tok = CharTokenizer.train(text)
    RECIPE["vocab_size"] = tok.vocab_size
    data = torch.tensor(tok.encode(text))
    rows = []
    for n in args.threads:
        torch.set_num_threads(n)
        a = trainer_vs_bare(args.reps, data)
        fb, whole, gap = ours_vs_minimal(args.reps)
        rows += [(n, "(a) Trainer step / bare loop (same GPT)", a["Trainer.train_step"], a["bare loop"], "<= 1.02"),
                 (n, "(b) forward+backward: ours / minimal GPT", fb["ours"], fb["minimal"], "<= 1.00"),
                 (n, "(b) whole step: ours (fused AdamW) / minimal (default AdamW)", whole["ours"], whole["minimal"], "<= 0.95")]
    print(f"\n{'threads':>7} | {'comparison':<62} | {'ms':>7} | {'ms':>7} | {'ratio':>6} | target")
    for n, name, a, b, target in rows:
        print(f"{n:>7} | {name:<62} | {a:7.2f} | {b:7.2f} | {a / b:6.3f} | {target}")
    if args.recipe:
        for n in args.threads:
            print(f"(c) transformer-lit train (the recipe, 2000 steps), {n} thread(s): {recipe_wall_time(n):.1f} s wall")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
