"""Chapter 7's `BPETokenizer.from_pretrained` against `transformers.GPT2TokenizerFast` on every character.

The chapter compares the two on hand-picked texts; this test sweeps every code point that Python's
`unicodedata` knows as assigned (Unicode 14.0 in Python 3.11, about 146,000), each in a context that
exercises GPT-2's pre-tokenizer (a letter before it, contractions, digits, runs of spaces), and a few
thousand random strings mixing them with whitespace of every kind. Characters assigned by Unicode only
after that version may be classed differently by the two regular-expression engines (`regex` for ours,
Oniguruma inside `tokenizers`), which know different Unicode versions; they are left out. No download:
the vocabulary is trained here by Hugging Face's `tokenizers`.
"""
from __future__ import annotations

import os
import random
import unicodedata

import pytest

os.environ.setdefault("RAYON_NUM_THREADS", "1")
tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

from transformer_lit.tokenizer import BPETokenizer, load_corpus  # noqa: E402


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    "Ours and transformers' fast tokenizer, both reading one GPT-2-format folder that `tokenizers` trained."
    folder = tmp_path_factory.mktemp("gpt2_format")
    trained = tokenizers.ByteLevelBPETokenizer()
    trained.train_from_iterator([load_corpus()[:300_000]], vocab_size=1000, min_frequency=1, show_progress=False)
    trained.save_model(str(folder))
    return BPETokenizer.from_pretrained(folder), transformers.GPT2TokenizerFast.from_pretrained(folder)


ASSIGNED = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]


def _first_difference(ours, theirs, texts):
    return next(((t, ours.encode(t), theirs.encode(t)) for t in texts if ours.encode(t) != theirs.encode(t)), None)


def test_every_assigned_character_encodes_as_in_transformers(pair):
    ours, theirs = pair
    assert len(ASSIGNED) > 140_000
    texts = ["".join(f"a{ch}'t {ch}{ch}'s 1{ch}  {ch}x\n" for ch in ASSIGNED[i:i + 64])
             for i in range(0, len(ASSIGNED), 64)]
    assert _first_difference(ours, theirs, texts) is None
    assert all(ours.decode(ours.encode(t)) == t for t in texts)


def test_random_strings_encode_as_in_transformers(pair):
    ours, theirs = pair
    rng = random.Random(0)
    spaces = [ch for ch in ASSIGNED if ch.isspace()] + ["\u200b", "\ufeff"]
    pieces = list("abcXYZ '\"0123.,!?-_") + spaces + ["'s", "'ll", "'t", "'re", "'ve", "'m", "'d", "'S", "\r\n"]
    texts = ["".join(rng.choice(pieces) if rng.random() < 0.7 else rng.choice(ASSIGNED)
                     for _ in range(rng.randrange(1, 40))) for _ in range(3000)]
    assert _first_difference(ours, theirs, texts) is None
    assert all(ours.decode(ours.encode(t)) == t for t in texts)
