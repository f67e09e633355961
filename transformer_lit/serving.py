import argparse
import asyncio
import hashlib
import itertools
import json
import math
import queue
import signal
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import JsonConfig, check_float, check_int, check_tensor
from .gpt import GPT, decoding_layout, generate, next_token_probs
from .multi_head import KVCache

def linear_intensity(tokens: int, d_in: int, d_out: int, dtype_bytes: int = 4) -> float:
    """Arithmetic intensity (FLOPs per byte moved) of `y = x W` for `tokens` rows of `x (tokens, d_in)` and
    `W (d_in, d_out)`: `2 tokens d_in d_out` FLOPs over the bytes of `W`, `x` and `y`."""
    where = "linear_intensity"
    n, a, b = (check_int(v, name, where) for v, name in ((tokens, "tokens"), (d_in, "d_in"), (d_out, "d_out")))
    check_int(dtype_bytes, "dtype_bytes", where)
    return 2 * n * a * b / (dtype_bytes * (a * b + n * a + n * b))


@torch.no_grad()
def measure_matmul(tokens, d_in: int = 768, d_out: int = 3072, repeats: int = 5) -> list[dict]:
    """Time `x (n, d_in) @ W (d_in, d_out)` in float32 for each `n` in `tokens`: one dict per `n` with the
    `intensity` (FLOPs per byte, `linear_intensity`), the `seconds` (median of `repeats`) and `gflops`."""
    check_int(repeats, "repeats", "measure_matmul")
    W = torch.randn(d_in, d_out)
    out = []
    for n in tokens:
        x = torch.randn(check_int(n, "tokens", "measure_matmul"), d_in)
        x @ W                                                                  # warm up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            x @ W
            times.append(time.perf_counter() - t0)
        s = sorted(times)[len(times) // 2]
        out.append({"tokens": n, "intensity": linear_intensity(n, d_in, d_out), "seconds": s,
                    "gflops": 2 * n * d_in * d_out / s / 1e9})
    return out

@torch.no_grad()
def measure_bandwidth(megabytes: int = 64, repeats: int = 5) -> float:
    "Memory bandwidth in GB/s: a float32 copy of `megabytes` (read once, written once), median of `repeats`."
    x = torch.empty(check_int(megabytes, "megabytes", "measure_bandwidth") * (1 << 20) // 4)
    y = torch.empty_like(x)
    times = []
    for _ in range(check_int(repeats, "repeats", "measure_bandwidth") + 1):
        t0 = time.perf_counter()
        y.copy_(x)
        times.append(time.perf_counter() - t0)
    return 2 * x.nbytes / sorted(times[1:])[repeats // 2] / 1e9


def plot_roofline(points: list[dict], bandwidth: float, ax=None):
    "Measured GFLOP/s of `measure_matmul` against arithmetic intensity, with the memory roof `bandwidth * I` and the best measured rate."
    import matplotlib.pyplot as plt
    ax = ax or plt.subplots(figsize=(6, 3.6))[1]
    I = [p["intensity"] for p in points]
    peak = max(p["gflops"] for p in points)
    xs = torch.logspace(math.log10(min(I) / 2), math.log10(max(I) * 2), 100).tolist()
    ax.plot(xs, [min(peak, bandwidth * x) for x in xs], "k--", lw=1, label=f"roof: min({peak:.0f}, {bandwidth:.0f} GB/s x I)")
    ax.plot(I, [p["gflops"] for p in points], "o-", label="measured x @ W")
    for p in points:
        ax.annotate(str(p["tokens"]), (p["intensity"], p["gflops"]), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP per byte)", ylabel="GFLOP/s",
           title="tokens per product (labels): decode = 1, a batch of B decodes = B")
    ax.legend(fontsize=8)
    return ax

@dataclass
class SamplingParams(JsonConfig):
    """How one request is decoded: `temperature` 0 is greedy; `top_k`, `top_p` filter as in chapter 10's
    `next_token_probs`; `seed` gives the request its own random generator (the same text alone or in a
    batch); `max_tokens` new tokens at most; generation stops after a token of `stop_token_ids` or when the
    text contains one of `stop` (the text is cut before it)."""
    max_tokens: int = 16
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)

    def __post_init__(self):
        where = "SamplingParams"
        check_int(self.max_tokens, "max_tokens", where)
        check_float(self.temperature, "temperature", where, minimum=0)
        if self.top_k is not None:
            check_int(self.top_k, "top_k", where)
        if self.top_p is not None:
            check_float(self.top_p, "top_p", where, 0, 1, min_inclusive=False)
        if self.seed is not None:
            check_int(self.seed, "seed", where, minimum=0)
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if not isinstance(self.stop, (list, tuple)) or not all(isinstance(s, str) and s for s in self.stop):
            raise TypeError(f"{where}: stop must be a list of non-empty strings, got {self.stop!r}")
        if not isinstance(self.stop_token_ids, (list, tuple)) or not all(
                isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in self.stop_token_ids):
            raise TypeError(f"{where}: stop_token_ids must be a list of token ids (ints >= 0), got {self.stop_token_ids!r}")
        self.stop, self.stop_token_ids = list(self.stop), list(self.stop_token_ids)

WAITING, RUNNING, FINISHED = "waiting", "running", "finished"


class Sequence:
    """One request inside the engine: its tokens (prompt, then output), how many of them have their keys and
    values in the cache (`num_computed`), its block table, its sampling settings and its timings."""
    _ids = itertools.count()

    def __init__(self, prompt: list[int], params: SamplingParams, request_id=None, arrival: float | None = None):
        self.request_id = next(self._ids) if request_id is None else request_id
        self.tokens = list(prompt)
        self.prompt_len = len(prompt)
        self.params = params
        self.status = WAITING
        self.num_computed = 0                 # tokens whose keys and values are in the cache
        self.num_cached = 0                   # of the prompt, found in the prefix cache at admission
        self.block_table: list[int] = []
        self.hashes: list[bytes] = []         # hash of each full, computed block, in order
        self.generator = None if params.seed is None else torch.Generator().manual_seed(params.seed)
        self.text = ""
        self.finish_reason = None
        self.arrival = time.perf_counter() if arrival is None else arrival
        self.token_times: list[float] = []    # when each output token was produced
        self.preemptions = 0

    @property
    def output(self) -> list[int]:
        "The generated tokens."
        return self.tokens[self.prompt_len:]

    @property
    def num_uncomputed(self) -> int:
        "Tokens the model has not read yet: the rest of the prompt in a prefill, the last sampled token when decoding."
        return len(self.tokens) - self.num_computed

    def __repr__(self):
        return (f"Sequence({self.request_id!r}, {self.status}, tokens={len(self.tokens)}, "
                f"computed={self.num_computed}, blocks={self.block_table})")

def block_hash(parent: bytes, tokens) -> bytes:
    "The prefix-cache key of a full block: SHA-256 of the previous block's key and this block's token ids."
    h = hashlib.sha256(parent)
    h.update(b"".join(int(t).to_bytes(8, "little") for t in tokens))
    return h.digest()


class BlockManager:
    """Hands out the `num_blocks` blocks of `block_size` positions of the paged KV cache. A sequence's block
    table grows on demand and is freed when it finishes. With `prefix_caching`, a full block is also known by
    `block_hash` of its tokens and of the prefix before it: a new sequence whose prompt starts with the same
    blocks shares them (a reference count per block), and a freed block keeps its contents, evicted least
    recently used, only when a block is needed."""

    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = True):
        self.num_blocks = check_int(num_blocks, "num_blocks", "BlockManager")
        self.block_size = check_int(block_size, "block_size", "BlockManager")
        self.prefix_caching = bool(prefix_caching)
        self.free: deque[int] = deque(range(num_blocks))      # never used, or freed without a hash
        self.evictable: OrderedDict[int, None] = OrderedDict()   # freed, hash kept: oldest first
        self.refcount = [0] * num_blocks
        self.hash_of: dict[int, bytes] = {}
        self.block_of: dict[bytes, int] = {}
        self.hits = self.lookups = 0

    @property
    def num_free(self) -> int:
        "Blocks a sequence could get now: free ones and cached ones nobody uses."
        return len(self.free) + len(self.evictable)

    def blocks_needed(self, seq: Sequence, n: int) -> int:
        "New blocks `seq` needs to hold `n` more tokens after its computed ones."
        return max(0, math.ceil((seq.num_computed + n) / self.block_size) - len(seq.block_table))

    def can_append(self, seq: Sequence, n: int) -> bool:
        "Whether `n` more tokens of `seq` fit, allocating blocks if needed."
        return self.blocks_needed(seq, n) <= self.num_free

    def _take(self) -> int:
        if self.free:
            b = self.free.popleft()
        else:                                                      # evict the least recently used cached block
            b, _ = self.evictable.popitem(last=False)
            del self.block_of[self.hash_of.pop(b)]
        self.refcount[b] = 1
        return b

    def append(self, seq: Sequence, n: int):
        "Give `seq` the blocks for `n` more tokens (call `can_append` first)."
        need = self.blocks_needed(seq, n)
        if need > self.num_free:
            raise RuntimeError(f"BlockManager.append: {need} blocks needed, {self.num_free} free")
        seq.block_table += [self._take() for _ in range(need)]

    def match_prefix(self, seq: Sequence) -> int:
        """Share the cached blocks that start `seq`'s prompt (not its last token, whose logits are needed);
        returns the number of tokens found, which need no computing."""
        if not self.prefix_caching or seq.block_table:
            return 0
        bs, parent = self.block_size, b""
        for j in range((len(seq.tokens) - 1) // bs):
            h = block_hash(parent, seq.tokens[j * bs:(j + 1) * bs])
            self.lookups += 1
            b = self.block_of.get(h)
            if b is None:
                break
            self.hits += 1
            if self.refcount[b] == 0:
                del self.evictable[b]
            self.refcount[b] += 1
            seq.block_table.append(b)
            seq.hashes.append(h)
            parent = h
        seq.num_computed = seq.num_cached = len(seq.block_table) * bs
        return seq.num_computed

    def register(self, seq: Sequence):
        "Record the hashes of `seq`'s blocks that are now full and computed, so later prompts can share them."
        if not self.prefix_caching:
            return
        bs = self.block_size
        while len(seq.hashes) < seq.num_computed // bs:
            j = len(seq.hashes)
            h = block_hash(seq.hashes[-1] if seq.hashes else b"", seq.tokens[j * bs:(j + 1) * bs])
            seq.hashes.append(h)
            b = seq.block_table[j]
            if h not in self.block_of and b not in self.hash_of:   # the first copy is the one shared
                self.block_of[h], self.hash_of[b] = b, h

    def release(self, seq: Sequence):
        "Return `seq`'s blocks: a block nobody else uses is free again (kept in the prefix cache if it has a hash)."
        for b in reversed(seq.block_table):                      # the prefix's first blocks are evicted last
            self.refcount[b] -= 1
            if self.refcount[b] == 0:
                if b in self.hash_of:
                    self.evictable[b] = None                      # now the most recently used
                else:
                    self.free.append(b)
        seq.block_table, seq.hashes, seq.num_computed = [], [], 0

class PagedKVPool:
    """The memory of a paged KV cache for ONE layer: `k (num_blocks * block_size, nh, hs)` and `v`, allocated
    on the first write (when the head shapes are known). Position `p` of a sequence lives in slot
    `block_table[p // block_size] * block_size + p % block_size`."""

    def __init__(self, num_blocks: int, block_size: int):
        self.num_blocks, self.block_size = num_blocks, block_size
        self.k: Tensor | None = None          # (num_blocks * block_size, nh, hs)
        self.v: Tensor | None = None

    def ensure(self, k: Tensor, v: Tensor):
        "Allocate the pool like `k`, `v` `(B, nh, T, hs)` if it is not yet."
        if self.k is None:
            n = self.num_blocks * self.block_size
            self.k = k.new_zeros(n, k.shape[1], k.shape[3])
            self.v = v.new_zeros(n, v.shape[1], v.shape[3])

    def nbytes(self) -> int:
        "Bytes held (0 before the first write)."
        return 0 if self.k is None else self.k.nbytes + self.v.nbytes


def slot_indices(block_table: Tensor, positions: Tensor, block_size: int) -> Tensor:
    "Slots of `positions (B, T)` for the block tables `(B, max_blocks)`: `table[p // bs] * bs + p % bs`."
    return block_table.gather(1, positions // block_size) * block_size + positions % block_size   # (B, T)


class PagedBatch:
    """Where a batch reads and writes in the paged cache, computed once for all layers. Row `b` has `start[b]`
    positions cached and `n[b]` new ones. Rows are left-padded, as a batch of prompts of unequal lengths is:
    the new tokens are the last `n[b]` of `T = max n` columns, and the keys a row reads, its positions
    `0 .. start + n - 1`, the last of `T_k` columns. So query and key columns keep their distances, which is
    all that RoPE and ALiBi see, and the new keys are the last columns, as a `KVCache` returns them."""

    def __init__(self, block_table: Tensor, start: Tensor, n: Tensor, block_size: int):
        self.start, self.n, self.block_size = start, n, block_size
        length = start + n                                                       # (B,): positions after the step
        self.T, self.T_k = int(n.max()), int(length.max())
        j = torch.arange(self.T)
        self.write = j >= (self.T - n)[:, None]                                  # (B, T): real new tokens
        self.positions = (start[:, None] + j - (self.T - n)[:, None]).clamp(min=0)   # (B, T): absolute positions
        self.write_slots = slot_indices(block_table, self.positions, block_size)[self.write]   # (N,)
        key_pos = torch.arange(self.T_k) - (self.T_k - length)[:, None]           # (B, T_k): position of each key column
        self.valid = key_pos >= 0                                                 # (B, T_k): real keys
        self.key_pos = key_pos
        self.read_slots = slot_indices(block_table, key_pos.clamp(min=0), block_size)   # (B, T_k)

    def attention_mask(self) -> Tensor:
        """`(B, 1, T, T_k)`, True where a query may attend to a key column: a real key at a position up to the
        query's own. A padded query sees the row's last key only, so no row of the softmax is empty."""
        mask = self.valid[:, None, :] & (self.key_pos[:, None, :] <= self.positions[:, :, None])   # (B, T, T_k)
        last = torch.arange(self.T_k) == self.T_k - 1                             # (T_k,)
        mask = torch.where(self.write[:, :, None], mask, last)                    # padded queries
        return mask[:, None]                                                     # (B, 1, T, T_k)


class PagedKVCache(KVCache):
    """A batch's view of one layer's `PagedKVPool`, shaped as chapter 3's `KVCache` so that the attention
    layers use it unchanged: `update(k, v)` writes the new keys and values `(B, nh, T, hs)` into their slots,
    then gathers every row's positions from the pool, `(B, nh, T_k, hs)`. Gather, then attention."""

    def __init__(self, pool: PagedKVPool, batch: PagedBatch):
        super().__init__()
        self.pool, self.batch = pool, batch
        self.offset = int(batch.start[0]) if len(batch.start) == 1 else 0       # one row: chapter 3's offset

    def __len__(self) -> int:
        return self.batch.T_k - self.batch.T                                      # the "past" in the padded layout

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        "Write the real new positions of `k`, `v` `(B, nh, T, hs)`; return every row's keys and values `(B, nh, T_k, hs)`."
        pool, b = self.pool, self.batch
        pool.ensure(k, v)
        pool.k[b.write_slots] = k.transpose(1, 2)[b.write]                       # (N, nh, hs) into their slots
        pool.v[b.write_slots] = v.transpose(1, 2)[b.write]
        self.offset += k.shape[2]
        return pool.k[b.read_slots].transpose(1, 2), pool.v[b.read_slots].transpose(1, 2)   # (B, nh, T_k, hs)

def paged_attention(q: Tensor, pool: PagedKVPool, batch: PagedBatch, scale: float | None = None) -> Tensor:
    """Attention of the queries `q (B, nh, T, hs)` of a batch to the keys and values its rows have in `pool`
    (after `PagedKVCache.update` wrote the new ones): gather each row's positions from the pages, then
    PyTorch's SDPA with `batch.attention_mask()`. Grouped-query heads (`nh` a multiple of the pool's) share."""
    k = pool.k[batch.read_slots].transpose(1, 2)                                 # (B, nkv, T_k, hs): the gather
    v = pool.v[batch.read_slots].transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=batch.attention_mask(), scale=scale,
                                          enable_gqa=k.shape[1] != q.shape[1])   # (B, nh, T, hs)

@torch.no_grad()
def kv_bytes_per_token(model: GPT) -> int:
    """Bytes one token occupies in `model`'s KV cache, all layers together, found by running one token through
    the model with caches that record what each layer stores (keys and values, or MLA's latents)."""
    class Recorder(KVCache):
        def update(self, k, v):
            self.nbytes = (k.nelement() + v.nelement()) * k.element_size()
            return super().update(k, v)
    caches = [Recorder() for _ in model.blocks]
    was = model.training
    model.eval()
    model(torch.zeros(1, 1, dtype=torch.long, device=model.lm_head.weight.device), caches=caches)
    model.train(was)
    return sum(c.nbytes for c in caches)


def capacity(budget_bytes: int, bytes_per_token: int, lengths, max_len: int, block_size: int) -> dict:
    """How many of the requests of final lengths `lengths` (taken in order) fit at once in `budget_bytes` of
    KV cache: `preallocated` reserves `max_len` positions per request, `paged` whole blocks of `block_size`
    for what each request uses. With the share of the reserved memory that holds no token (`*_waste`)."""
    where = "capacity"
    for v, name in ((budget_bytes, "budget_bytes"), (bytes_per_token, "bytes_per_token"), (max_len, "max_len"),
                    (block_size, "block_size")):
        check_int(v, name, where)
    lengths = [check_int(L, "lengths", where, maximum=max_len) for L in lengths]
    slots = budget_bytes // bytes_per_token                                      # token positions in the budget
    n_pre = min(len(lengths), slots // max_len)
    used = n_paged = 0
    for L in lengths:
        need = math.ceil(L / block_size) * block_size
        if used + need > slots:
            break
        used, n_paged = used + need, n_paged + 1
    tokens_pre, tokens_paged = sum(lengths[:n_pre]), sum(lengths[:n_paged])
    return {"preallocated": n_pre, "paged": n_paged,
            "preallocated_waste": 1 - tokens_pre / max(n_pre * max_len, 1),
            "paged_waste": 1 - tokens_paged / max(used, 1)}

@dataclass
class EngineConfig(JsonConfig):
    """The engine's sizes: the paged cache (`num_blocks` blocks of `block_size` positions per layer), at most
    `max_num_seqs` running requests and `max_tokens_per_step` tokens computed per step (the token budget);
    `chunked_prefill` splits a long prompt over steps; `prefix_caching` shares full blocks between prompts;
    `num_speculative` draft tokens per greedy decode when the engine has a draft model."""
    block_size: int = 16
    num_blocks: int = 256
    max_num_seqs: int = 64
    max_tokens_per_step: int = 256
    chunked_prefill: bool = True
    prefix_caching: bool = True
    num_speculative: int = 0

    def __post_init__(self):
        for name in ("block_size", "num_blocks", "max_num_seqs", "max_tokens_per_step"):
            check_int(getattr(self, name), name, "EngineConfig")
        check_int(self.num_speculative, "num_speculative", "EngineConfig", minimum=0)
        for name in ("chunked_prefill", "prefix_caching"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"EngineConfig: {name} must be a bool, got {getattr(self, name)!r}")

class Scheduler:
    """Orca's iteration-level scheduling: at every step, decide which requests run and how many of their tokens
    (no tensors here). Running requests go first, each its next token (or the next chunk of its prompt); when
    their blocks run out, the request that arrived last is preempted (its blocks freed, to be recomputed
    later). Then waiting requests are admitted in arrival order while the token budget, `max_num_seqs` and
    free blocks last; a prompt longer than the budget is computed in chunks (Sarathi-Serve)."""

    def __init__(self, config: EngineConfig, blocks: BlockManager, lookahead=lambda seq: 0):
        self.config, self.blocks, self.lookahead = config, blocks, lookahead
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.preempted = 0

    def add(self, seq: Sequence):
        "Queue a new request."
        self.waiting.append(seq)

    def _want(self, seq: Sequence) -> int:
        "Tokens `seq` would compute now: its uncomputed ones, plus draft tokens when it decodes."
        n = seq.num_uncomputed
        return n + self.lookahead(seq) if n == 1 and len(seq.tokens) > seq.prompt_len else n

    def _preempt(self, seq: Sequence):
        self.blocks.release(seq)
        seq.status, seq.preemptions = WAITING, seq.preemptions + 1
        self.waiting.appendleft(seq)
        self.preempted += 1

    def schedule(self) -> list[tuple[Sequence, int]]:
        "The requests to run at this step, each with the number of tokens to compute."
        budget, batch, bm = self.config.max_tokens_per_step, [], self.blocks
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            n = min(self._want(seq), budget)
            while not bm.can_append(seq, n) and len(self.running) > i + 1:
                self._preempt(self.running.pop())                  # the last to arrive gives its blocks back
            if not bm.can_append(seq, n):
                self._preempt(self.running.pop(i))                 # nobody left to preempt but itself
                continue
            bm.append(seq, n)
            batch.append((seq, n))
            budget -= n
            i += 1
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0]
            bm.match_prefix(seq)
            n = min(self._want(seq), budget)
            if (n < seq.num_uncomputed and not self.config.chunked_prefill) or not bm.can_append(seq, n):
                bm.release(seq)                                   # wait for blocks (or a bigger budget)
                break
            bm.append(seq, n)
            self.waiting.popleft()
            seq.status = RUNNING
            self.running.append(seq)
            batch.append((seq, n))
            budget -= n
        return batch

    def finish(self, seq: Sequence):
        "Take a finished (or cancelled) request out and free its blocks."
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.blocks.release(seq)
        seq.status = FINISHED

class ModelRunner:
    """Runs the model on a scheduled batch (never decides who runs). It owns one `PagedKVPool` per layer.
    Decoding rows (one new token each) go through the model together: one forward of `(B, 1)` tokens with
    per-row positions and a mask (`GPT.trunk`), the weights read once for all B. A prefill chunk (or a
    speculative verification) runs as its own `(1, n)` forward through `model(idx, caches=...)`."""

    def __init__(self, model: GPT, num_blocks: int, block_size: int):
        self.model, self.block_size = model, block_size
        self.pools = [PagedKVPool(num_blocks, block_size) for _ in model.blocks]
        self.batched = callable(getattr(model, "trunk", None))           # per-row positions and masks
        self.forwards = 0

    def _tables(self, seqs) -> Tensor:
        width = max(len(s.block_table) for s in seqs)
        return torch.tensor([s.block_table + [0] * (width - len(s.block_table)) for s in seqs])   # (B, width)

    def _run_one(self, seq: Sequence, n: int, m: int) -> Tensor:
        "Forward `n` tokens of `seq` from `num_computed`; the logits `(m, V)` of the last `m` positions."
        s = seq.num_computed
        batch = PagedBatch(self._tables([seq]), torch.tensor([s]), torch.tensor([n]), self.block_size)
        idx = torch.tensor([seq.tokens[s:s + n]])                                    # (1, n)
        logits, _ = self.model(idx, caches=[PagedKVCache(p, batch) for p in self.pools], last_only=m <= 1)
        self.forwards += 1                                                           # (1, n or 1, V)
        return logits[0, logits.shape[1] - m:].float()                               # (m, V)

    def _run_decodes(self, seqs: list[Sequence]) -> Tensor:
        "One forward for the last token of every sequence in `seqs`: their logits `(B, V)`."
        start = torch.tensor([s.num_computed for s in seqs])
        batch = PagedBatch(self._tables(seqs), start, torch.ones_like(start), self.block_size)
        idx = torch.tensor([[s.tokens[s.num_computed]] for s in seqs])                 # (B, 1)
        h = self.model.trunk(idx, caches=[PagedKVCache(p, batch) for p in self.pools],
                             positions=batch.positions, attn_mask=batch.attention_mask())   # (B, 1, C)
        self.forwards += 1
        return self.model.lm_head(h[:, -1]).float()                                  # (B, V)

    @torch.no_grad()
    def run(self, work: list[tuple[Sequence, int, int]]) -> list[Tensor]:
        """For each `(seq, n, m)`: compute `n` tokens of `seq` and return the logits `(m, V)` of the last `m`."""
        out: list[Tensor | None] = [None] * len(work)
        decodes = [i for i, (s, n, m) in enumerate(work) if n == 1 and m == 1]
        if self.batched and len(decodes) > 1:
            logits = self._run_decodes([work[i][0] for i in decodes])
            for j, i in enumerate(decodes):
                out[i] = logits[j:j + 1]
        for i, (seq, n, m) in enumerate(work):
            if out[i] is None:
                out[i] = self._run_one(seq, n, m) if m or n else None
        return out

    def nbytes(self) -> int:
        "Bytes held by the pools."
        return sum(p.nbytes() for p in self.pools)

class LLMEngine:
    """Continuous batching over a paged KV cache: `add_request` queues a prompt with its `SamplingParams`,
    `step` runs one iteration (schedule, one pass of the model, sample, finish) and `generate` runs a list
    of prompts to the end. `decode` (token ids -> text) enables stop strings and `Sequence.text`. With a
    `draft_model` and `config.num_speculative > 0`, greedy requests decode speculatively: the draft proposes
    tokens, the model checks them all in one pass and keeps the longest agreeing run plus its own next token
    (the same text as greedy decoding)."""

    def __init__(self, model: GPT, config: EngineConfig | None = None, *, decode=None, draft_model: GPT | None = None):
        if not isinstance(model, GPT):
            raise TypeError(f"LLMEngine: model must be a GPT (or a subclass), got {type(model).__name__}")
        config = EngineConfig() if config is None else config
        if not isinstance(config, EngineConfig):
            raise TypeError(f"LLMEngine: config must be an EngineConfig, got {type(config).__name__}")
        if draft_model is not None and not isinstance(draft_model, GPT):
            raise TypeError(f"LLMEngine: draft_model must be a GPT or None, got {type(draft_model).__name__}")
        if draft_model is not None and draft_model.config.vocab_size != model.config.vocab_size:
            raise ValueError(f"LLMEngine: the draft model's vocab_size {draft_model.config.vocab_size} differs from "
                             f"the model's {model.config.vocab_size}")
        self.model, self.config, self.decode, self.draft_model = model.eval(), config, decode, draft_model
        self.blocks = BlockManager(config.num_blocks, config.block_size, config.prefix_caching)
        self.scheduler = Scheduler(config, self.blocks, self._lookahead)
        self.runner = ModelRunner(model, config.num_blocks, config.block_size)
        self.requests: dict = {}
        self.history: deque[dict] = deque(maxlen=100_000)   # per step: who ran, how many tokens, free blocks
        self.trace = False                    # also record every block table at every step
        self.drafted = self.accepted = 0

    @property
    def max_len(self) -> int:
        "The longest sequence (prompt and output) the model reads."
        return self.model.config.block_size

    def _lookahead(self, seq: Sequence) -> int:
        "Draft tokens for `seq` at this step: only for greedy requests, within max_tokens and the context."
        k = self.config.num_speculative if self.draft_model is not None and seq.params.temperature == 0 else 0
        return max(0, min(k, seq.params.max_tokens - len(seq.output) - 1, self.max_len - len(seq.tokens) - 1))

    def check_request(self, prompt, params: SamplingParams) -> None:
        "Raise `TypeError`/`ValueError` (naming the argument) if the engine cannot serve `prompt` with `params`."
        if not isinstance(params, SamplingParams):
            raise TypeError(f"add_request: params must be SamplingParams, got {type(params).__name__}")
        if not isinstance(prompt, (list, tuple)) or not all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            raise TypeError(f"add_request: prompt must be a list of token ids (ints), got {str(prompt)[:60]}")
        V, W, c = self.model.config.vocab_size, self.max_len, self.config
        if not prompt:
            raise ValueError("add_request: prompt is empty; give at least one token")
        bad = [t for t in prompt if not 0 <= t < V]
        if bad:
            raise ValueError(f"add_request: prompt holds the token id {bad[0]}, outside the vocabulary [0, {V})")
        if len(prompt) + params.max_tokens > W:
            raise ValueError(f"add_request: max_tokens={params.max_tokens} with a prompt of {len(prompt)} tokens "
                             f"exceeds the model's context of {W} tokens")
        need = math.ceil((len(prompt) + params.max_tokens + c.num_speculative) / c.block_size)
        if need > c.num_blocks:
            raise ValueError(f"add_request: the request needs up to {need} blocks, the cache has {c.num_blocks}")
        if not c.chunked_prefill and len(prompt) > c.max_tokens_per_step:
            raise ValueError(f"add_request: the prompt ({len(prompt)} tokens) exceeds max_tokens_per_step="
                             f"{c.max_tokens_per_step} and chunked_prefill is off")

    def add_request(self, prompt, params: SamplingParams | None = None, request_id=None) -> Sequence:
        "Queue `prompt` (a list of token ids) to be continued with `params`; returns its `Sequence`."
        params = SamplingParams() if params is None else params
        self.check_request(prompt, params)
        if request_id is not None and request_id in self.requests:
            raise ValueError(f"add_request: request_id {request_id!r} is already in use")
        seq = Sequence(list(prompt), params, request_id)
        self.requests[seq.request_id] = seq
        self.scheduler.add(seq)
        return seq

    def abort(self, request_id) -> bool:
        "Cancel a request (a client went away): its blocks are freed now. False if it is unknown or done."
        seq = self.requests.pop(request_id, None)
        if seq is None or seq.status == FINISHED:
            return False
        self.scheduler.finish(seq)
        seq.finish_reason = "abort"
        return True

    def has_unfinished(self) -> bool:
        "Whether any request waits or runs."
        return bool(self.scheduler.waiting or self.scheduler.running)

    def _sample(self, seq: Sequence, logits: Tensor) -> int:
        "The next token of `seq` from its logits `(V,)`, with its own settings and random generator."
        p = seq.params
        if p.temperature == 0:
            return int(logits.argmax())
        probs = next_token_probs(logits[None], p.temperature, p.top_k, p.top_p)     # (1, V), as generate does
        return int(torch.multinomial(probs, 1, generator=seq.generator)[0, 0])

    def _append(self, seq: Sequence, token: int, now: float) -> bool:
        "Add a generated token to `seq`; True when `seq` is finished (stop token, stop string or length)."
        seq.tokens.append(token)
        seq.token_times.append(now)
        p = seq.params
        if self.decode is not None:
            seq.text = self.decode(seq.output if token not in p.stop_token_ids else seq.output[:-1])
            hits = [i for i in (seq.text.find(s) for s in p.stop) if i >= 0]
            if hits:
                seq.text, seq.finish_reason = seq.text[:min(hits)], "stop"
                return True
        if token in p.stop_token_ids:
            seq.finish_reason = "stop"
        elif len(seq.output) >= p.max_tokens or len(seq.tokens) >= self.max_len:
            seq.finish_reason = "length"
        return seq.finish_reason is not None

    def _drafts(self, seq: Sequence, k: int) -> list[int]:
        "`k` greedy tokens of the draft model after `seq`'s tokens."
        out = generate(self.draft_model, seq.tokens[-self.draft_model.config.block_size + k:], k, temperature=0)
        return out[-k:].tolist()

    def step(self) -> list[Sequence]:
        "One iteration: schedule, run the model once over the batch, sample, retire finished requests."
        batch = self.scheduler.schedule()
        if not batch:
            return []
        t0 = time.perf_counter()
        work, drafts = [], []
        kinds = [(s.request_id, n, "decode" if s.num_uncomputed == 1 and s.output else "prefill") for s, n in batch]
        for seq, n in batch:
            d = []
            if n > 1 and seq.num_uncomputed == 1:                               # a decode with draft tokens
                d = self._drafts(seq, n - 1)
                seq.tokens += d
            drafts.append(d)
            done_prompt = seq.num_computed + n >= len(seq.tokens)
            work.append((seq, n, n if d else int(done_prompt)))
        logits = self.runner.run(work)
        now = time.perf_counter()
        finished = []
        for (seq, n), d, lg in zip(batch, drafts, logits):
            if d:                                                               # verify: keep the agreeing drafts
                del seq.tokens[len(seq.tokens) - len(d):]
                guesses = lg.argmax(-1).tolist()                                  # the model's token after each input
                a = 0
                while a < len(d) and d[a] == guesses[a]:
                    a += 1
                self.drafted, self.accepted = self.drafted + len(d), self.accepted + a
                seq.num_computed += 1 + a
                new = guesses[:a + 1]
            else:
                seq.num_computed += n
                new = [self._sample(seq, lg[-1])] if seq.num_computed == len(seq.tokens) else []
            done = False
            for t in new:
                done = self._append(seq, t, now)
                if done:
                    break
            if not done:
                self.blocks.register(seq)
            else:
                self.scheduler.finish(seq)
                finished.append(seq)
        record = {"time": now, "seconds": now - t0, "free_blocks": self.blocks.num_free, "rows": kinds,
                  "waiting": len(self.scheduler.waiting)}
        if self.trace:                                                           # block tables, for the figures
            record["tables"] = {s.request_id: list(s.block_table) for s in self.scheduler.running}
        self.history.append(record)
        return finished

    def generate(self, prompts, params=None) -> list[Sequence]:
        """Run every prompt (lists of token ids) to the end, all in the batch at once; `params` is one
        `SamplingParams` for all or a list of them. Returns the finished `Sequence`s in the prompts' order."""
        params = [params] * len(prompts) if params is None or isinstance(params, SamplingParams) else list(params)
        if len(params) != len(prompts):
            raise ValueError(f"LLMEngine.generate: {len(prompts)} prompts but {len(params)} params")
        seqs = [self.add_request(p, sp) for p, sp in zip(prompts, params)]
        with decoding_layout(self.model):
            while self.has_unfinished():
                self.step()
        for s in seqs:
            self.requests.pop(s.request_id, None)
        return seqs

class AsyncEngine:
    """An `LLMEngine` driven by a thread of its own, beside the web server's event loop. Requests reach the
    thread through a queue (the engine is only ever touched by that thread); each request gets an
    `asyncio.Queue` on which the thread posts its text as it grows. `stream(prompt, params)` is an async
    iterator of `(text delta, finish reason or None, completion tokens)`; leaving it early cancels the request."""

    def __init__(self, engine: LLMEngine):
        if engine.decode is None:
            raise ValueError("AsyncEngine: the engine needs a decode function (token ids -> text) to stream text")
        self.engine = engine
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.active: dict = {}                    # request id -> [seq, loop, asyncio.Queue, chars sent]
        self.ids = itertools.count()
        self.thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        self.aborted = 0                          # requests cancelled (a client went away, or shutdown)
        self.stats = {"free_blocks": engine.blocks.num_free, "running": 0, "waiting": 0, "steps": 0, "aborted": 0}

    def start(self) -> "AsyncEngine":
        "Start the engine thread."
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0):
        "Cancel what still runs, free its blocks and stop the thread."
        self.stopping.set()
        self.wake.set()
        self.thread.join(timeout)

    @staticmethod
    def ready_text(seq: Sequence) -> str:
        """The part of `seq.text` that is final: all of it once finished; before that, without a trailing
        incomplete character (a byte-level token may end inside one) or what could start a stop string."""
        text = seq.text
        if seq.finish_reason is not None:
            return text
        hold = max((len(s) for s in seq.params.stop), default=1) - 1
        text = text[:len(text) - hold] if hold else text
        return text.rstrip("\ufffd")

    def _post(self, rid, entry, delta: str, reason):
        seq, loop, q, _ = entry
        loop.call_soon_threadsafe(q.put_nowait, (delta, reason, len(seq.output)))

    def _publish(self):
        for rid, entry in list(self.active.items()):
            seq, sent = entry[0], entry[3]
            text = self.ready_text(seq)
            if len(text) > sent or seq.finish_reason is not None:
                entry[3] = len(text)
                self._post(rid, entry, text[sent:], seq.finish_reason)
            if seq.finish_reason is not None:
                del self.active[rid]
                self.engine.requests.pop(rid, None)

    def _drain(self):
        while True:
            try:
                cmd, rid, *rest = self.inbox.get_nowait()
            except queue.Empty:
                return
            if cmd == "add":
                prompt, params, loop, q = rest
                try:
                    seq = self.engine.add_request(prompt, params, request_id=rid)
                except (TypeError, ValueError) as e:                   # checked before; a race on the cache size
                    loop.call_soon_threadsafe(q.put_nowait, e)
                    continue
                self.active[rid] = [seq, loop, q, 0]
            elif cmd == "abort" and rid in self.active:
                self.engine.abort(rid)
                del self.active[rid]
                self.aborted += 1

    def _loop(self):
        with decoding_layout(self.engine.model):
            while not self.stopping.is_set():
                self._drain()
                if not self.engine.has_unfinished():
                    self._update_stats()
                    self.wake.wait(0.05)
                    self.wake.clear()
                    continue
                try:
                    self.engine.step()
                except Exception as e:                                  # a bug: fail the requests, keep serving
                    for rid, entry in list(self.active.items()):
                        self.engine.abort(rid)
                        entry[1].call_soon_threadsafe(entry[2].put_nowait, RuntimeError(f"engine error: {e}"))
                    self.active.clear()
                self._publish()
                self._update_stats()
            self._drain()
            for rid, entry in list(self.active.items()):                # shutting down: cancel what runs
                self.engine.abort(rid)
                entry[0].finish_reason = "abort"
                self._post(rid, entry, "", "abort")
            self.active.clear()
            self._update_stats()

    def _update_stats(self):
        s = self.engine.scheduler
        self.stats = {"free_blocks": self.engine.blocks.num_free, "running": len(s.running),
                      "waiting": len(s.waiting), "steps": len(self.engine.history), "aborted": self.aborted}

    async def stream(self, prompt: list[int], params: SamplingParams):
        "Submit a request; yield `(text delta, finish reason or None, completion tokens)` as the engine produces them."
        rid = f"req-{next(self.ids)}"
        q: asyncio.Queue = asyncio.Queue()
        self.inbox.put(("add", rid, prompt, params, asyncio.get_running_loop(), q))
        self.wake.set()
        finished = False
        try:
            while not finished:
                item = await q.get()
                if isinstance(item, Exception):
                    raise item
                finished = item[1] is not None
                yield item
        finally:
            if not finished:                                            # the client went away: cancel, free blocks
                self.inbox.put(("abort", rid))
                self.wake.set()

MAX_BODY_BYTES = 1 << 20


class RequestError(Exception):
    "A bad request: HTTP 400 with an OpenAI-style error naming `param`."

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


def error_body(message: str, param: str | None = None, kind: str = "invalid_request_error") -> dict:
    "The JSON of an OpenAI-style error."
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def _number(body: dict, name: str, default, kind, lo=None, hi=None, lo_open=False):
    v = body.get(name, default)
    if v is None:
        return default
    ok_type = (isinstance(v, int) and not isinstance(v, bool)) if kind is int else (
        isinstance(v, (int, float)) and not isinstance(v, bool))
    if not ok_type:
        raise RequestError(f"'{name}' must be {'an integer' if kind is int else 'a number'}, got {json.dumps(v)[:40]}", name)
    if (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi):
        span = f"{'(' if lo_open else '['}{lo}, {'inf)' if hi is None else str(hi) + ']'}"
        raise RequestError(f"'{name}' must lie in {span}, got {v}", name)
    return kind(v)


def sampling_from_body(body: dict, prompt_len: int, context: int, default_max: int | None, n_seed: int = 0) -> SamplingParams:
    "The `SamplingParams` an OpenAI request body asks for, checked field by field (`RequestError` names the field)."
    room = context - prompt_len
    name = "max_tokens" if "max_tokens" in body or "max_completion_tokens" not in body else "max_completion_tokens"
    max_tokens = _number(body, name, None, int)
    if max_tokens is None:                                               # not given: as much as fits, or default_max
        max_tokens = room if default_max is None else min(default_max, room)
        if max_tokens < 1:
            raise RequestError(f"the prompt has {prompt_len} tokens and fills the model's context of {context}",
                               "messages" if default_max is None else "prompt")
    if max_tokens < 1:
        raise RequestError(f"'{name}' must be at least 1, got {max_tokens}", name)
    if max_tokens > room:
        raise RequestError(f"'{name}' is {max_tokens}, but the prompt has {prompt_len} tokens and the model's "
                           f"context is {context}: at most {room}", name)
    temperature = _number(body, "temperature", 1.0, float, 0, 2)
    top_p = _number(body, "top_p", 1.0, float, 0, 1, lo_open=True)
    top_k = _number(body, "top_k", None, int, 1)
    seed = _number(body, "seed", None, int, 0)
    stop = body.get("stop")
    stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise RequestError("'stop' must be a non-empty string or a list of up to 4 of them", "stop")
    return SamplingParams(max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                          top_p=None if top_p == 1.0 else top_p, seed=None if seed is None else seed + n_seed, stop=stop)


def create_app(engine: LLMEngine, tokenizer, model_name: str, *, max_body_bytes: int = MAX_BODY_BYTES):
    """A FastAPI app serving `engine` with the OpenAI HTTP API: `POST /v1/completions`, `POST
    /v1/chat/completions` (when `tokenizer` has a chat template, `encode_chat`), both streaming as server-sent
    events with `"stream": true`, `GET /v1/models` and `GET /health`. The engine runs in its own thread from
    startup to shutdown. Bad requests get HTTP 400 with an OpenAI-style error naming the field."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    chat = callable(getattr(tokenizer, "encode_chat", None))
    skip = {"skip_special": True} if chat else {}
    engine.decode = lambda ids: tokenizer.decode(ids, **skip)
    context = engine.max_len

    @asynccontextmanager
    async def lifespan(app):
        app.state.engine = AsyncEngine(engine).start()
        try:
            yield
        finally:
            app.state.engine.stop()

    app = FastAPI(title="transformer-lit", lifespan=lifespan)

    @app.exception_handler(RequestError)
    async def bad_request(request, e: RequestError):
        return JSONResponse(error_body(e.message, e.param), status_code=e.status)

    @app.exception_handler(Exception)
    async def server_error(request, e: Exception):                       # never a traceback to the client
        return JSONResponse(error_body(f"internal error: {type(e).__name__}", None, "server_error"), status_code=500)

    async def read_body(request: Request) -> dict:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > max_body_bytes:
            raise RequestError(f"the request body is {size} bytes; at most {max_body_bytes} are accepted")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > max_body_bytes:
                raise RequestError(f"the request body exceeds {max_body_bytes} bytes")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(f"the request body is not valid JSON ({e})") from None
        if not isinstance(body, dict):
            raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}")
        model = body.get("model")
        if model is None:
            raise RequestError("'model' is required", "model")
        if model != model_name:
            raise RequestError(f"the model {model!r} does not exist; this server has {model_name!r}", "model")
        if not isinstance(body.get("stream", False), bool):
            raise RequestError("'stream' must be a boolean", "stream")
        return body

    def encode(text: str, param: str) -> list[int]:
        try:
            return tokenizer.encode(text)
        except (ValueError, KeyError) as e:
            raise RequestError(f"'{param}' holds text the model's tokenizer cannot encode: {e}", param) from None

    def params_for(body: dict, prompt: list[int], default_max, extra_stop=()) -> list[SamplingParams]:
        n = _number(body, "n", 1, int, 1, 16)
        out = []
        for i in range(n):
            p = sampling_from_body(body, len(prompt), context, default_max, i)
            p.stop_token_ids = list(extra_stop)
            out.append(p)
        try:
            engine.check_request(prompt, out[0])
        except ValueError as e:
            raise RequestError(str(e).removeprefix("add_request: "), "max_tokens") from None
        return out

    async def respond(body: dict, prompt: list[int], params: list[SamplingParams], kind: str):
        rid, created = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{time.time_ns():x}", int(time.time())
        aeng: AsyncEngine = app.state.engine
        obj = "chat.completion" if kind == "chat" else "text_completion"

        def choice(i, text, reason, delta: bool):
            if kind == "chat":
                key = "delta" if delta else "message"
                return {"index": i, key: {"role": "assistant", "content": text}, "finish_reason": reason}
            return {"index": i, "text": text, "logprobs": None, "finish_reason": reason}

        if body.get("stream", False):
            async def events():
                queue_: asyncio.Queue = asyncio.Queue()

                async def pump(i, p):
                    try:
                        async for delta, reason, _ in aeng.stream(prompt, p):
                            await queue_.put((i, delta, reason))
                    except Exception:                                   # an engine error ends this choice
                        await queue_.put((i, "", "error"))

                tasks = [asyncio.create_task(pump(i, p)) for i, p in enumerate(params)]
                done = 0
                try:
                    while done < len(tasks):
                        i, delta, reason = await queue_.get()
                        done += reason is not None
                        chunk = {"id": rid, "object": obj + (".chunk" if kind == "chat" else ""), "created": created,
                                 "model": model_name, "choices": [choice(i, delta, reason, True)]}
                        yield f"data: {json.dumps(chunk)}\n\n"
                    yield "data: [DONE]\n\n"
                finally:
                    for t in tasks:                                     # a disconnect cancels every choice
                        t.cancel()
            return StreamingResponse(events(), media_type="text/event-stream")

        async def run(p):
            text, reason, n = "", None, 0
            async for delta, reason, n in aeng.stream(prompt, p):
                text += delta
            return text, reason, n

        results = await asyncio.gather(*(run(p) for p in params))
        completion = sum(n for _, _, n in results)
        return {"id": rid, "object": obj, "created": created, "model": model_name,
                "choices": [choice(i, t, r, False) for i, (t, r, _) in enumerate(results)],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": completion,
                          "total_tokens": len(prompt) + completion}}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await read_body(request)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError("'prompt' must be a string", "prompt")
        if not prompt:
            raise RequestError("'prompt' is empty; give at least one character", "prompt")
        ids = encode(prompt, "prompt")
        return await respond(body, ids, params_for(body, ids, 16), "text")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await read_body(request)
        if not chat:
            raise RequestError(f"the model {model_name!r} has no chat template (its tokenizer is not a chat "
                               f"tokenizer); use /v1/completions", "messages")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("'messages' must be a non-empty list of {role, content} objects", "messages")
        if any(not isinstance(m, dict) or not isinstance(m.get("content"), str) for m in messages):
            raise RequestError("each message must be an object with a string 'content'", "messages")
        try:
            ids = tokenizer.encode_chat([{"role": m.get("role"), "content": m["content"]} for m in messages])
        except (ValueError, TypeError, KeyError) as e:
            raise RequestError(f"'messages' cannot be encoded: {e}", "messages") from None
        return await respond(body, ids, params_for(body, ids, None, [tokenizer.end_id]), "chat")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "transformer-lit"}]}

    @app.get("/health")
    async def health():
        return {"status": "ok", "num_blocks": engine.config.num_blocks, **app.state.engine.stats}

    return app

def load_run(path, device: str = "cpu"):
    """`(model, tokenizer)` of a run directory or checkpoint written by `transformer-lit train` or by
    chapters 13 and 14, whatever the architecture: the CLI's loading (chapter 11), and a chat tokenizer when
    the checkpoint has one (chapter 13)."""
    from .cli import load_architecture
    from .tokenizer import tokenizer_from_dict
    from .training import load_checkpoint
    info = load_checkpoint(path)
    if info["tokenizer"] is None:
        raise ValueError(f"--ckpt: {str(info['path'])!r} holds no tokenizer; the server needs one to read text")
    if info["tokenizer"].get("type") == "chat":
        from .assistant import ChatTokenizer
        tok = ChatTokenizer.from_dict(info["tokenizer"])
    else:
        tok = tokenizer_from_dict(info["tokenizer"])
    saved = dict(info["model_config"])
    Model, Config = load_architecture(saved.pop("arch", "gpt2"))
    model = Model(Config.from_dict(saved))
    load_checkpoint(info["path"], model)
    return model.to(device).eval(), tok


class ServeCommand:
    """`transformer-lit serve --ckpt RUN`: the OpenAI-compatible server, a subcommand found through chapter 11's
    entry-point group `transformer_lit.commands`."""
    name = "serve"
    help = "serve a run or an assistant checkpoint with the OpenAI HTTP API (completions, chat, streaming)"

    def add_arguments(self, p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        "Add the options of `serve` to `p`."
        from .cli import positive_int
        p.add_argument("--ckpt", type=Path, required=True, help="run directory or checkpoint to serve")
        p.add_argument("--host", default="127.0.0.1", help="address to listen on")
        p.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port)")
        p.add_argument("--model-name", default=None, help="the model's name in the API (default: the folder's name)")
        p.add_argument("--block-size", type=positive_int, default=16, help="positions per block of the paged KV cache")
        p.add_argument("--num-blocks", type=positive_int, default=512, help="blocks of the paged KV cache")
        p.add_argument("--max-num-seqs", type=positive_int, default=64, help="most requests decoded together")
        p.add_argument("--max-tokens-per-step", type=positive_int, default=256, help="token budget of one step")
        return p

    def run(self, args) -> int:
        "Load the checkpoint and serve until Ctrl-C or SIGTERM; returns the exit status."
        import uvicorn
        if not args.ckpt.is_dir():
            raise FileNotFoundError(f"--ckpt: no such directory: {str(args.ckpt)!r}")
        if not 0 <= args.port < 65536:
            raise ValueError(f"--port: must be in [0, 65535], got {args.port}")
        model, tok = load_run(args.ckpt)
        config = EngineConfig(block_size=args.block_size, num_blocks=args.num_blocks, max_num_seqs=args.max_num_seqs,
                              max_tokens_per_step=args.max_tokens_per_step)
        name = args.model_name or args.ckpt.resolve().name
        app = create_app(LLMEngine(model, config), tok, name)
        previous = signal.signal(signal.SIGTERM, lambda *_: None)          # uvicorn re-raises it after its shutdown
        try:
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)
        finally:
            signal.signal(signal.SIGTERM, previous)
        return 0


serve_command = ServeCommand()


def main(argv: list[str] | None = None) -> int:
    """`python -m transformer_lit.server serve ...`: the serve command on its own, with the CLI's exit statuses,
    for use before the plug-in is installed."""
    import sys
    parser = argparse.ArgumentParser(prog="transformer-lit")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_command.add_arguments(sub.add_parser(serve_command.name, help=serve_command.help, description=serve_command.help))
    args = parser.parse_args(argv)
    try:
        return serve_command.run(args)
    except (ValueError, OSError) as e:
        print(f"transformer-lit serve: error: {e}", file=sys.stderr)
        return 2

if __name__ == "__main__" and "__file__" in globals():                       # `python -m transformer_lit.server`
    import sys
    sys.exit(main())

def request_metrics(seqs: list[Sequence], start: float | None = None) -> dict:
    """Throughput (output tokens per second, from `start` or the first arrival to the last token), and the
    median and 99th percentile of the time to first token (TTFT) and of the time per output token after it
    (TPOT), in seconds, of finished `seqs`."""
    t0 = min(s.arrival for s in seqs) if start is None else start
    end = max(s.token_times[-1] for s in seqs)
    ttft = torch.tensor([s.token_times[0] - s.arrival for s in seqs], dtype=torch.float64)
    tpot = torch.tensor([(s.token_times[-1] - s.token_times[0]) / (len(s.token_times) - 1)
                         for s in seqs if len(s.token_times) > 1] or [0.0], dtype=torch.float64)
    q = lambda x, p: float(torch.quantile(x, p))
    return {"requests": len(seqs), "tokens": sum(len(s.output) for s in seqs),
            "throughput": sum(len(s.output) for s in seqs) / (end - t0),
            "ttft_p50": q(ttft, 0.5), "ttft_p99": q(ttft, 0.99), "tpot_p50": q(tpot, 0.5), "tpot_p99": q(tpot, 0.99)}

def plot_timeline(history, ax=None, max_steps: int | None = None):
    "Which request runs at each step of `LLMEngine.history`, and how: a prefill chunk (light, its token count) or a decode (dark)."
    import matplotlib.pyplot as plt
    hist = list(history)[:max_steps]
    ids = sorted({r for h in hist for r, _, _ in h["rows"]}, key=str)
    row = {r: i for i, r in enumerate(ids)}
    ax = ax or plt.subplots(figsize=(9, 0.25 * len(ids) + 1.2))[1]
    for step, h in enumerate(hist):
        for r, n, kind in h["rows"]:
            ax.add_patch(plt.Rectangle((step, row[r] - 0.4), 1, 0.8, color="C1" if kind == "prefill" else "C0",
                                       alpha=0.45 if kind == "prefill" else 0.9, lw=0))
            if kind == "prefill" and len(hist) <= 80:
                ax.text(step + 0.5, row[r], str(n), ha="center", va="center", fontsize=6)
    ax.set(xlim=(0, len(hist)), ylim=(-0.6, len(ids) - 0.4), xlabel="engine step", ylabel="request")
    ax.set_yticks(range(len(ids)), [str(r) for r in ids], fontsize=7)
    ax.invert_yaxis()
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color="C1", alpha=0.45), plt.Rectangle((0, 0), 1, 1, color="C0")],
              labels=["prefill (tokens)", "decode"], fontsize=8, loc="lower right")
    return ax


def plot_block_tables(history, num_blocks: int, ax=None):
    "The cache's blocks (columns) at each step (rows) of a traced `LLMEngine.history`, coloured by the request that owns them; white is free."
    import matplotlib.pyplot as plt
    import numpy as np
    hist = [h for h in history if "tables" in h]
    owner = np.full((len(hist), num_blocks), np.nan)
    ids = sorted({r for h in hist for r in h["tables"]}, key=str)
    for t, h in enumerate(hist):
        for r, table in h["tables"].items():
            owner[t, table] = ids.index(r)
    ax = ax or plt.subplots(figsize=(9, 3.2))[1]
    ax.imshow(np.ma.masked_invalid(owner), aspect="auto", cmap="tab20", interpolation="nearest", vmin=0, vmax=19)
    ax.set(xlabel="block of the paged cache", ylabel="engine step", title="who owns each block (white: free)")
    return ax


def plot_load(results: dict[str, list[dict]], axes=None):
    "Throughput, p99 time to first token and p99 time per output token against concurrent requests, one line per name of `results` (lists of `request_metrics` with a `concurrency`)."
    import matplotlib.pyplot as plt
    axes = axes if axes is not None else plt.subplots(1, 3, figsize=(11, 3.2))[1]
    for name, rows in results.items():
        c = [r["concurrency"] for r in rows]
        axes[0].plot(c, [r["throughput"] for r in rows], "o-", label=name)
        axes[1].plot(c, [1e3 * r["ttft_p99"] for r in rows], "o-", label=name)
        axes[2].plot(c, [1e3 * r["tpot_p99"] for r in rows], "o-", label=name)
    for ax, y in zip(axes, ["output tokens / s", "p99 time to first token (ms)", "p99 time per output token (ms)"]):
        ax.set(xscale="log", xlabel="concurrent requests", ylabel=y)
        ax.set_xticks(c, [str(v) for v in c])
    axes[0].legend(fontsize=8)
    plt.tight_layout()
    return axes
