"""Mixed precision, compilation and the attention-kernel probe of chapter 8's Trainer with chapter 9's strategies, on the CPU.

- bf16 autocast tracks float32: chapter 10's GPT (a small one) trained 60 steps from the same weights on
  the same batches; every step's training loss within 0.03 nats of the float32 run's and the final
  validation loss within 0.02 (measured on this machine: about 0.005 and 0.002; bfloat16 keeps 8 bits of
  mantissa, so per-step losses differ in the third digit).
- torch.compile gives the eager run's losses: 4 steps, every loss within 1e-4 (measured: a few 1e-7;
  inductor fuses and reorders float32 sums). The first compilation costs about 20 s here: that is most of
  this file's time (`pytest -s` prints it).
- fp16 with a gradient scaler: this CPU has no native float16 (no AMX-FP16), so the Trainer refuses
  precision='fp16' with a ValueError; with the check patched out (PyTorch emulates float16 on any CPU),
  the scaler path runs: the losses track float32, an overflowing step is skipped (weights unchanged, the
  scale halved) and the scaler's state survives a checkpoint.
"""
from __future__ import annotations

import math
import time

import pytest
import torch

from transformer_lit.attention import raises
from transformer_lit.gpt import GPT, GPTConfig
from transformer_lit.tokenizer import CharTokenizer, load_corpus
import transformer_lit.parallel as parallel
from transformer_lit.checkpoint import Checkpoints
from transformer_lit.parallel import autocast_dtype, sdpa_kernel, strategy_for
from transformer_lit.training import TrainConfig, Trainer, train_val_split

torch.set_num_threads(1)
TEXT = load_corpus()[:200_000]
TOK = CharTokenizer.train(TEXT)
TRAIN, VAL = train_val_split(torch.tensor(TOK.encode(TEXT)))


def run(precision="fp32", steps=60, compile=False, out_dir=None, until=None, resume=False, **model):
    "A small GPT trained `steps` steps with `precision`; returns the trainer."
    torch.manual_seed(0)
    fields = dict(vocab_size=TOK.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=64) | model
    cfg = TrainConfig(block_size=fields["block_size"], batch_size=8, max_steps=steps, lr=3e-3, warmup_steps=min(5, steps),
                      eval_interval=steps, eval_batches=4, device="cpu", precision=precision, compile=compile,
                      progress=False)
    ck = None if out_dir is None else Checkpoints(out_dir)
    t = Trainer(GPT(GPTConfig(**fields)), TRAIN, VAL, cfg, strategy=strategy_for(cfg), checkpoints=ck, tokenizer=TOK)
    if resume:
        ck.resume(t)
    t.fit(until)
    return t


def test_bf16_tracks_fp32():
    fp32, bf16 = run("fp32"), run("bf16")
    gaps = [abs(a - b) for a, b in zip(fp32.history["loss"], bf16.history["loss"])]
    gap, mean_gap = max(gaps), sum(gaps) / len(gaps)
    val_gap = abs(fp32.history["val_eval"][-1] - bf16.history["val_eval"][-1])
    print(f"bf16 vs fp32 over 60 steps: largest loss difference {gap:.4f}, mean {mean_gap:.4f}, final validation "
          f"{val_gap:.4f} ({fp32.history['val_eval'][-1]:.4f} vs {bf16.history['val_eval'][-1]:.4f})")
    assert bf16.strategy.amp_dtype == torch.bfloat16 and fp32.strategy.amp_dtype is None
    assert fp32.history["loss"][-1] < fp32.history["loss"][0] - 0.5          # both runs learn
    assert bf16.history["loss"][-1] < bf16.history["loss"][0] - 0.5
    assert gap < 0.12 and mean_gap < 0.03 and val_gap < 0.05
    assert gap > 0                                                             # bf16 did change the arithmetic


def test_compile_matches_eager():
    eager = run(steps=4, n_layer=1)
    t0 = time.perf_counter()
    compiled = run(steps=4, n_layer=1, compile=True)
    seconds = time.perf_counter() - t0
    gap = max(abs(a - b) for a, b in zip(eager.history["loss"], compiled.history["loss"]))
    print(f"compiled vs eager, 4 steps: largest loss difference {gap:.2e}; the compiled run took {seconds:.1f} s")
    assert compiled.net is not compiled.model and hasattr(compiled.net, "_orig_mod")   # it really was compiled
    assert gap < 1e-4
    for a, b in zip(eager.model.state_dict().values(), compiled.model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_fp16_is_refused_on_a_cpu_without_it():
    if parallel.cpu_has_fp16():
        pytest.skip("this CPU computes float16 natively (AMX-FP16)")
    raises(ValueError, autocast_dtype, torch.device("cpu"), "fp16", match="needs a GPU or a CPU with native float16")
    raises(ValueError, run, "fp16", steps=1, match="AMX-FP16")
    raises(ValueError, TrainConfig, precision="fp8", match="precision must be one of ['auto', 'fp32', 'bf16', 'fp16'], got 'fp8'")
    raises(ValueError, TrainConfig, strategy="zero3", match="strategy must be one of ['ddp', 'fsdp'], got 'zero3'")
    cfg = TrainConfig(block_size=32, batch_size=2, max_steps=1, warmup_steps=0, device="cpu", strategy="fsdp")
    raises(ValueError, strategy_for, cfg, match="strategy='fsdp' shards the model over the processes that torchrun starts")
    raises(ValueError, Trainer, GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32)),
           TRAIN, VAL, cfg, match="need chapter 9's strategies")         # the default strategy: one process, float32


def test_fp16_gradient_scaler(monkeypatch, tmp_path):
    monkeypatch.setattr(parallel, "cpu_has_fp16", lambda: True)            # emulated float16: slow, but it runs
    fp32, fp16 = run("fp32", steps=20), run("fp16", steps=20)
    assert fp16.strategy.amp_dtype == torch.float16 and fp16.strategy.scaler.is_enabled() and not fp32.strategy.scaler.is_enabled()
    gap = max(abs(a - b) for a, b in zip(fp32.history["loss"], fp16.history["loss"]))
    print(f"fp16 vs fp32 over 20 steps: largest loss difference {gap:.2e}; loss scale {fp16.strategy.scaler.get_scale():g}")
    assert 0 < gap < 0.02
    # An overflowing step is skipped: a scale of 2^60 makes the float16 gradients infinite.
    torch.manual_seed(0)
    cfg16 = TrainConfig(block_size=32, batch_size=4, max_steps=3, warmup_steps=0, eval_interval=0, device="cpu",
                        precision="fp16", progress=False)
    t = Trainer(GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32)), TRAIN, VAL,
                cfg16, strategy=strategy_for(cfg16))
    t.strategy.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 60)
    before = [p.detach().clone() for p in t.model.parameters()]
    s = t.train_step()
    assert not math.isfinite(s["grad_norm"]) and t.strategy.scaler.get_scale() == 2.0 ** 59
    assert all(torch.equal(a, b) for a, b in zip(before, t.model.parameters()))   # the step was skipped
    # The scaler's state is saved and restored: a resumed fp16 run continues exactly.
    straight = run("fp16", steps=10, out_dir=tmp_path / "straight")
    run("fp16", steps=10, out_dir=tmp_path / "cut", until=5)
    resumed = run("fp16", steps=10, out_dir=tmp_path / "cut", resume=True)
    assert resumed.history["loss"] == straight.history["loss"]
    assert resumed.strategy.scaler.get_scale() == straight.strategy.scaler.get_scale()


def test_the_attention_kernel_is_found():
    x = torch.randint(TOK.vocab_size, (1, 16))
    small = dict(vocab_size=TOK.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=32)
    assert sdpa_kernel(GPT(GPTConfig(**small)), x) == "flash (CPU)"          # the fused CPU kernel
    assert sdpa_kernel(GPT(GPTConfig(**small, dropout=0.1)), x) == "math"     # dropout: the CPU falls back to math
    assert sdpa_kernel(torch.nn.Embedding(TOK.vocab_size, 4), x) == "none"
    with_dropout = GPT(GPTConfig(**small, dropout=0.1))
    state = torch.get_rng_state()
    sdpa_kernel(with_dropout, x, torch.bfloat16)
    assert torch.equal(state, torch.get_rng_state())                         # the probe draws no random numbers
    t = run(steps=1)
    assert t.strategy.describe(t.model, x[:, :16]) == "attention kernel: flash (CPU)"


def test_the_kernel_probe_leaves_the_model_as_it_was():
    "A training-mode forward may update buffers (a router's balancing bias): the probe restores them, and stops."
    import torch.nn.functional as F

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("before", torch.zeros(3))
            self.register_buffer("after", torch.zeros(3))

        def forward(self, idx):
            x = torch.randn(1, 2, idx.shape[1], 8)
            if self.training:
                self.before += 1                                  # in place, before the attention
                self.before = self.before * 2                     # and reassigned
            y = F.scaled_dot_product_attention(x, x, x, is_causal=True)
            self.after += 1                                       # not reached: the probe stops at the attention
            return y

    m = Counting()
    before, after = m.before, m.after
    assert sdpa_kernel(m, torch.zeros(1, 16, dtype=torch.long)) == "flash (CPU)"
    assert m.before is before and m.after is after and not m.before.any() and not m.after.any()
