"""Chapter 7's byte-level BPE against Hugging Face's `tokenizers` (Rust): encoding the default corpus,
and training on it.

Encoding: both encode the corpus shipped with the package (1.15 MB) with *the same* vocabulary, one
that `tokenizers` trained and saved in GPT-2's format (`vocab.json` + `merges.txt`) and that ours reads
with `BPETokenizer.from_pretrained`; the script first checks that the two give identical ids. Ours is
timed cold (a fresh tokenizer, so its per-chunk cache starts empty: what `encode_cached` pays once per
corpus) and warm (the same tokenizer again); `tokenizers` encodes the corpus as one string, as ours does,
and, for reference, as a batch of its lines (its usual use, which splits the text differently at line
ends, so those ids are not compared). Training: both learn the merges of a vocabulary of 1,024
from the corpus (ours should train in under 30 s on a laptop CPU).

The candidates are timed interleaved: every repetition runs each of them once, in a fresh random order,
so a background load hits all of them alike. The tables report medians and the ratio to `tokenizers`.

    .venv/bin/python benchmarks/tokenizer.py                      # 5 repetitions, 1 thread for tokenizers
    .venv/bin/python benchmarks/tokenizer.py --reps 3 --vocab 1024 8192
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time

TRAIN_VOCAB = 1024
TARGET_TRAIN_SECONDS = 30.0


def interleaved(candidates: dict, reps: int) -> dict:
    "Median seconds of each zero-argument callable, timed `reps` times in a fresh random order each time."
    times = {name: [] for name in candidates}
    names = list(candidates)
    for _ in range(reps):
        random.shuffle(names)
        for name in names:
            t0 = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def table(title: str, medians: dict, ref: str, extra: dict):
    print(f"\n{title}\n")
    print(f"| candidate | seconds (median) | ratio to {ref} | {extra['title']} |")
    print("|---|---:|---:|---:|")
    for name, t in medians.items():
        print(f"| {name} | {t:.3f} | {t / medians[ref]:.1f} | {extra[name]} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="threads for tokenizers (ours is single-threaded Python)")
    ap.add_argument("--vocab", type=int, nargs="+", default=[1024, 8192], help="vocabulary sizes to encode with")
    args = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)        # read when tokenizers starts its thread pool
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if args.threads > 1 else "false"
    from tokenizers import ByteLevelBPETokenizer

    from transformer_lit.tokenizer import BPETokenizer, load_corpus
    text = load_corpus()
    lines = text.splitlines(keepends=True)                     # the batched use of tokenizers (ids differ a little)
    n_bytes = len(text.encode())
    random.seed(0)
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {len(text):,} characters "
          f"({n_bytes / 1e6:.2f} MB), {args.reps} interleaved repetitions, {args.threads} thread(s) for tokenizers")

    def train_theirs(vocab_size: int):
        tok = ByteLevelBPETokenizer()
        tok.train_from_iterator([text], vocab_size=vocab_size, min_frequency=1, show_progress=False)
        return tok

    with tempfile.TemporaryDirectory() as tmp:
        for V in args.vocab:
            theirs = train_theirs(V)
            folder = os.path.join(tmp, f"v{V}")
            os.makedirs(folder)
            theirs.save_model(folder)
            warm = BPETokenizer.from_pretrained(folder)
            ids = warm.encode(text)
            assert ids == theirs.encode(text).ids, "ours and tokenizers disagree on the corpus"
            candidates = {
                "ours, cold cache": lambda: BPETokenizer.from_pretrained(folder).encode(text),
                "ours, warm cache": lambda: warm.encode(text),
                "tokenizers": lambda: theirs.encode(text),
                "tokenizers, encode_batch of lines": lambda: theirs.encode_batch(lines),
            }
            med = interleaved(candidates, args.reps)
            mbps = {name: f"{n_bytes / 1e6 / t:.2f}" for name, t in med.items()}
            table(f"Encoding the corpus, vocabulary {V:,} ({len(ids):,} tokens, identical ids; "
                  f"'ours, cold' includes reading the two files)", med, "tokenizers", {"title": "MB/s", **mbps})

    trained = {}
    candidates = {"ours (BPETokenizer.train)": lambda: trained.__setitem__("ours", BPETokenizer.train(text, TRAIN_VOCAB)),
                  "tokenizers": lambda: trained.__setitem__("tokenizers", train_theirs(TRAIN_VOCAB))}
    med = interleaved(candidates, args.reps)
    cpt = {"ours (BPETokenizer.train)": f"{len(text) / len(trained['ours'].encode(text)):.3f}",
           "tokenizers": f"{len(text) / len(trained['tokenizers'].encode(text).ids):.3f}"}
    table(f"Training a vocabulary of {TRAIN_VOCAB:,} on the corpus", med, "tokenizers",
          {"title": "characters per token", **cpt})
    ours = med["ours (BPETokenizer.train)"]
    print(f"\nours trains in {ours:.1f} s (target: under {TARGET_TRAIN_SECONDS:.0f} s): "
          f"{'met' if ours < TARGET_TRAIN_SECONDS else 'NOT met'}")


if __name__ == "__main__":
    main()
