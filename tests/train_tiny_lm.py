"""Train a tiny language model with `transformer_lit.training.Trainer`; used by tests/test_ddp.py.

The same script runs as one process (`python tests/train_tiny_lm.py ...`) or several
(`python -m torch.distributed.run --nproc_per_node 2 tests/train_tiny_lm.py ...`): the Trainer
runs with `strategy_for(cfg)`, which notices torchrun's environment variables and trains data-parallel. Rank 0 writes the checkpoint
(weights and loss history) to --out. With --report, every rank also writes `rank<R>.json`: the number
of gradient all-reduces DDP ran (one per optimizer step when accumulation skips the others) and a
checksum of its final weights (equal on every rank, dropout or not).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))          # the repository's package, also when not installed

from transformer_lit.tokenizer import CharTokenizer, load_corpus  # noqa: E402
from transformer_lit.checkpoint import Checkpoints  # noqa: E402
from transformer_lit.parallel import strategy_for, teardown_distributed  # noqa: E402
from transformer_lit.training import TrainConfig, Trainer, train_val_split  # noqa: E402


class ContextMLP(nn.Module):
    "A causal language model without attention: each position sees the embeddings of its last `ctx` tokens."

    def __init__(self, vocab_size: int, d: int = 32, ctx: int = 4, dropout: float = 0.0):
        super().__init__()
        self.config = {"vocab_size": vocab_size, "d": d, "ctx": ctx, "dropout": dropout}
        self.ctx = ctx
        self.emb = nn.Embedding(vocab_size, d)
        self.hidden = nn.Linear(ctx * d, 4 * d)
        self.drop = nn.Dropout(dropout)                 # random masks: each process draws its own
        self.norm = nn.LayerNorm(4 * d)
        self.out = nn.Linear(4 * d, vocab_size)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        e = F.pad(self.emb(idx), (0, 0, self.ctx - 1, 0))                      # (B, T+ctx-1, d)
        h = torch.cat([e[:, i:i + T] for i in range(self.ctx)], dim=-1)        # (B, T, ctx*d)
        logits = self.out(self.norm(self.drop(F.gelu(self.hidden(h)))))        # (B, T, V)
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--until", type=int, default=None, help="stop after this step (a run interrupted there)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    ap.add_argument("--report", action="store_true", help="every rank writes rank<R>.json (all-reduces, weights)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)                            # two processes share a 2-core machine
    text = load_corpus()[:100_000]
    tok = CharTokenizer.train(text)
    train, val = train_val_split(torch.tensor(tok.encode(text)))
    torch.manual_seed(0)                                # the same initial weights in every process
    model = ContextMLP(tok.vocab_size, dropout=args.dropout)
    cfg = TrainConfig(block_size=32, batch_size=args.batch_size, grad_accum_steps=args.grad_accum,
                      max_steps=args.steps, lr=3e-3, warmup_steps=5, eval_interval=10, eval_batches=2,
                      device="cpu", progress=False)
    run = Checkpoints(args.out)
    trainer = Trainer(model, train, val, cfg, strategy=strategy_for(cfg), checkpoints=run, tokenizer=tok)
    allreduces = [0]
    if trainer.world_size > 1:                          # count DDP's gradient all-reduces
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        def counting_hook(state, bucket):
            allreduces[0] += 1
            return allreduce_hook(state, bucket)
        trainer.net.register_comm_hook(None, counting_hook)
    if args.resume:
        run.resume(trainer)
    steps_before = trainer.step
    trainer.fit(args.until)
    if args.report:
        weights = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
        Path(args.out, f"rank{trainer.rank}.json").write_text(json.dumps(
            {"allreduces": allreduces[0], "steps": trainer.step - steps_before, "weights_sha256": weights}))
    teardown_distributed()


if __name__ == "__main__":
    main()
