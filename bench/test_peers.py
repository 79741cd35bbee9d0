"""fastmlp against its peers, side by side: JAX (``jit`` + ``lax.scan``) and
PyTorch eager on the CPU, per-sample SGD and mini-batch SGD on the bench's
workloads.

Optional: each peer's rows are skipped when it is not installed (the
``peers`` extra installs both). Import this module before anything imports
JAX (pytest collects ``bench/`` in file order; ``peers`` sets XLA's thread
flags on import).

Each test times fastmlp's default path and the peer *interleaved* in one
process (fastmlp, peer, fastmlp, peer, ... after a warm-up of each) and
records both medians and their ratio (peer time / fastmlp time: above 1,
fastmlp is faster), so a busy neighbour slows both alike.
"""

import time

import numpy as np
import peers
import pytest
from workloads import BATCH_MODES, PER_SAMPLE_STEPS, WORKLOADS, Case, data, make_runner

#: Per-sample steps per timed peer call (PyTorch eager is ~100x slower per step).
PEER_STEPS = {"jax": {"W1": 50_000, "W2": 20_000, "W2d": 20_000},
              "torch": {"W1": 2_000, "W2": 1_000, "W2d": 1_000}}
ROUNDS = 5
#: Rounds of the mini-batch rows: their calls are short (10-80 ms), so this
#: machine's bursts of load, which last longer, would otherwise decide the
#: median of a few.
BATCH_ROUNDS = 15

CASES = [(w, dt, p) for w in ("W1", "W2", "W2d") for dt in ("float64", "float32")
         for p in peers.PEERS]
BATCH_CASES = [(w, m, dt, p) for w, modes in BATCH_MODES.items() for m in modes
               for dt in ("float64", "float32") for p in peers.PEERS]


def interleaved(benchmark, ours, our_units, theirs, idx, their_units, rounds):
    """Time ``ours()`` and ``theirs(idx[1 + r])`` alternately for ``rounds``
    rounds. Return the medians of each in µs per unit (sample or step), the
    cores each kept busy (process CPU time / wall time, medians), which the
    pinned thread count should bound, and the quartiles of the rounds' own
    ratios (peer / fastmlp, each from two neighbouring calls, so a burst of
    load on this shared machine moves both of its times alike)."""
    times, cores = ([], []), ([], [])

    def timed(call, units, side):
        c0, t0 = time.process_time(), time.perf_counter()
        call()
        t1, c1 = time.perf_counter(), time.process_time()
        times[side].append((t1 - t0) / units * 1e6)
        cores[side].append((c1 - c0) / (t1 - t0))

    def body():
        for r in range(rounds):
            timed(ours, our_units, 0)
            timed(lambda r=r: theirs(idx[1 + r]), their_units, 1)

    with peers.same_cores():
        ours()  # warm-ups, on the cores they are timed on: compile (JAX), allocate
        theirs(idx[0])
        benchmark.pedantic(body, rounds=1, iterations=1)
    paired = np.array(times[1]) / np.array(times[0])
    return (*(float(np.median(x)) for x in (*times, *cores)),
            [float(q) for q in np.percentile(paired, [25, 50, 75])])


@pytest.mark.parametrize("workload, dtype, peer", CASES,
                         ids=[f"{w}-per-sample-{dt}-{p}" for w, dt, p in CASES])
def test_peer(benchmark, workload, dtype, peer, scale):
    if not peers.available(peer):
        pytest.skip(f"{peer} is not installed (pip install fastmlp[peers])")
    w = WORKLOADS[workload]
    X, Y, source = data(workload, dtype)
    Xr, Yr = np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T)
    ours, our_steps, _ = make_runner(Case(workload, "per-sample", dtype, "numba-fused",
                                          PER_SAMPLE_STEPS[workload]), scale)
    steps = max(10, int(PEER_STEPS[peer][workload] * scale))
    rng = np.random.RandomState(0)
    idx = rng.randint(Xr.shape[0], size=(ROUNDS + 1, steps, 1)).astype(np.int32)
    theirs = peers.RUNNERS[peer](w, Xr, Yr, dtype)
    rounds = 1 if scale < 1 else ROUNDS
    benchmark.group = f"peers {workload} {w.name} per-sample {dtype}"
    fm, pm, fc, pc, paired = interleaved(benchmark, ours, our_steps, theirs, idx, steps, rounds)
    benchmark.extra_info.update(
        workload=workload, name=w.name, mode="per-sample", dtype=dtype, peer=peer,
        peer_version=peers.version(peer), data=source, fastmlp_us=fm, peer_us=pm,
        ratio=pm / fm, paired_ratio=paired, fastmlp_path=ours.model.path, rounds=rounds,
        fastmlp_cores=fc, peer_cores=pc, threads=peers.THREADS)


@pytest.mark.parametrize("workload, mode, dtype, peer", BATCH_CASES,
                         ids=[f"{w}-{m}-{dt}-{p}" for w, m, dt, p in BATCH_CASES])
def test_peer_minibatch(benchmark, workload, mode, dtype, peer, scale):
    """One epoch of fastmlp's ``fit`` (the bench's mini-batch case, with the
    peers' plain SGD) against the peer taking as many batches of random
    draws from the same samples, timed per sample. (Until session 9
    fastmlp ran momentum 0.9 here, and the peers drew from all of MNIST,
    out of the cache, while fastmlp's epoch read a subset in it.)"""
    if not peers.available(peer):
        pytest.skip(f"{peer} is not installed (pip install fastmlp[peers])")
    w = WORKLOADS[workload]
    X, Y, source = data(workload, dtype)
    Xr, Yr = np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T)
    case = Case(workload, mode, dtype, "numba-fused", 0)
    ours, samples, _ = make_runner(case, scale, momentum=0.0)
    steps = max(1, samples // case.batch)
    rng = np.random.RandomState(0)
    idx = rng.randint(samples, size=(BATCH_ROUNDS + 1, steps, case.batch)).astype(np.int32)
    theirs = peers.RUNNERS[peer](w, Xr, Yr, dtype, batch=case.batch)
    rounds = 1 if scale < 1 else BATCH_ROUNDS
    benchmark.group = f"peers {workload} {w.name} {mode} {dtype}"
    fm, pm, fc, pc, paired = interleaved(benchmark, ours, samples, theirs, idx,
                                         steps * case.batch, rounds)
    benchmark.extra_info.update(
        workload=workload, name=w.name, mode=mode, dtype=dtype, peer=peer,
        peer_version=peers.version(peer), data=source, fastmlp_us=fm, peer_us=pm,
        ratio=pm / fm, paired_ratio=paired, rounds=rounds, fastmlp_cores=fc, peer_cores=pc,
        threads=peers.THREADS)
