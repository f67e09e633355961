"""Peak memory (RSS) of a training run on the default corpus and on one ten times larger.

Chapter 9 claims that a run that reads a token file through `numpy.memmap` does not grow with the corpus.
This script measures it: it writes a corpus ten times the size of the shipped one (ten copies of it, the
lines of each copy shuffled with its own seed, so no two copies are alike), tokenizes both corpora with
`transformer-lit tokenize`, and trains chapter 10's CPU recipe model for a few steps on each token file
(`train --tokens`), every run in a fresh process that reports its own peak resident set size
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`, which counts the mapped file pages it touched too). For
contrast it also trains from the text itself (`train --data`), which holds the text, its Python list of
ids and an int64 tensor in memory.

    OMP_NUM_THREADS=1 .venv/bin/python tools/train_rss.py           # about a minute or two
    .venv/bin/python tools/train_rss.py --copies 10 --steps 20 --keep /tmp/rss
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEASURE = """
import resource, sys
from transformer_lit.cli import main
status = main(sys.argv[1:])
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "STATUS", status)
"""


def peak_rss_mb(args: list[str]) -> float:
    "Peak RSS, in MB, of a fresh process running `transformer-lit <args>`."
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, env=env, timeout=1800)
    line = [l for l in r.stdout.splitlines() if l.startswith("PEAK_RSS_KB")]
    if r.returncode != 0 or not line or not line[0].endswith("STATUS 0"):
        raise RuntimeError(f"transformer-lit {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return int(line[0].split()[1]) / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=10, help="how many times larger the generated corpus is")
    ap.add_argument("--steps", type=int, default=20, help="training steps per run")
    ap.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it (default: a temporary one)")
    args = ap.parse_args()
    from transformer_lit.tokenizer import default_corpus_path
    work = args.keep or Path(tempfile.mkdtemp(prefix="transformer_lit_rss_"))
    work.mkdir(parents=True, exist_ok=True)
    text = default_corpus_path().read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    big = work / f"corpus_x{args.copies}.txt"
    with open(big, "w", encoding="utf-8") as f:
        for seed in range(args.copies):
            copy = lines[:]
            random.Random(seed).shuffle(copy)
            f.write("".join(copy))
    (work / "corpus_x1.txt").write_text(text, encoding="utf-8")
    train = ["--max-steps", str(args.steps), "--warmup-steps", "2", "--eval-interval", str(args.steps),
             "--eval-batches", "2", "--no-progress", "--device", "cpu"]
    rows = []
    for name in ("corpus_x1", big.stem):
        txt, bin_ = work / f"{name}.txt", work / f"{name}.bin"
        tok_mb = peak_rss_mb(["tokenize", "--data", str(txt), "--out", str(bin_)])
        tokens_mb = peak_rss_mb(["train", "--tokens", str(bin_), "--out", str(work / f"run_{name}_tokens"), *train])
        data_mb = peak_rss_mb(["train", "--data", str(txt), "--out", str(work / f"run_{name}_data"), *train])
        rows.append((name, txt.stat().st_size / 1e6, bin_.stat().st_size / 1e6, tok_mb, tokens_mb, data_mb))
    print(f"load average {os.getloadavg()[0]:.1f}; {args.steps} training steps of chapter 10's recipe model per run\n")
    print("| corpus | text (MB) | token file (MB) | peak RSS: tokenize (MB) | peak RSS: train --tokens (MB) | "
          "peak RSS: train --data (MB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, t, b, k, m, d in rows:
        print(f"| {name} | {t:.1f} | {b:.1f} | {k:.0f} | {m:.0f} | {d:.0f} |")
    (_, _, _, _, m1, d1), (_, _, _, _, m10, d10) = rows
    print(f"\ntrain --tokens: {m10 - m1:+.0f} MB for a {args.copies}x corpus; train --data: {d10 - d1:+.0f} MB")
    if args.keep is None:
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
