"""NumPy vs Numba, side by side: one pytest-benchmark group per workload x dtype.

pytest-benchmark prints each group's table with every path's time relative
to the fastest; ``extra_info`` records samples/second (and dense-equivalent
GFLOP/s for W2 and W4) for ``bench/report.py``.
"""

import dataclasses
import time

import numpy as np
import pytest
from workloads import WORKLOADS, all_cases, flops_per_sample, make_runner

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_speed(benchmark, case, scale):
    made = make_runner(case, scale)
    if made is None:
        pytest.skip("the notebook's classes are float64 only")
    run, samples, source = made
    run(max(case.batch, samples // 20))  # warm-up: compiles, fills caches, settles malloc
    benchmark.group = case.group
    benchmark.extra_info.update(
        workload=case.workload, name=WORKLOADS[case.workload].name, mode=case.mode,
        dtype=case.dtype, path=case.path, batch=case.batch, samples_per_call=samples,
        data=source, flops_per_sample=flops_per_sample(WORKLOADS[case.workload].sizes),
    )
    setup, step_times = None, []
    if case.path == "stream":
        # The floor is measured next to the step it bounds: before each timed
        # stream round, one untimed-by-pytest call of the default path, timed
        # here. Their ratio is trustworthy where two separate rows are not (a
        # busy neighbour during one of them skews it).
        step, step_samples, _ = make_runner(dataclasses.replace(case, path="numba-fused"), scale)
        step(max(1, step_samples // 20))

        def setup():
            t0 = time.perf_counter()
            step()
            step_times.append((time.perf_counter() - t0) / step_samples * 1e6)
    benchmark.pedantic(run, setup=setup, rounds=5, iterations=1)
    model = getattr(run, "model", None)
    if model is not None and case.batch == 1 and case.path.startswith("numba-"):
        benchmark.extra_info["block"] = model.block_size
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        median = stats.stats.median
        if step_times:
            step_us = float(np.median(step_times))
            benchmark.extra_info["step_us"] = step_us
            benchmark.extra_info["step_over_stream"] = step_us / (median / samples * 1e6)
        benchmark.extra_info["samples_per_s"] = samples / median
        benchmark.extra_info["us_per_sample"] = median / samples * 1e6
        if case.workload in ("W2", "W2d", "W4") and case.path != "stream":
            benchmark.extra_info["gflops"] = (
                samples / median * benchmark.extra_info["flops_per_sample"] / 1e9)
