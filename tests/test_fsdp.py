"""FSDP (FSDP2, `torch.distributed.fsdp.fully_shard`) gives the same run as one process, and its checkpoints
are ordinary ones.

Launches tests/train_sharded_lm.py (chapter 10's GPT, tiny, with tied input and output weights) once as a
single process with a batch of 8, and under `python -m torch.distributed.run --nproc_per_node 2` (gloo on
CPU) with strategy='fsdp': each process holds half of every block's and the root's parameters (checked),
all-gathers them for its forward and backward, and reduce-scatters the gradients. Compared: every step's
loss, the evaluations and the final weights, within 1e-5 (float32 sums in another order, as in
tests/test_ddp.py). A second FSDP run accumulates two micro-batches of 2 per process (no reduce-scatter
but in the last backward), stops at step 10 and is resumed under torchrun from its checkpoint, which was
gathered to rank 0 and written atomically in the one-process format: it must end where the one-process
run ends, and its step-10 checkpoint must load into a plain GPT and continue in a single process to the
same weights. About a minute on this 2-core machine, most of it starting processes.

A third FSDP run autocasts to bfloat16 and must track the one-process float32 run within the tolerance of
tests/test_precision.py. (FSDP with --compile also runs on this CPU, through the command line; it is not
repeated here, to keep the file near a minute.)

Not covered here (no GPU): NCCL, FSDP with fp16 and its gradient scaler on sharded gradients, fused AdamW
on sharded parameters, FSDP's own mixed-precision policy (we autocast instead), more than one node.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "train_sharded_lm.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")


def _run(cmd, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    r = subprocess.run(list(map(str, cmd)), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return time.perf_counter() - t0


def _assert_same_run(a: dict, b: dict, evaluations: bool = True):
    "Two checkpoints of the same 20-step run, up to float32 rounding: losses, evaluations, final weights."
    from safetensors.torch import load_file
    h1, h2 = a["trainer_state"]["history"], b["trainer_state"]["history"]
    assert len(h1["loss"]) == len(h2["loss"]) == 20
    assert max(abs(x - y) for x, y in zip(h1["loss"], h2["loss"])) < 1e-5
    if evaluations:
        assert max(abs(x - y) for x, y in zip(h1["val_eval"], h2["val_eval"])) < 1e-5
    w1, w2 = load_file(a["path"] / "model.safetensors"), load_file(b["path"] / "model.safetensors")
    assert w1.keys() == w2.keys()                                # tied weights stored once, under the same name
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-5, rtol=0, msg=k)


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    "The reference: one process, batch 8, 20 steps."
    d = tmp_path_factory.mktemp("fsdp")
    seconds = _run([sys.executable, SCRIPT, "--out", d / "one", "--batch-size", "8"], d)
    print(f"one process: {seconds:.1f} s")
    from transformer_lit.checkpoint import load_checkpoint
    return d, load_checkpoint(d / "one")


def test_fsdp_two_processes_match_one(one):
    from transformer_lit.checkpoint import load_checkpoint
    d, ref = one
    seconds = _run([*TORCHRUN, SCRIPT, "--out", d / "fsdp", "--batch-size", "4", "--strategy", "fsdp", "--report"], d)
    print(f"two processes, FSDP (torchrun): {seconds:.1f} s")
    two = load_checkpoint(d / "fsdp")
    assert two["step"] == 20 and two["trainer_state"]["world_size"] == 2
    assert two["train_config"]["strategy"] == "fsdp"
    _assert_same_run(ref, two)
    h = ref["trainer_state"]["history"]
    assert h["loss"][-1] < h["loss"][0] - 0.5                   # it did learn something
    ranks = [json.loads((d / "fsdp" / f"rank{r}.json").read_text()) for r in range(2)]
    total = ranks[0]["total"]
    assert ranks[0]["local"] + ranks[1]["local"] == total        # every number is held by exactly one process
    assert all(abs(r["local"] - total / 2) < 0.05 * total for r in ranks), ranks   # about half each


def test_fsdp_accumulation_resume_and_one_process_resume(one):
    from safetensors.torch import load_file
    from transformer_lit.gpt import GPT
    from transformer_lit.checkpoint import load_checkpoint
    sys.path.insert(0, str(ROOT / "tests"))
    from train_sharded_lm import model_config
    d, ref = one
    common = ["--batch-size", "2", "--grad-accum", "2", "--strategy", "fsdp"]
    _run([*TORCHRUN, SCRIPT, "--out", d / "cut", *common, "--until", "10"], d)
    cut = load_checkpoint(d / "cut")
    assert cut["step"] == 10
    vocab = cut["model_config"]["vocab_size"]
    plain = GPT(model_config(vocab))
    load_checkpoint(d / "cut", plain)                            # an ordinary checkpoint: strict load into a plain GPT
    assert torch.equal(plain.lm_head.weight, plain.tok_emb.weight)
    (d / "single").mkdir()                                       # the same checkpoint, continued in one process
    import shutil
    shutil.copytree(cut["path"], d / "single" / cut["path"].name)
    (d / "single" / "latest").write_text(cut["path"].name)
    _run([*TORCHRUN, SCRIPT, "--out", d / "cut", *common, "--resume"], d)
    _run([sys.executable, SCRIPT, "--out", d / "single", "--batch-size", "8", "--resume"], d)
    resumed, single = load_checkpoint(d / "cut"), load_checkpoint(d / "single")
    assert resumed["step"] == single["step"] == 20
    _assert_same_run(ref, resumed, evaluations=False)            # evaluation batches of 2 x 2, not 8
    _assert_same_run(ref, single, evaluations=False)
    w = load_file(resumed["path"] / "model.safetensors")
    assert "tok_emb.weight" not in w or "lm_head.weight" not in w   # the tied matrix once


def test_fsdp_with_bf16_tracks_one_fp32_process(one):
    from transformer_lit.checkpoint import load_checkpoint
    d, ref = one
    _run([*TORCHRUN, SCRIPT, "--out", d / "bf16", "--batch-size", "4", "--strategy", "fsdp", "--precision", "bf16"], d)
    bf16 = load_checkpoint(d / "bf16")
    assert bf16["train_config"]["precision"] == "bf16"
    gaps = [abs(a - b) for a, b in zip(ref["trainer_state"]["history"]["loss"], bf16["trainer_state"]["history"]["loss"])]
    print(f"FSDP bf16 vs one process fp32: largest loss difference {max(gaps):.4f}, mean {sum(gaps) / len(gaps):.4f}")
    assert len(gaps) == 20 and 0 < max(gaps) < 0.12 and sum(gaps) / len(gaps) < 0.03
