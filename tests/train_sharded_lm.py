"""Train chapter 10's GPT (a tiny one: 2 blocks, tied embedding and output weights) with chapter 8's Trainer and chapter 9's strategies;
used by tests/test_fsdp.py.

One process: `python tests/train_sharded_lm.py --out DIR`. Sharded over two CPU processes (gloo):
`python -m torch.distributed.run --nproc_per_node 2 tests/train_sharded_lm.py --strategy fsdp --out DIR`.
With --report every rank writes `rank<R>.json`: how many parameter numbers it holds locally (about half
the model under FSDP: each block and the root are split between the processes) and in all.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))          # the repository's package, also when not installed

from transformer_lit.gpt import GPT, GPTConfig  # noqa: E402
from transformer_lit.tokenizer import CharTokenizer, load_corpus  # noqa: E402
from transformer_lit.checkpoint import Checkpoints  # noqa: E402
from transformer_lit.parallel import strategy_for, teardown_distributed  # noqa: E402
from transformer_lit.training import TrainConfig, Trainer, train_val_split  # noqa: E402


def model_config(vocab_size: int) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--strategy", default="ddp")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--until", type=int, default=None, help="stop after this step (a run interrupted there)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    ap.add_argument("--report", action="store_true", help="every rank writes rank<R>.json (local parameter count)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)                            # two processes share a 2-core machine
    text = load_corpus()[:100_000]
    tok = CharTokenizer.train(text)
    train, val = train_val_split(torch.tensor(tok.encode(text)))
    torch.manual_seed(0)                                # the same initial weights in every process
    model = GPT(model_config(tok.vocab_size))
    cfg = TrainConfig(block_size=32, batch_size=args.batch_size, grad_accum_steps=args.grad_accum,
                      max_steps=args.steps, lr=3e-3, warmup_steps=5, eval_interval=10, eval_batches=2,
                      device="cpu", strategy=args.strategy, precision=args.precision, progress=False)
    run = Checkpoints(args.out)
    trainer = Trainer(model, train, val, cfg, strategy=strategy_for(cfg), checkpoints=run, tokenizer=tok)
    if args.resume:
        run.resume(trainer)
    trainer.fit(args.until)
    if args.report:
        local = sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in trainer.model.parameters())
        total = sum(p.numel() for p in trainer.model.parameters())
        Path(args.out, f"rank{trainer.rank}.json").write_text(json.dumps({"local": local, "total": total}))
    teardown_distributed()


if __name__ == "__main__":
    main()
