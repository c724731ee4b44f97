/* bench.c: timings of the convolution kernels on a model's shapes, layer
 * by layer and per fused block, with the kernel and tile the planner chose
 * for each (jem/bench.h). Medians of several repetitions after a warm-up.
 * And the machine's multiply-add peak, fp32 and bf16, from register-only
 * loops (best of several runs), the ceiling those rates are read against. */
#include "jem.h"
#include "nn/nn.h"
#include "nn/plan.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PEAK_X86 1
#else
#define PEAK_X86 0
#endif

#define BATCH 64

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void fill(float *x, size_t n, jem_rng *r)
{
    for (size_t i = 0; i < n; i++) x[i] = 2.0f * jem_rng_uniform(r) - 1.0f;
}

/* ---- the multiply-add peak (jem_bench_peak). Each loop keeps its
 * accumulators in registers and does nothing but independent multiply-adds:
 * acc = acc * a + b (fp32) or acc += a . b over bf16 pairs (vdpbf16ps).
 * Enough accumulators to cover the instruction's latency at two per cycle
 * (16 zmm: latency 4-6 cycles x 2 ports). Each starts at its own value so
 * that no compiler can merge them; the sum of all is returned so that none
 * is dead. a < 1 keeps the fp32 values bounded and away from denormals. The
 * empty volatile asm makes each loop a function with side effects: without
 * it the compiler may treat the loop as a pure function of n, run it once
 * for all repetitions, or move it out of the timed span. */
#define PEAK_ITERS (1L << 19) /* about 1-3 ms per loop */
#define PEAK_FENCE __asm__ __volatile__("" ::: "memory")

#if PEAK_X86
#define REP16(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#define REP12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

/* 16 zmm FMAs per iteration: 512 FLOPs */
__attribute__((target("avx512f"), noinline)) static float peak_avx512(long n)
{
    PEAK_FENCE;
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
#define DECL(i) __m512 c##i = _mm512_set1_ps(0.01f * (i));
#define STEP(i) c##i = _mm512_fmadd_ps(c##i, a, b);
#define SUM(i)  s = _mm512_add_ps(s, c##i);
    REP16(DECL)
    for (long it = 0; it < n; it++) {
        REP16(STEP)
    }
    __m512 s = _mm512_setzero_ps();
    REP16(SUM)
    return _mm512_reduce_add_ps(s);
#undef DECL
#undef STEP
#undef SUM
}

/* 16 zmm vdpbf16ps per iteration: 16 lanes x 2 multiply-adds each, 1024 FLOPs */
__attribute__((target("avx512f,avx512bw,avx512bf16"), noinline)) static float peak_bf16(long n)
{
    PEAK_FENCE;
    const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(-0.5f));
    const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.25f), _mm512_set1_ps(0.25f));
#define DECL(i) __m512 c##i = _mm512_set1_ps(0.01f * (i));
#define STEP(i) c##i = _mm512_dpbf16_ps(c##i, a, b);
#define SUM(i)  s = _mm512_add_ps(s, c##i);
    REP16(DECL)
    for (long it = 0; it < n; it++) {
        REP16(STEP)
    }
    __m512 s = _mm512_setzero_ps();
    REP16(SUM)
    return _mm512_reduce_add_ps(s);
#undef DECL
#undef STEP
#undef SUM
}

/* 12 ymm FMAs per iteration (16 ymm registers): 192 FLOPs */
__attribute__((target("avx2,fma"), noinline)) static float peak_avx2(long n)
{
    PEAK_FENCE;
    const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-3f);
#define DECL(i) __m256 c##i = _mm256_set1_ps(0.01f * (i));
#define STEP(i) c##i = _mm256_fmadd_ps(c##i, a, b);
#define SUM(i)  s = _mm256_add_ps(s, c##i);
    REP12(DECL)
    for (long it = 0; it < n; it++) {
        REP12(STEP)
    }
    __m256 s = _mm256_setzero_ps();
    REP12(SUM)
    float v[8];
    _mm256_storeu_ps(v, s);
    return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
#undef DECL
#undef STEP
#undef SUM
}

/* 12 xmm multiply-add pairs per iteration: 96 FLOPs */
__attribute__((noinline)) static float peak_sse2(long n)
{
    PEAK_FENCE;
    const __m128 a = _mm_set1_ps(0.999f), b = _mm_set1_ps(1e-3f);
#define DECL(i) __m128 c##i = _mm_set1_ps(0.01f * (i));
#define STEP(i) c##i = _mm_add_ps(_mm_mul_ps(c##i, a), b);
#define SUM(i)  s = _mm_add_ps(s, c##i);
    REP12(DECL)
    for (long it = 0; it < n; it++) {
        REP12(STEP)
    }
    __m128 s = _mm_setzero_ps();
    REP12(SUM)
    float v[4];
    _mm_storeu_ps(v, s);
    return v[0] + v[1] + v[2] + v[3];
#undef DECL
#undef STEP
#undef SUM
}
#else
/* elsewhere: 8 scalar multiply-add chains per iteration, 16 FLOPs */
__attribute__((noinline)) static float peak_scalar(long n)
{
    PEAK_FENCE;
    float c[8];
    for (int i = 0; i < 8; i++) c[i] = 0.01f * i;
    for (long it = 0; it < n; it++)
        for (int i = 0; i < 8; i++) c[i] = c[i] * 0.999f + 1e-3f;
    return c[0] + c[1] + c[2] + c[3] + c[4] + c[5] + c[6] + c[7];
}
#endif

typedef enum { PEAK_AVX512, PEAK_AVX2, PEAK_SSE2, PEAK_SCALAR, PEAK_BF16 } peak_kind;

static float peak_run(peak_kind k, long n)
{
#if PEAK_X86
    switch (k) {
    case PEAK_AVX512: return peak_avx512(n);
    case PEAK_BF16: return peak_bf16(n);
    case PEAK_AVX2: return peak_avx2(n);
    default: return peak_sse2(n);
    }
#else
    (void)k;
    return peak_scalar(n);
#endif
}

/* FLOPs per iteration of each loop */
static double peak_flops(peak_kind k)
{
    switch (k) {
    case PEAK_AVX512: return 16 * 16 * 2;
    case PEAK_BF16: return 16 * 16 * 2 * 2;
    case PEAK_AVX2: return 12 * 8 * 2;
    case PEAK_SSE2: return 12 * 4 * 2;
    default: return 8 * 2;
    }
}

/* the loop of kind k on `threads` threads at once, each timing its own,
 * best of reps: the fastest thread's GFLOP/s, the threads that ran into
 * *nth */
static double peak_measure(peak_kind k, int threads, int reps, int *nth)
{
    double best = 0;
    int got = 1;
#pragma omp parallel num_threads(threads) reduction(max : best)
    {
#pragma omp single
        got = omp_get_num_threads();
        double tb = 0;
        volatile float sink = 0; /* the loops' results, kept so that they run */
        for (int rep = -1; rep < reps; rep++) {
#pragma omp barrier
            const double t0 = now_s();
            const float v = peak_run(k, PEAK_ITERS);
            const double dt = now_s() - t0;
            sink = v;
            if (rep >= 0 && dt > 0 && (tb == 0 || dt < tb)) tb = dt;
        }
        (void)sink;
        if (tb > 0) best = peak_flops(k) * PEAK_ITERS / tb / 1e9;
    }
    *nth = got;
    return best;
}

jem_status jem_bench_peak(int threads, int reps, jem_fma_peak *out)
{
    memset(out, 0, sizeof *out);
    if (threads < 1 || reps < 1) return jem_fail(JEM_ERR_ARG, "bench: peak on %d threads, %d reps", threads, reps);
    peak_kind k = PEAK_SCALAR;
    out->fp32_isa = "scalar";
#if PEAK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        k = PEAK_AVX512;
        out->fp32_isa = "avx512f";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        k = PEAK_AVX2;
        out->fp32_isa = "avx2";
    } else {
        k = PEAK_SSE2;
        out->fp32_isa = "sse2";
    }
    out->has_bf16 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
#endif
    int nth = 1;
    out->fp32_per_thread = peak_measure(k, threads, reps, &nth);
    out->threads = nth;
    out->fp32 = out->fp32_per_thread * nth;
    if (out->has_bf16) {
        out->bf16_per_thread = peak_measure(PEAK_BF16, threads, reps, &nth);
        out->bf16 = out->bf16_per_thread * nth;
    }
    return JEM_OK;
}

double jem_bench_sgemm(int n, int reps, jem_rng *rng)
{
    if (n < 1 || reps < 1) return 0;
    float *A = malloc(sizeof(float) * n * n), *B = malloc(sizeof(float) * n * n), *C = malloc(sizeof(float) * n * n);
    double *t = malloc(sizeof(double) * reps);
    double g = 0;
    if (A && B && C && t) {
        fill(A, (size_t)n * n, rng);
        fill(B, (size_t)n * n, rng);
        int rr = n <= 256 ? 200 : 3;
        for (int rep = -1; rep < reps; rep++) {
            double t0 = now_s();
            for (int i = 0; i < rr; i++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, A, n, B, n, 0, C, n);
            if (rep >= 0) t[rep] = (now_s() - t0) / rr;
        }
        g = 2.0 * n * n * n / median(t, reps) / 1e9;
    }
    free(A);
    free(B);
    free(C);
    free(t);
    return g;
}

jem_status jem_bench_convs(const jem_arch *a, int reps, jem_rng *rng, jem_conv_time *out, int max, int *n)
{
    *n = 0;
    if (reps < 1) return jem_fail(JEM_ERR_ARG, "bench: reps %d", reps);
    /* every convolution of the model at batch 64 */
    int C = a->in_c, H = a->in_h, W = a->in_w, nconv = 0;
    jem_conv_shape shapes[3 * JEM_MAX_BLOCKS + 1];
    char names[3 * JEM_MAX_BLOCKS + 1][16];
    shapes[nconv] = (jem_conv_shape){BATCH, C, H, W, a->stem, 3, 3, 1, 1};
    snprintf(names[nconv++], 16, "stem");
    C = a->stem;
    for (int i = 0; i < a->n_blocks; i++) {
        int OC = a->width[i], st = a->stride[i];
        shapes[nconv] = (jem_conv_shape){BATCH, C, H, W, OC, 3, 3, 1, 1};
        snprintf(names[nconv++], 16, "b%d.c1", i + 1);
        shapes[nconv] = (jem_conv_shape){BATCH, OC, H, W, OC, 3, 3, st, 1};
        snprintf(names[nconv++], 16, "b%d.c2", i + 1);
        if (st != 1 || C != OC) {
            shapes[nconv] = (jem_conv_shape){BATCH, C, H, W, OC, 1, 1, st, 0};
            snprintf(names[nconv++], 16, "b%d.sc", i + 1);
        }
        C = OC;
        H = (H - 1) / st + 1;
        W = (W - 1) / st + 1;
    }
    double *t = malloc(sizeof(double) * reps);
    if (!t) return jem_fail(JEM_ERR_NOMEM, "bench: out of memory");
    jem_status s = JEM_OK;
    for (int l = 0; l < nconv && l < max && !s; l++) {
        jem_conv_shape *sh = &shapes[l];
        int OH = jem_conv_out(sh->H, sh->KH, sh->stride, sh->pad),
            OW = jem_conv_out(sh->W, sh->KW, sh->stride, sh->pad);
        size_t nin = (size_t)sh->B * sh->IC * sh->H * sh->W, nout = (size_t)sh->B * sh->OC * OH * OW;
        size_t nw = (size_t)sh->OC * sh->IC * sh->KH * sh->KW;
        float *in = malloc(sizeof(float) * nin), *o = malloc(sizeof(float) * nout), *wt = malloc(sizeof(float) * nw);
        float *din = malloc(sizeof(float) * nin), *dw = malloc(sizeof(float) * nw),
              *bias = calloc(sh->OC, sizeof(float));
        float *ws = malloc(sizeof(float) * jem_conv2d_ws(sh) * omp_get_max_threads());
        if (!in || !o || !wt || !din || !dw || !bias || !ws) {
            s = jem_fail(JEM_ERR_NOMEM, "bench: out of memory for layer %s", names[l]);
        } else {
            fill(in, nin, rng);
            fill(wt, nw, rng);
            fill(o, nout, rng);
            double lf = 2.0 * sh->B * (double)sh->OC * OH * OW * sh->IC * sh->KH * sh->KW;
            jem_conv_time *r = &out[(*n)++];
            memset(r, 0, sizeof *r);
            for (int k = 0; k < 3; k++) {
                for (int rep = -1; rep < reps; rep++) {
                    double t0 = now_s();
                    if (k == 0) jem_conv2d_forward(o, in, wt, bias, sh, NULL, ws);
                    else if (k == 1) jem_conv2d_backward(din, NULL, NULL, o, in, wt, sh, NULL, ws);
                    else jem_conv2d_backward(NULL, dw, NULL, o, in, wt, sh, NULL, ws);
                    if (rep >= 0) t[rep] = now_s() - t0;
                }
                r->gflops[k] = lf / median(t, reps) / 1e9;
                /* the planner's choice for the pass, as measured: a plain store */
                const jem_conv_plan p = jem_conv_plan_layer(sh, (jem_conv_pass)k, 0, 0, jem_conv_settings_get());
                r->kernel[k] = jem_kernel_name(p.kernel);
                r->tile[k] = p.tile;
            }
            memcpy(r->name, names[l], sizeof r->name);
            snprintf(r->shape, sizeof r->shape, "%dx%dx%d->%d k%d s%d", sh->IC, sh->H, sh->W, sh->OC, sh->KH,
                     sh->stride);
            r->mflop = lf / 1e6;
        }
        free(in);
        free(o);
        free(wt);
        free(din);
        free(dw);
        free(bias);
        free(ws);
    }
    free(t);
    return s;
}

/* each block fused per image (block.c), as the network runs it, batch 64:
 * forward (the two 3x3 convolutions and the shortcut), input gradient, and
 * input and weight gradients (those of the shortcut included); effective
 * GFLOP/s of the two 3x3 convolutions (the forward pass counts the
 * shortcut's FLOPs too, the last column those of both gradients). The
 * transformed weights are cached between repetitions, as between SGLD
 * steps. Every block's plan is listed, fused or not. */
jem_status jem_bench_blocks(const jem_arch *a, int reps, jem_precision prec, jem_rng *rng, jem_conv_time *out, int max,
                            int *n)
{
    *n = 0;
    if (reps < 1) return jem_fail(JEM_ERR_ARG, "bench: reps %d", reps);
    double *t = malloc(sizeof(double) * reps);
    if (!t) return jem_fail(JEM_ERR_NOMEM, "bench: out of memory");
    int C = a->stem, H = a->in_h, W = a->in_w;
    /* the planner's choice for each block: between two fused blocks the
     * activations stay channels innermost */
    jem_block_plan bp[JEM_MAX_BLOCKS];
    int fus[JEM_MAX_BLOCKS + 1] = {0};
    for (int i = 0; i < a->n_blocks; i++) {
        const int OC = a->width[i], st = a->stride[i];
        const jem_conv_shape s1 = {BATCH, C, H, W, OC, 3, 3, 1, 1}, s2 = {BATCH, OC, H, W, OC, 3, 3, st, 1};
        const jem_conv_shape ssc = {BATCH, C, H, W, OC, 1, 1, st, 0};
        bp[i] =
            jem_conv_plan_block(&s1, &s2, st != 1 || C != OC ? &ssc : NULL, a->act, a->slope, jem_conv_settings_get());
        fus[i] = bp[i].fused;
        C = OC;
        H = (H - 1) / st + 1;
        W = (W - 1) / st + 1;
    }
    C = a->stem;
    H = a->in_h;
    W = a->in_w;
    jem_status s = JEM_OK;
    for (int i = 0; i < a->n_blocks && *n < max && !s; i++) {
        const int OC = a->width[i], st = a->stride[i], OH = (H - 1) / st + 1, OW = (W - 1) / st + 1;
        jem_block_desc d;
        memset(&d, 0, sizeof d);
        d.s1 = (jem_conv_shape){BATCH, C, H, W, OC, 3, 3, 1, 1};
        d.s2 = (jem_conv_shape){BATCH, OC, H, W, OC, 3, 3, st, 1};
        d.plan = &bp[i];
        d.in_hwc = i > 0 && fus[i - 1];
        d.out_hwc = fus[i + 1];
        if (!fus[i]) {
            /* layer by layer: the layers' rows time its convolutions */
            jem_conv_time *r = &out[(*n)++];
            memset(r, 0, sizeof *r);
            snprintf(r->name, sizeof r->name, "b%d", i + 1);
            snprintf(r->shape, sizeof r->shape, "%dx%dx%d->%d s%d", C, H, W, OC, st);
        } else {
            const size_t nin = (size_t)BATCH * C * H * W, nmid = (size_t)BATCH * OC * H * W;
            const size_t nout = (size_t)BATCH * OC * OH * OW;
            const int sc = st != 1 || C != OC;
            const size_t nw1 = (size_t)OC * C * 9, nw2 = (size_t)OC * OC * 9, nsc = sc ? (size_t)OC * C + OC : 0;
            float *a1 = malloc(sizeof(float) * nin), *da1 = malloc(sizeof(float) * nin);
            float *h1 = malloc(sizeof(float) * nmid), *o = malloc(sizeof(float) * nout);
            float *dout = malloc(sizeof(float) * nout), *act = malloc(sizeof(float) * nout);
            float *w = malloc(sizeof(float) * (2 * (nw1 + nw2 + 2 * OC) + nsc));
            float *ws = malloc(sizeof(float) * jem_block_ws(d.plan, &d.s1, &d.s2) * omp_get_max_threads());
            jem_wcache *wc[5] = {NULL, NULL, NULL, NULL, NULL}, *wcb[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
            if (!a1 || !da1 || !h1 || !o || !dout || !act || !w || !ws) {
                s = jem_fail(JEM_ERR_NOMEM, "bench: out of memory for block %d", i + 1);
            } else {
                fill(a1, nin, rng);
                fill(dout, nout, rng);
                fill(w, 2 * (nw1 + nw2 + 2 * OC) + nsc, rng);
                memset(o, 0, sizeof(float) * nout);
                float *g = w + nw1 + nw2 + 2 * OC;
                d.w1 = w;
                d.b1 = w + nw1;
                d.w2 = w + nw1 + OC;
                d.b2 = w + nw1 + OC + nw2;
                d.wc1f = &wc[0];
                d.wc2f = &wc[1];
                d.wc1b = &wc[2];
                d.wc2b = &wc[3];
                d.wcsc = &wc[4];
                d.bf16 = prec == JEM_PRECISION_BF16 && jem_conv_settings_get()->bf16;
                d.wcb = wcb;
                if (sc) {
                    d.wsc = w + 2 * (nw1 + nw2 + 2 * OC);
                    d.bsc = d.wsc + (size_t)OC * C;
                }
                /* the forward pass includes the shortcut; the gradients do not */
                const double lc = 2.0 * BATCH * ((double)OC * H * W * C * 9 + (double)OC * OH * OW * OC * 9);
                const double lf = lc + (sc ? 2.0 * BATCH * OC * OH * OW * C : 0.0);
                double gf[3];
                int ok = 1;
                for (int k = 0; k < 3 && ok; k++) {
                    for (int rep = -1; rep < reps && ok; rep++) {
                        double t0 = now_s();
                        if (k == 0) {
                            ok = !jem_block_forward(h1, o, d.out_hwc ? NULL : act, a1, &d, ws);
                        } else if (k == 1) {
                            ok = !jem_block_backward(da1, NULL, NULL, NULL, NULL, NULL, NULL, dout, a1, h1, &d, ws);
                        } else {
                            float *gsc = sc ? g + 2 * (nw1 + OC) : NULL;
                            ok = !jem_block_backward(da1, g, g + nw1, g + nw1 + OC, g + nw1 + OC + nw2, gsc,
                                                     sc ? gsc + (size_t)OC * C : NULL, dout, a1, h1, &d, ws);
                        }
                        if (rep >= 0) t[rep] = now_s() - t0;
                    }
                    gf[k] = (k == 0 ? lf : k == 1 ? lc : 2 * lc) / median(t, reps) / 1e9; /* k 2: both gradients */
                }
                if (!ok) {
                    s = jem_fail(JEM_ERR_NOMEM, "bench: out of memory for block %d", i + 1);
                } else {
                    jem_conv_time *r = &out[(*n)++];
                    memset(r, 0, sizeof *r);
                    snprintf(r->name, sizeof r->name, "b%d", i + 1);
                    snprintf(r->shape, sizeof r->shape, "%dx%dx%d->%d s%d", C, H, W, OC, st);
                    for (int k = 0; k < 3; k++) r->gflops[k] = gf[k];
                    r->mflop = lf / 1e6;
                    r->fused = 1;
                    const jem_conv_plan pk[3] = {bp[i].c1, bp[i].c2, bp[i].sc};
                    for (int k = 0; k < 3; k++) {
                        r->kernel[k] = jem_kernel_name(pk[k].kernel);
                        r->tile[k] = pk[k].tile;
                    }
                    if (!sc) r->kernel[2] = "identity";
                }
            }
            for (int k = 0; k < 5; k++) jem_wcache_free(wc[k]);
            for (int k = 0; k < 6; k++) jem_wcache_free(wcb[k]);
            free(a1);
            free(da1);
            free(h1);
            free(o);
            free(dout);
            free(act);
            free(w);
            free(ws);
        }
        C = OC;
        H = OH;
        W = OW;
    }
    free(t);
    return s;
}
