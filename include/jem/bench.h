/*
 * jem/bench.h: timings of the convolution kernels on a model's shapes
 * (public; jem.h includes it). Used by `jem bench --layers`.
 *
 * Each figure is the median of `reps` timed runs after one untimed warm-up,
 * on random inputs (drawn from rng) at batch 64. GFLOP/s are effective
 * rates: the FLOPs of a direct convolution (2 per multiply-add) over the
 * time taken, whatever the kernel does.
 */
#ifndef JEM_BENCH_H
#define JEM_BENCH_H

#include "jem.h"

/* Everything declared below is the library's interface: libjem.so is built
 * with -fvisibility=hidden and exports these declarations only. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char name[16];         /* "stem", "b1.c1", "b1.sc" ... (layers); "b1" ... (blocks) */
    char shape[48];        /* "ICxHxW->OC k3 s1" (layers), "ICxHxW->OC s1" (blocks) */
    double gflops[3];      /* layers: forward, input gradient, weight gradient;
                              fused blocks: forward (with the shortcut), input gradient,
                              input and weight gradients (the FLOPs of both) */
    double mflop;          /* one forward pass at batch 64 */
    const char *kernel[3]; /* the planner's kernel (static strings: "winograd", "indirect",
                              "direct", "gemm", "pointwise"): layers: of each pass;
                              fused blocks: of conv1, conv2 and the shortcut ("identity"
                              when it has no weights); blocks run layer by layer: NULL */
    int tile[3];           /* Winograd's output tile m, F(m x m, 3x3), beside each kernel
                              "winograd"; 0 beside the others */
    int fused;             /* blocks: 1 when the network runs the block fused (timed), 0
                              when layer by layer (not timed: gflops, mflop 0; the layers'
                              rows time its convolutions) */
} jem_conv_time;

/* The machine's multiply-add ceiling, measured: a loop of independent
 * vector multiply-adds on registers only (no loads or stores), run at once
 * on the threads, each thread timing its own loop (best of reps after one
 * untimed run, a few milliseconds each). The fastest thread's rate times
 * the threads is the peak: what kernels on that many threads could reach
 * at most. Instruction sets are chosen at run time from the CPU's features.
 * GFLOP/s count 2 FLOPs per multiply-add. */
typedef struct {
    int threads;            /* threads the loops ran on */
    const char *fp32_isa;   /* static string: "avx512f" (zmm vfmadd231ps), "avx2" (ymm
                                vfmadd231ps), "sse2" (mulps + addps), "scalar" (not x86-64) */
    double fp32_per_thread; /* GFLOP/s, fp32, one thread */
    double fp32;            /* GFLOP/s, fp32: fp32_per_thread x threads */
    int has_bf16;           /* 1 when the CPU has AVX512_BF16 (vdpbf16ps), 0 otherwise */
    double bf16_per_thread; /* GFLOP/s of zmm vdpbf16ps (bf16 products, fp32 sums: 16 lanes x 2
                                multiply-adds each, 64 FLOPs), one thread; 0 without AVX512_BF16 */
    double bf16;            /* bf16_per_thread x threads; 0 without AVX512_BF16 */
} jem_fma_peak;

/* Measure *out on `threads` threads (>= 1), best of reps (>= 1).
 * JEM_ERR_ARG for a count below 1. */
jem_status jem_bench_peak(int threads, int reps, jem_fma_peak *out);

/* The rate of OpenBLAS sgemm on n x n x n single-precision matrices. */
double jem_bench_sgemm(int n, int reps, jem_rng *rng);
/* Every convolution of the model a, layer by layer, each pass on the
 * kernel the planner chooses for it (under the kernel settings, jem.h):
 * rows into out (room for max), their number into *n. JEM_ERR_NOMEM when
 * a buffer cannot be had. */
jem_status jem_bench_convs(const jem_arch *a, int reps, jem_rng *rng, jem_conv_time *out, int max, int *n);
/* Every wide block of a, with the planner's choice for it: the blocks the
 * network fuses are timed per image, as the network runs them; the others
 * get a row that says so (fused 0). The forward pass and the input
 * gradient at precision prec (jem_net_set_precision), the pass with the
 * weight gradients in fp32. Rows into out (room for max), their number
 * into *n. */
jem_status jem_bench_blocks(const jem_arch *a, int reps, jem_precision prec, jem_rng *rng, jem_conv_time *out, int max,
                            int *n);

#ifdef __cplusplus
}
#endif
#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#endif /* JEM_BENCH_H */
