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

CASES = [(w, dt, p) for w in ("W1", "W2", "W2d") for dt in ("float64", "float32")
         for p in peers.PEERS]
BATCH_CASES = [(w, m, dt, p) for w, modes in BATCH_MODES.items() for m in modes
               for dt in ("float64", "float32") for p in peers.PEERS]


def interleaved(benchmark, ours, our_units, theirs, idx, their_units, rounds):
    """Time ``ours()`` and ``theirs(idx[1 + r])`` alternately for ``rounds``
    rounds. Return the medians of each in µs per unit (sample or step) and
    the cores each kept busy (process CPU time / wall time, medians), which
    the pinned thread count should bound."""
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

    benchmark.pedantic(body, rounds=1, iterations=1)
    return tuple(float(np.median(x)) for x in (*times, *cores))


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
    ours(max(1, our_steps // 10))
    theirs(idx[0])  # warm-up: compiles (JAX), allocates
    rounds = 1 if scale < 1 else ROUNDS
    benchmark.group = f"peers {workload} {w.name} per-sample {dtype}"
    fm, pm, fc, pc = interleaved(benchmark, ours, our_steps, theirs, idx, steps, rounds)
    benchmark.extra_info.update(
        workload=workload, name=w.name, mode="per-sample", dtype=dtype, peer=peer,
        peer_version=peers.version(peer), data=source, fastmlp_us=fm, peer_us=pm,
        ratio=pm / fm, fastmlp_path=ours.model.path, rounds=rounds,
        fastmlp_cores=fc, peer_cores=pc, threads=peers.THREADS)


@pytest.mark.parametrize("workload, mode, dtype, peer", BATCH_CASES,
                         ids=[f"{w}-{m}-{dt}-{p}" for w, m, dt, p in BATCH_CASES])
def test_peer_minibatch(benchmark, workload, mode, dtype, peer, scale):
    """One epoch of fastmlp's ``fit`` (the bench's mini-batch case: SGD with
    momentum 0.9, so a little more work than the peers' plain SGD) against
    the peer taking as many batches of random draws, timed per sample."""
    if not peers.available(peer):
        pytest.skip(f"{peer} is not installed (pip install fastmlp[peers])")
    w = WORKLOADS[workload]
    X, Y, source = data(workload, dtype)
    Xr, Yr = np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T)
    case = Case(workload, mode, dtype, "numba-fused", 0)
    ours, samples, _ = make_runner(case, scale)
    steps = max(1, samples // case.batch)
    rng = np.random.RandomState(0)
    idx = rng.randint(Xr.shape[0], size=(ROUNDS + 1, steps, case.batch)).astype(np.int32)
    theirs = peers.RUNNERS[peer](w, Xr, Yr, dtype, batch=case.batch)
    ours()
    theirs(idx[0])
    rounds = 1 if scale < 1 else ROUNDS
    benchmark.group = f"peers {workload} {w.name} {mode} {dtype}"
    fm, pm, fc, pc = interleaved(benchmark, ours, samples, theirs, idx, steps * case.batch, rounds)
    benchmark.extra_info.update(
        workload=workload, name=w.name, mode=mode, dtype=dtype, peer=peer,
        peer_version=peers.version(peer), data=source, fastmlp_us=fm, peer_us=pm,
        ratio=pm / fm, rounds=rounds, fastmlp_cores=fc, peer_cores=pc,
        threads=peers.THREADS)
