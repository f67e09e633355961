"""Data-parallel training gives the same run as one process with the same global batch.

Launches tests/train_tiny_lm.py once as a single process (batch 8) and once under
`python -m torch.distributed.run --nproc_per_node 2` (gloo on CPU, batch 4 per process), then compares
the two checkpoints: per-step training losses, evaluation losses and final weights.
Tolerance: float32 sums in a different order (half-batch means averaged by all-reduce instead of one
full-batch mean) differ by rounding only, so 1e-5 absolute on losses and on weights.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "train_tiny_lm.py"


def _run(cmd, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_processes_match_one(tmp_path):
    from transformer_lit.training import load_checkpoint
    t0 = time.perf_counter()
    _run([sys.executable, SCRIPT, "--out", tmp_path / "one", "--batch-size", "8"], tmp_path)
    t1 = time.perf_counter()
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          SCRIPT, "--out", tmp_path / "two", "--batch-size", "4"], tmp_path)
    t2 = time.perf_counter()
    print(f"one process: {t1 - t0:.1f} s, two processes (torchrun): {t2 - t1:.1f} s")
    one, two = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "two")
    assert one["step"] == two["step"] == 20
    h1, h2 = one["trainer_state"]["history"], two["trainer_state"]["history"]
    assert two["trainer_state"]["world_size"] == 2 and one["trainer_state"]["world_size"] == 1
    assert len(h1["loss"]) == len(h2["loss"]) == 20
    assert max(abs(a - b) for a, b in zip(h1["loss"], h2["loss"])) < 1e-5
    assert max(abs(a - b) for a, b in zip(h1["val_eval"], h2["val_eval"])) < 1e-5
    assert h1["loss"][-1] < h1["loss"][0] - 0.5              # it did learn something
    from safetensors.torch import load_file
    w1, w2 = load_file(one["path"] / "model.safetensors"), load_file(two["path"] / "model.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-5, rtol=0, msg=k)
