"""Shared by the Hugging Face equivalence tests (tests/test_llama_hf.py, tests/test_deepseek_hf.py)."""
from __future__ import annotations

import torch

from transformer_lit.gpt import ragged_batch


def ragged_batch_error(ours, theirs, vocab_size: int, seed: int) -> float:
    """Largest difference of logits on the real tokens of a left-padded batch of three rows (100, 7 and 64
    tokens: past an original context of 64, too): ours with `ragged_batch`'s positions and mask, theirs
    with `transformers`' `attention_mask` and `position_ids`."""
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randint(vocab_size, (n,), generator=g).tolist() for n in (100, 7, 64)]
    idx, positions, attn_mask = ragged_batch(rows)
    real = torch.arange(idx.shape[1]) >= torch.tensor([idx.shape[1] - len(r) for r in rows])[:, None]   # (B, T)
    with torch.no_grad():
        mine = ours(idx, positions=positions, attn_mask=attn_mask)[0]
        ref = theirs(idx, attention_mask=real.long(), position_ids=positions).logits
    return (mine - ref)[real].abs().max().item()
