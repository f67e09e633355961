"""The one timer every benchmark uses: candidates timed interleaved, so a background load hits all alike.

Imported by the scripts beside it (`from _timing import interleaved`); it benchmarks nothing itself.
"""
from __future__ import annotations

import random
import time


def interleaved(candidates: dict, reps: int, warmup: int = 1) -> dict[str, list[float]]:
    "Seconds of each call of each candidate, `reps` times after `warmup`, in a fresh random order each time."
    times = {name: [] for name in candidates}
    names = list(candidates)
    for rep in range(warmup + reps):
        random.shuffle(names)
        for name in names:
            t0 = time.perf_counter()
            candidates[name]()
            if rep >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


if __name__ == "__main__":
    print("benchmarks/_timing.py: the shared timer; run the other scripts")
