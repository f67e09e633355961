"""Data-parallel training gives the same run as one process with the same global batch.

Launches tests/train_tiny_lm.py once as a single process (batch 8) and under
`python -m torch.distributed.run --nproc_per_node 2` (gloo on CPU): with batch 4 per process, and with
batch 2 and two accumulated micro-batches per process (DDP's `no_sync` path), then compares the
checkpoints: per-step training losses, evaluation losses and final weights. A third pair of runs uses
dropout, where each process must draw its own masks, and checks that a run interrupted and resumed
under torchrun continues exactly (every process gets its own random state back).
Tolerance: float32 sums in a different order (half-batch means averaged by all-reduce instead of one
full-batch mean) differ by rounding only, so 1e-5 absolute on losses and on weights.
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
SCRIPT = ROOT / "tests" / "train_tiny_lm.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")


def _run(cmd, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    r = subprocess.run(list(map(str, cmd)), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return time.perf_counter() - t0


def _report(out: Path) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def _assert_same_run(a: dict, b: dict, evaluations: bool = True):
    """Two checkpoints of the same run, up to float32 rounding: losses, evaluations, final weights.
    (Evaluation draws `batch_size` windows per process and batch, so it compares only at equal batch_size.)"""
    from safetensors.torch import load_file
    h1, h2 = a["trainer_state"]["history"], b["trainer_state"]["history"]
    assert len(h1["loss"]) == len(h2["loss"]) == 20
    assert max(abs(x - y) for x, y in zip(h1["loss"], h2["loss"])) < 1e-5
    if evaluations:
        assert max(abs(x - y) for x, y in zip(h1["val_eval"], h2["val_eval"])) < 1e-5
    w1, w2 = load_file(a["path"] / "model.safetensors"), load_file(b["path"] / "model.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-5, rtol=0, msg=k)


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    "The reference: one process, batch 8, 20 steps."
    d = tmp_path_factory.mktemp("ddp")
    seconds = _run([sys.executable, SCRIPT, "--out", d / "one", "--batch-size", "8"], d)
    print(f"one process: {seconds:.1f} s")
    from transformer_lit.checkpoint import load_checkpoint
    return d, load_checkpoint(d / "one")


def test_two_processes_match_one(one):
    from transformer_lit.checkpoint import load_checkpoint
    d, ref = one
    seconds = _run([*TORCHRUN, SCRIPT, "--out", d / "two", "--batch-size", "4", "--report"], d)
    print(f"two processes (torchrun): {seconds:.1f} s")
    two = load_checkpoint(d / "two")
    assert ref["step"] == two["step"] == 20
    assert two["trainer_state"]["world_size"] == 2 and ref["trainer_state"]["world_size"] == 1
    _assert_same_run(ref, two)
    h1 = ref["trainer_state"]["history"]
    assert h1["loss"][-1] < h1["loss"][0] - 0.5              # it did learn something
    ranks = _report(d / "two")
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]   # the replicas stayed identical


def test_accumulation_under_ddp_matches_one(one):
    "Two processes x 2 micro-batches of 2 = the global batch of 8: DDP all-reduces once per step (no_sync)."
    from transformer_lit.checkpoint import load_checkpoint
    d, ref = one
    _run([*TORCHRUN, SCRIPT, "--out", d / "accum", "--batch-size", "2", "--grad-accum", "2", "--report"], d)
    _assert_same_run(ref, load_checkpoint(d / "accum"), evaluations=False)   # evaluation batches of 2 x 2, not 8
    ranks = _report(d / "accum")
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    # Without no_sync, DDP would all-reduce after each micro-batch's backward: twice per step.
    per_step = {r["allreduces"] / r["steps"] for r in ranks}
    assert per_step == {1.0}, ranks                          # one bucket: the model is tiny


def test_dropout_per_process_and_exact_resume(tmp_path):
    "With dropout each process has its own random state; a run resumed under torchrun continues exactly."
    from safetensors.torch import load_file
    from transformer_lit.checkpoint import load_checkpoint
    common = ["--batch-size", "4", "--dropout", "0.2"]
    _run([*TORCHRUN, SCRIPT, "--out", tmp_path / "straight", *common, "--report"], tmp_path)
    _run([*TORCHRUN, SCRIPT, "--out", tmp_path / "cut", *common, "--until", "10"], tmp_path)
    _run([*TORCHRUN, SCRIPT, "--out", tmp_path / "cut", *common, "--resume", "--report"], tmp_path)
    straight, resumed = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "cut")
    assert straight["step"] == resumed["step"] == 20
    rng = straight["trainer_state"]["rng"]                    # one state per process, all saved
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])
    h1, h2 = straight["trainer_state"]["history"], resumed["trainer_state"]["history"]
    assert h1["loss"] == h2["loss"] and h1["val_eval"] == h2["val_eval"]      # bit for bit
    w1, w2 = load_file(straight["path"] / "model.safetensors"), load_file(resumed["path"] / "model.safetensors")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    ranks = _report(tmp_path / "straight")
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]   # different masks, one model
