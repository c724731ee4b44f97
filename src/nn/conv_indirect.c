/*
 * Strided 3x3 pad-1 convolutions with AVX-512 by indirect convolution
 * (Dukhan 2019): with channels innermost, an output pixel is the product of
 * nine contiguous input-channel vectors with nine (IC x OC) weight matrices,
 * so a register-blocked kernel (6 pixels x up to 4 vectors of 16 output
 * channels, 24 accumulators) reads the input through a pointer per pixel
 * instead of an im2col copy. Loops run tap by tap over all pixels so that
 * one (IC x 64) weight slice stays in L1. The input gradient runs the same kernel over
 * the output gradient and adds each of the nine (pixel x IC) products into
 * its shifted place of a padded input-gradient image. The weight gradient
 * of a tap is the product of the (pixel x IC) input read through the same
 * pointers with the (pixel x OC) output gradient, summed over pixels and
 * images into a per-thread buffer.
 *
 * One image per thread; the image is transposed to a zero-padded (H, W, IC)
 * buffer and the result back to NCHW (nn/hwc.h). Needs input and output
 * channels that are multiples of 16 and a CPU with AVX-512F. The planner
 * (plan.c) gives it the strided layers and the weight gradients Winograd
 * does not take; the fused blocks (block.c) run its cores for their
 * strided convolutions and their 1x1 shortcuts.
 */
#include "nn/nn.h"
#include "nn/hwc.h"
#include "nn/kern.h"
#include "nn/plan.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#define R 6 /* output pixels per kernel call */

/* the shapes it takes: 3x3 pad 1, any stride, channels multiples of 16 */
static int fits(const jem_conv_shape *s)
{
    return s->KH == 3 && s->KW == 3 && s->pad == 1 && s->stride >= 1 && s->IC % 16 == 0 && s->OC % 16 == 0 &&
           s->IC > 0 && s->OC > 0;
}

/* per-thread workspace: a padded (H+2, W+2, IC) image, a second one for
 * the input gradient, the (P, OC) output or output gradient, this thread's
 * weight and bias gradients (9, IC, OC) + OC, and P pixel offsets. The
 * padded images have 16 floats of slack for the weight-gradient kernel's
 * reads past the last channel block. */
static size_t ws_parts(int IC, int OC, int H, int W, int P, size_t off[5])
{
    const size_t xp = jem_up16((size_t)(H + 2) * (W + 2) * IC + 16), y = jem_up16((size_t)P * OC);
    const size_t dw = jem_up16((size_t)9 * IC * OC + OC), po = jem_up16((size_t)P);
    if (off) {
        off[0] = 0;               /* Xp */
        off[1] = xp;              /* Dp */
        off[2] = 2 * xp;          /* Y / Yt */
        off[3] = 2 * xp + y;      /* dW, db */
        off[4] = 2 * xp + y + dw; /* pixel offsets (int) */
    }
    return 2 * xp + y + dw + po;
}

static size_t ind_ws(const jem_conv_shape *s)
{
    if (!fits(s)) return 0;
    const int OH = jem_conv_out(s->H, 3, s->stride, 1), OW = jem_conv_out(s->W, 3, s->stride, 1);
    return ws_parts(s->IC, s->OC, s->H, s->W, OH * OW, NULL);
}

#if HAVE_X86
/* c[r][16 v] (+)= sum_i a[r][i] * B[i * ldb + 16 v] for r < n, i < K */
#define DEFINE_KERNEL(NV)                                                                                             \
    __attribute__((target("avx512f"), noinline)) static void kern_##NV(const float *const *a, const float *B, int K,  \
                                                                       int ldb, float *const *c, int n, int add)      \
    {                                                                                                                 \
        __m512 acc[R][NV];                                                                                            \
        _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)      \
            acc[r][v] = _mm512_setzero_ps();                                                                          \
        const float *p0 = a[0], *p1 = a[1], *p2 = a[2], *p3 = a[3], *p4 = a[4], *p5 = a[5];                           \
        const float *bp = B;                                                                                          \
        for (int i = 0; i < K; i++) {                                                                                 \
            __m512 u[NV];                                                                                             \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) u[v] = _mm512_loadu_ps(bp + 16 * v);                 \
            /* one broadcast live at a time: 24 accumulators + 4 + 1 fit in 32 registers */                           \
            const float *pr[R] = {p0, p1, p2, p3, p4, p5};                                                            \
            _Pragma("GCC unroll 6") for (int r = 0; r < R; r++)                                                       \
            {                                                                                                         \
                const __m512 b = _mm512_set1_ps(pr[r][i]);                                                            \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(b, u[v], acc[r][v]); \
            }                                                                                                         \
            bp += ldb;                                                                                                \
        }                                                                                                             \
        _Pragma("GCC unroll 6") for (int r = 0; r < R; r++)                                                           \
        {                                                                                                             \
            if (r >= n) break;                                                                                        \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                                                      \
            {                                                                                                         \
                __m512 x = acc[r][v];                                                                                 \
                if (add) x = _mm512_add_ps(x, _mm512_loadu_ps(c[r] + 16 * v));                                        \
                _mm512_storeu_ps(c[r] + 16 * v, x);                                                                   \
            }                                                                                                         \
        }                                                                                                             \
    }
DEFINE_KERNEL(4)
DEFINE_KERNEL(2)
DEFINE_KERNEL(1)

/* the same with bf16 operands and fp32 sums (vdpbf16ps): a[r] K bf16
 * values, read as K / 2 pairs; B (K / 2, ldb, 2) bf16, pairs of rows
 * interleaved; K even */
#define DEFINE_KERNEL_BF16(NV)                                                                                         \
    __attribute__((target("avx512f,avx512bf16"), noinline)) static void kernb_##NV(                                    \
        const uint16_t *const *a, const uint16_t *B, int K, int ldb, float *const *c, int n, int add)                  \
    {                                                                                                                  \
        __m512 acc[R][NV];                                                                                             \
        _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)       \
            acc[r][v] = _mm512_setzero_ps();                                                                           \
        const uint16_t *bp = B;                                                                                        \
        for (int i = 0; i < K; i += 2) {                                                                               \
            __m512bh u[NV];                                                                                            \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) u[v] =                                                \
                (__m512bh)_mm512_loadu_si512((const void *)(bp + 32 * v));                                             \
            _Pragma("GCC unroll 6") for (int r = 0; r < R; r++)                                                        \
            {                                                                                                          \
                int32_t pair;                                                                                          \
                memcpy(&pair, a[r] + i, sizeof pair);                                                                  \
                const __m512bh b = (__m512bh)_mm512_set1_epi32(pair);                                                  \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], b, u[v]); \
            }                                                                                                          \
            bp += 2 * (size_t)ldb;                                                                                     \
        }                                                                                                              \
        _Pragma("GCC unroll 6") for (int r = 0; r < R; r++)                                                            \
        {                                                                                                              \
            if (r >= n) break;                                                                                         \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                                                       \
            {                                                                                                          \
                __m512 x = acc[r][v];                                                                                  \
                if (add) x = _mm512_add_ps(x, _mm512_loadu_ps(c[r] + 16 * v));                                         \
                _mm512_storeu_ps(c[r] + 16 * v, x);                                                                    \
            }                                                                                                          \
        }                                                                                                              \
    }
DEFINE_KERNEL_BF16(4)
DEFINE_KERNEL_BF16(2)
DEFINE_KERNEL_BF16(1)

__attribute__((target("avx512f,avx512bf16"))) void jem_to_bf16(uint16_t *d, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i += 16) {
        const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
        _mm256_storeu_si256((__m256i *)(d + i), (__m256i)h);
    }
}

void jem_ind_offsets(int *poff, int P, int OW, int Wp, int st, int IC)
{
    for (int p = 0; p < P; p++) poff[p] = (st * (p / OW) * Wp + st * (p % OW)) * IC;
}

static int vectors(int C) { return C % 64 == 0 ? 4 : C % 32 == 0 ? 2 : 1; }

/* row p of Y (N floats at Y + yoff[p], or Y + p N) = (add: +=) row p of X
 * (K floats at X + xoff[p], or X + p K) times Wt (K, N), for p < P: one
 * weight slice (K x 16 nv) at a time stays in L1 while every block of R
 * pixels passes. Wtb not NULL: in bf16, the rows of Xb (K bf16 values at
 * the same offsets) against Wtb (K / 2, N, 2); X and Wt are not read */
__attribute__((target("avx512f"))) static void rows(float *Y, const int *yoff, const float *X, const uint16_t *Xb,
                                                    const int *xoff, const float *Wt, const uint16_t *Wtb, int K, int N,
                                                    int P, int add)
{
    const int nv = vectors(N);
    for (int o0 = 0; o0 < N; o0 += 16 * nv)
        for (int p0 = 0; p0 < P; p0 += R) {
            const int n = P - p0 < R ? P - p0 : R;
            const float *a[R];
            const uint16_t *ab[R];
            float *c[R];
            for (int r = 0; r < R; r++) {
                const int p = p0 + (r < n ? r : n - 1);
                const size_t at = xoff ? (size_t)xoff[p] : (size_t)p * K;
                a[r] = Wtb ? NULL : X + at;
                ab[r] = Wtb ? Xb + at : NULL;
                c[r] = Y + (yoff ? (size_t)yoff[p] : (size_t)p * N) + o0;
            }
            if (Wtb) {
                const uint16_t *B = Wtb + (size_t)2 * o0;
                if (nv == 4) kernb_4(ab, B, K, N, c, n, add);
                else if (nv == 2) kernb_2(ab, B, K, N, c, n, add);
                else kernb_1(ab, B, K, N, c, n, add);
            } else {
                if (nv == 4) kern_4(a, Wt + o0, K, N, c, n, add);
                else if (nv == 2) kern_2(a, Wt + o0, K, N, c, n, add);
                else kern_1(a, Wt + o0, K, N, c, n, add);
            }
        }
}

void jem_ind_core_bf16(float *Y, const uint16_t *Xpb, const uint16_t *Wkb, const int *poff, int IC, int OC, int P,
                       int Wp)
{
    for (int k = 0; k < 9; k++)
        rows(Y, NULL, NULL, Xpb + ((size_t)(k / 3) * Wp + k % 3) * IC, poff, NULL, Wkb + (size_t)k * IC * OC, IC, OC, P,
             k > 0);
}

void jem_ind_bwd_core_bf16(float *Dp, const uint16_t *Ytb, const uint16_t *Wbb, const int *poff, int IC, int OC, int P,
                           int H, int Wp)
{
    memset(Dp, 0, sizeof(float) * (size_t)(H + 2) * Wp * IC);
    for (int k = 0; k < 9; k++)
        rows(Dp + ((size_t)(k / 3) * Wp + k % 3) * IC, poff, NULL, Ytb, NULL, NULL, Wbb + (size_t)k * OC * IC, OC, IC,
             P, 1);
}

void jem_ind_pointwise_bf16(float *Y, const int *yoff, const uint16_t *Xb, const int *xoff, const uint16_t *Wtb, int K,
                            int N, int P)
{
    rows(Y, yoff, NULL, Xb, xoff, NULL, Wtb, K, N, P, 1);
}

/* the nine taps, each a pass of rows() over the shifted window starts, the
 * first setting Y and the others adding */
__attribute__((target("avx512f"))) void jem_ind_core(float *Y, const float *Xp, const float *Wk, const int *poff,
                                                     int IC, int OC, int P, int Wp)
{
    for (int k = 0; k < 9; k++)
        rows(Y, NULL, Xp + ((size_t)(k / 3) * Wp + k % 3) * IC, NULL, poff, Wk + (size_t)k * IC * OC, NULL, IC, OC, P,
             k > 0);
}

/* each tap's product added into its shifted place */
__attribute__((target("avx512f"))) void jem_ind_bwd_core(float *Dp, const float *Yt, const float *Wb, const int *poff,
                                                         int IC, int OC, int P, int H, int Wp)
{
    memset(Dp, 0, sizeof(float) * (size_t)(H + 2) * Wp * IC);
    for (int k = 0; k < 9; k++)
        rows(Dp + ((size_t)(k / 3) * Wp + k % 3) * IC, poff, Yt, NULL, NULL, Wb + (size_t)k * OC * IC, NULL, OC, IC, P,
             1);
}

__attribute__((target("avx512f"))) void jem_ind_wgrad_core(float *dW, const float *Xp, const float *Yt, const int *poff,
                                                           int IC, int OC, int P, int Wp)
{
    for (int k = 0; k < 9; k++)
        jem_wgemm(Xp + ((size_t)(k / 3) * Wp + k % 3) * IC, poff, P, Yt, dW + (size_t)k * IC * OC, IC, OC);
    jem_hwc_add_colsum(dW + (size_t)9 * IC * OC, Yt, (size_t)P, OC);
}

__attribute__((target("avx512f"))) void jem_ind_pointwise(float *Y, const int *yoff, const float *X, const int *xoff,
                                                          const float *Wt, int K, int N, int P)
{
    rows(Y, yoff, X, NULL, xoff, Wt, NULL, K, N, P, 1);
}

/* one image: x (IC, H, W) -> out (OC, OH, OW) + bias, stored as st says;
 * Wk (9, IC, OC) */
__attribute__((target("avx512f"))) static void fwd_img(float *out, const float *x, const float *Wk, const float *bias,
                                                       const jem_conv_shape *s, const jem_conv_store *sto, float *ws)
{
    const int IC = s->IC, OC = s->OC, H = s->H, W = s->W, st = s->stride, Wp = W + 2;
    const int OH = jem_conv_out(H, 3, st, 1), OW = jem_conv_out(W, 3, st, 1), P = OH * OW;
    size_t off[5];
    ws_parts(IC, OC, H, W, P, off);
    float *Xp = ws + off[0], *Y = ws + off[2];
    int *poff = (int *)(ws + off[4]);
    jem_hwc_pack_padded(Xp, x, IC, H, W, H + 2, Wp);
    jem_ind_offsets(poff, P, OW, Wp, st, IC);
    jem_ind_core(Y, Xp, Wk, poff, IC, OC, P, Wp);
    jem_hwc_unpack(out, Y, OC, OH, OW, 0, OW, bias, sto);
}

/* one image: dinp (IC, H, W) gets the input gradient of dout (OC, OH, OW)
 * with Wb (9, OC, IC), stored as st says (when dinp is not NULL); this
 * thread's dW (9, IC, OC) and db (OC) += the weight and bias gradients from
 * x (IC, H, W) (when want_w). sto: the store (st is the stride) */
__attribute__((target("avx512f"))) static void bwd_img(float *dinp, int want_w, const float *dout, const float *x,
                                                       const float *Wb, const jem_conv_shape *s,
                                                       const jem_conv_store *sto, float *ws)
{
    const int IC = s->IC, OC = s->OC, H = s->H, W = s->W, st = s->stride, Wp = W + 2;
    const int OH = jem_conv_out(H, 3, st, 1), OW = jem_conv_out(W, 3, st, 1), P = OH * OW;
    size_t off[5];
    ws_parts(IC, OC, H, W, P, off);
    float *Xp = ws + off[0], *Dp = ws + off[1], *Yt = ws + off[2], *dW = ws + off[3];
    int *poff = (int *)(ws + off[4]);
    jem_hwc_pack(Yt, dout, OC, OH, OW);
    jem_ind_offsets(poff, P, OW, Wp, st, IC);
    if (dinp) {
        jem_ind_bwd_core(Dp, Yt, Wb, poff, IC, OC, P, H, Wp);
        jem_hwc_unpack(dinp, Dp, IC, H, W, 1, Wp, NULL, sto);
    }
    if (want_w) {
        jem_hwc_pack_padded(Xp, x, IC, H, W, H + 2, Wp);
        memset(Xp + (size_t)(H + 2) * Wp * IC, 0, sizeof(float) * 16); /* the slack */
        jem_ind_wgrad_core(dW, Xp, Yt, poff, IC, OC, P, Wp);
    }
}
#endif

const float *jem_ind_weights(jem_wcache **slot, const float *w, int IC, int OC, int back)
{
    const size_t nw = (size_t)9 * IC * OC;
    int fresh = 1;
    float *Wk = jem_wcache_get(slot, w, nw, jem_wcache_tag(1 + back, 0, IC, OC), nw, &fresh);
    if (Wk && fresh) {
        /* (9, IC, OC) or (9, OC, IC) from w (OC, IC, 3, 3) */
#pragma omp parallel for schedule(static)
        for (int oc = 0; oc < OC; oc++)
            for (int ic = 0; ic < IC; ic++)
                for (int k = 0; k < 9; k++)
                    Wk[back ? ((size_t)k * OC + oc) * IC + ic : ((size_t)k * IC + ic) * OC + oc] =
                        w[((size_t)oc * IC + ic) * 9 + k];
    }
    return Wk;
}

const float *jem_pw_weights(jem_wcache **slot, const float *w, int IC, int OC)
{
    const size_t nw = (size_t)IC * OC;
    int fresh = 1;
    float *Wt = jem_wcache_get(slot, w, nw, jem_wcache_tag(3, 0, IC, OC), nw, &fresh);
    if (Wt && fresh)
        for (int oc = 0; oc < OC; oc++)
            for (int ic = 0; ic < IC; ic++) Wt[(size_t)ic * OC + oc] = w[(size_t)oc * IC + ic];
    return Wt;
}

const uint16_t *jem_ind_weights_bf16(jem_wcache **slot, const float *w, int IC, int OC, int back)
{
    const size_t nw = (size_t)9 * IC * OC;
    int fresh = 1;
    float *f = jem_wcache_get(slot, w, nw, jem_wcache_tag(24 + back, 0, IC, OC), nw / 2, &fresh);
    uint16_t *Wk = (uint16_t *)f;
    if (Wk && fresh) {
        /* (9, IC / 2, OC, 2) or (9, OC / 2, IC, 2) from w (OC, IC, 3, 3) */
#pragma omp parallel for schedule(static)
        for (int oc = 0; oc < OC; oc++)
            for (int ic = 0; ic < IC; ic++)
                for (int k = 0; k < 9; k++)
                    Wk[back ? (((size_t)k * (OC / 2) + oc / 2) * IC + ic) * 2 + (oc & 1)
                            : (((size_t)k * (IC / 2) + ic / 2) * OC + oc) * 2 + (ic & 1)] =
                        jem_bf16(w[((size_t)oc * IC + ic) * 9 + k]);
    }
    return Wk;
}

const uint16_t *jem_pw_weights_bf16(jem_wcache **slot, const float *w, int IC, int OC, int back)
{
    const size_t nw = (size_t)IC * OC;
    int fresh = 1;
    uint16_t *Wt = (uint16_t *)jem_wcache_get(slot, w, nw, jem_wcache_tag(26 + back, 0, IC, OC), nw / 2, &fresh);
    if (Wt && fresh)
        for (int oc = 0; oc < OC; oc++)
            for (int ic = 0; ic < IC; ic++)
                Wt[back ? ((size_t)(oc / 2) * IC + ic) * 2 + (oc & 1) : ((size_t)(ic / 2) * OC + oc) * 2 + (ic & 1)] =
                    jem_bf16(w[(size_t)oc * IC + ic]);
    return Wt;
}

/* sum the threads' gradients in a fixed order (deterministic for a given
 * thread count), (nk, IC, OC) -> (OC, IC, nk) */
void jem_ind_reduce(float *dw, float *db, const float *dW0, size_t stride, int nth, int IC, int OC, int nk)
{
#pragma omp for schedule(static)
    for (int oc = 0; oc < OC; oc++) {
        for (int t = 0; t < nth; t++) {
            const float *g = dW0 + (size_t)t * stride;
            if (dw)
                for (int ic = 0; ic < IC; ic++)
                    for (int k = 0; k < nk; k++)
                        dw[((size_t)oc * IC + ic) * nk + k] += g[((size_t)k * IC + ic) * OC + oc];
            if (db) db[oc] += g[(size_t)nk * IC * OC + oc];
        }
    }
}

static int run_fwd(float *out, const float *in, const float *w, const float *bias, const jem_conv_shape *s,
                   const jem_conv_store *st, float *ws)
{
#if HAVE_X86
    const int IC = s->IC, OC = s->OC;
    jem_wcache *own = NULL;
    const float *Wk = jem_ind_weights(st->wcache ? st->wcache : &own, w, IC, OC, 0);
    if (!Wk) {
        jem_wcache_free(own);
        return -1;
    }
    const int OH = jem_conv_out(s->H, 3, s->stride, 1), OW = jem_conv_out(s->W, 3, s->stride, 1);
    const size_t isz = (size_t)IC * s->H * s->W, osz = (size_t)OC * OH * OW, per = ind_ws(s);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < s->B; b++) {
        const jem_conv_store sb = jem_store_image(st, b, osz);
        fwd_img(out + b * osz, in + b * isz, Wk, bias, s, &sb, ws + (size_t)omp_get_thread_num() * per);
    }
    jem_wcache_free(own);
    return 0;
#else
    (void)out;
    (void)in;
    (void)w;
    (void)bias;
    (void)s;
    (void)st;
    (void)ws;
    return -1;
#endif
}

static int ind_forward(float *out, const float *inp, const float *w, const float *bias, const jem_conv_shape *s,
                       const jem_conv_store *st, int tile, float *ws)
{
    (void)tile;
    if (!jem_conv_settings_get()->avx512 || !fits(s)) return -1;
    return run_fwd(out, inp, w, bias, s, st, ws);
}

static int ind_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                        const jem_conv_shape *s, const jem_conv_store *st, int tile, float *ws)
{
    (void)tile;
    if (!jem_conv_settings_get()->avx512 || !fits(s)) return -1;
#if HAVE_X86
    const int IC = s->IC, OC = s->OC;
    const int want_w = dw != NULL || db != NULL;
    if (!dinp && !want_w) return 0;
    const float *Wb = NULL;
    jem_wcache *own = NULL;
    if (dinp) {
        Wb = jem_ind_weights(st->wcache ? st->wcache : &own, w, IC, OC, 1);
        if (!Wb) {
            jem_wcache_free(own);
            return -1;
        }
    }
    const int OH = jem_conv_out(s->H, 3, s->stride, 1), OW = jem_conv_out(s->W, 3, s->stride, 1);
    const size_t isz = (size_t)IC * s->H * s->W, osz = (size_t)OC * OH * OW, per = ind_ws(s);
    size_t off[5];
    ws_parts(IC, OC, s->H, s->W, OH * OW, off);
    const size_t ndw = (size_t)9 * IC * OC + OC;
    int nth = 1;
#pragma omp parallel
    {
#pragma omp single
        nth = omp_get_num_threads();
        float *tws = ws + (size_t)omp_get_thread_num() * per;
        if (want_w) memset(tws + off[3], 0, sizeof(float) * ndw);
#pragma omp for schedule(static)
        for (int b = 0; b < s->B; b++) {
            const jem_conv_store sb = jem_store_image(st, b, isz);
            bwd_img(dinp ? dinp + b * isz : NULL, want_w, dout + b * osz, inp + b * isz, Wb, s, &sb, tws);
        }
        if (want_w) jem_ind_reduce(dw, db, ws + off[3], per, nth, IC, OC, 9);
    }
    jem_wcache_free(own);
    return 0;
#else
    (void)dinp;
    (void)dw;
    (void)db;
    (void)dout;
    (void)inp;
    (void)w;
    (void)s;
    (void)st;
    (void)ws;
    return -1;
#endif
}

const jem_kernel_ops jem_kernel_indirect = {ind_forward, ind_backward, ind_ws};
