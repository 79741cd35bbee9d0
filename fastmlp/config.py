"""Every tuning constant of fastmlp, in one place, with the measurement behind it.

The planner (:mod:`fastmlp.plan`) turns these into choices by rules on the
network's shape, the dtype and the input's density, never by timing (except
for the explicit opt-in ``block="tune"``), so the same seed and data give the
same bits on every run. Figures were measured on the project's 2-core AMD
EPYC (Zen 4) machine, one BLAS thread; see the README's Performance section.
"""

# -- sample draws -------------------------------------------------------------

#: Sample indices drawn at a time by ``sgd`` (as whole steps: at least one).
#: Chunks have a size fixed by the batch size whatever the reporting, so a
#: Generator seed gives the same trajectory whether or not progress is shown,
#: and a chunk's buffers stay small for any batch size.
INDEX_CHUNK = 1 << 16

#: Largest ``sgd(batch_size=...)``: each step draws this many indices, held at
#: once (8 bytes each), so a typo such as 2**40 fails with a clear message.
SGD_BATCH_MAX = 1 << 22

#: Work one compiled training call may take, counted as parameters x
#: samples (a per-sample step does about 3 multiply-adds a parameter at a
#: few GFLOP/s; a mini-batch step 3 a parameter and sample, at GEMM speed,
#: plus its optimizer's pass over every parameter, counted as
#: ``UPDATE_SAMPLES`` samples; so both run at 0.05-0.3 s a call here): runs
#: are split into calls of about this much work, so Ctrl-C, which Python
#: handles between calls, stops training within a fraction of a second, while each
#: call's fixed cost (its buffers, and the sparse first layer's copy of W and
#: its optimizer state into column blocks and back: 1.5 ms for 784 x 512, a
#: third of a step of 784-512-512-10 in batches of 128) is spread over many
#: steps. (Counting a mini-batch step three times, that network took three
#: steps a call: 10% of its time in those copies.)
#: Splits fall on whole steps and depend only on the network's size, so
#: results are the same on every run; the one-pass and mini-batch kernels
#: end on the same bits however a run is split.
CALL_WORK = 1_000_000_000

#: What a mini-batch step's update pass over the parameters counts as, in
#: samples of :data:`CALL_WORK`. Measured: a batch of one through
#: 784-512-512-10 (float64, 670,000 parameters) took 1.7 ms a step with
#: momentum and 2.5 ms with Adam, where its products are 2 million
#: multiply-adds (0.07 ms at BLAS speed) and the update reads and writes
#: every parameter and its state. A call of CALL_WORK / (parameters x
#: (batch + 24)) steps then takes 0.15 s with Adam; counted as 3 x batch
#: (until session 9) it took 1.2 s, past the half second in which Ctrl-C
#: should stop training.
UPDATE_SAMPLES = 24

# -- data layout --------------------------------------------------------------

#: The fused kernels read samples as rows. A call visiting at least this
#: fraction of the samples of an X not already laid out so transposes it once;
#: shorter calls gather just the samples they draw.
TRANSPOSE_MIN_FRACTION = 0.25

# -- per-sample kernels (fastmlp.kernels.per_sample, .blocked) -----------------

#: Inputs with at most this fraction of nonzeros count as sparse.
SPARSE_DENSITY = 0.5
#: Rows sampled (evenly spaced) to estimate the input's density.
DENSITY_SAMPLE = 256
#: Block size the rules pick for dense inputs. Measured on 784-100-10 with
#: uniform random pixels, one BLAS thread, on this project's Zen 3 machine:
#: 16.8 / 14.1 us per step at k = 64 against 18.0 / 15.1 at k = 32 and 19.9 /
#: 15.3 at k = 128 (float64 / float32), about 1.5-1.8x the one-pass kernel
#: (the previous, timing-based choice also settled on 64 here). On sparse
#: inputs (MNIST) the blocked kernel on the nonzeros gains only 1.05-1.1x,
#: within noise, so the rules keep one-pass.
DENSE_BLOCK = 64
#: Dense inputs into a first layer of at most this many bytes run the one-pass
#: kernel with its weights in column blocks (fastmlp.kernels.columns), which
#: streams the matrix once a step and is fastest while the matrix stays in L2
#: (512 KB on this machine); larger ones the blocked kernel. (This replaces a
#: rule of at least 16,384 weights for the blocked kernel: 320 KiB is more.) Measured (m-n-10
#: sigmoid networks on uniform random pixels, one BLAS thread, one process;
#: time of the blocked kernel at k = 64 over the one-pass kernel's):
#: float32 128x128 1.14, 256x64 1.23, 784x100 (306 KB) 1.09, 1000x100 (391 KB)
#: 0.97, 784x256 0.91, 784x512 0.84, 3072x100 0.96; float64 128x128 1.11,
#: 256x64 1.19, 784x100 (612 KB) 0.98, 1000x100 0.98, 784x256 0.86. Paired over
#: 9 rounds at 784x100 after the pass got faster: float32 0.99 (a tie),
#: float64 0.94.
COLUMNS_MAX_BYTES = 320 * 1024
#: Largest block size accepted (the k x k Gram buffer grows with its square).
BLOCK_MAX = 4096

# -- block="tune" (opt-in, machine-dependent) -----------------------------------

#: Block sizes tried: with GEMMs (dense inputs), and on the nonzeros (sparse
#: inputs), whose Gram terms cost more per step as blocks grow.
BLOCK_CANDIDATES = (16, 32, 64, 128)
SPARSE_BLOCK_CANDIDATES = (8, 16, 32)
#: Calls shorter than this use a remembered choice, or the rules' choice.
TUNE_MIN_STEPS = 4_096
#: The blocked kernel must beat the one-pass kernel by this factor to be kept.
BLOCK_MARGIN = 0.9

# -- mini-batch kernel (fastmlp.kernels.minibatch) ------------------------------

#: The sparse first layer (groups of four on the nonzeros) pays when the
#: batch's fill, the share of the dense multiply-adds its lists hold, is at
#: most SPARSE_FILL_MAX and the layer has at least SPARSE_MIN_WIDTH outputs.
#: Measured (one core, both products of the first layer, against OpenBLAS;
#: batches of 32-200, 64-512 outputs, float32 and float64): 1.14-2.5x
#: faster at MNIST's fill of 0.33, 0.6-1.27x at 0.56 (MNIST with 8% more
#: pixels set at random), slower beyond. Narrower layers were not measured.
SPARSE_FILL_MAX = 0.45
SPARSE_MIN_WIDTH = 64

# -- Numba engine (fastmlp.kernels.layer_ops) -----------------------------------

#: Batches with at least this many columns use BLAS products; smaller ones
#: (the layer-by-layer path's per-sample steps) loops, faster at that size.
BLAS_MIN_COLUMNS = 8

# -- inference (fastmlp.inference) -----------------------------------------------

#: Columns per chunk of the layer-by-layer forward over many samples (networks
#: the kernels cannot run), which bounds its buffers.
FORWARD_CHUNK = 8192
#: Target bytes of each inference worker's buffers; chunks of CHUNK_MIN to
#: CHUNK_MAX samples are sized to fit (the memory bound of fastmlp.inference).
WORKSPACE_BYTES = 16 << 20
CHUNK_MIN, CHUNK_MAX = 16, 2048
#: Columns (as pairs of adjacent samples) sampled to decide the first layer's path.
DENSITY_SAMPLES = 256
#: Below this many multiply-adds a call runs in the caller's thread (handing
#: chunks to workers costs more).
PARALLEL_MIN_WORK = 2_000_000
#: A layer runs over the nonzero inputs when the fill of its groups of four
#: samples (the share of (input, group) entries where any of the four is
#: nonzero) is at most INFERENCE_FILL_MAX, and it has at least
#: INFERENCE_FILL_MIN_WIDTH outputs. Measured against one-thread OpenBLAS
#: (chunks of 2048, 784 inputs, 16 to 1024 outputs, both dtypes): the sparse
#: kernel wins up to a fill of 0.65-0.75 whatever the width; MNIST's is 0.39.
INFERENCE_FILL_MAX = 0.55
INFERENCE_FILL_MIN_WIDTH = 16
#: From INFERENCE_WIDE outputs up the limit is INFERENCE_FILL_MAX_WIDE: the
#: lists' cost is shared by more column blocks. Measured (one thread, 512
#: inputs, random nonzeros): 256-512 outputs ran in 0.8-0.9 of BLAS's time
#: at fill 0.8 and about 1 at 0.9-0.95 (MNIST's ReLU outputs after 784-512
#: fill 0.76, their groups sorted).
INFERENCE_FILL_MAX_WIDE = 0.8
INFERENCE_WIDE = 256
#: Layers after the first with at most this many outputs run on the register
#: kernel over every input (fastmlp.kernels.inference.dense_layer) instead of
#: BLAS: measured (2,048 rows) 0.6-0.86 of OpenBLAS's time for 10-32 outputs,
#: about 1 for 64.
INFERENCE_NARROW = 32
#: The most bytes :class:`fastmlp.inference.Accuracy` keeps of the first layer's lists for
#: the whole of X (index and four values an entry; 140 MB for MNIST's 60,000
#: float64 images), and at most half of X's own bytes; above either it lists
#: each chunk afresh, as the other functions do.
LIST_CACHE_BYTES = 256 << 20
