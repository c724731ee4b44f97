/*
 * Winograd convolution for 3x3 stride-1 pad-1 layers with AVX-512, F(4x4,
 * 3x3) and F(2x2, 3x3), for the forward pass, the input gradient (a
 * forward convolution of the output gradient with transposed, flipped
 * weights) and the weight gradient; the planner (plan.c) picks the tile.
 *
 * Each m x m output tile comes from an (m + 2)^2 input tile: V = B^T d B
 * per input channel, M = sum_ic U[ic] * V[ic] elementwise with U = G g G^T,
 * and Y = A^T M A. The (m + 2)^2 elementwise products become as many small
 * matrix products (tiles x IC) . (IC x OC): 16 multiplies per 4 outputs for
 * F(2x2) (2.25x fewer than direct convolution), 36 per 16 for F(4x4) (4x
 * fewer), at the price of larger transforms and more rounding: F(4x4)'s
 * matrices hold 1/24 and 8, and on test_kernels' shapes its relative L2
 * error against the direct sum is at most 2.2e-6 (F(2x2): 7e-7).
 *
 * Layout: channels innermost. One image at a time per thread: the image is
 * transposed into a zero-padded (H, W, C) buffer so that 16 channels of one
 * pixel are one zmm; tiles go in blocks of TB; the products run as a
 * register-blocked kernel (R tiles x NV vectors of 16 output channels, the
 * tiles' values broadcast against the transformed weights); the output
 * transform writes an (H, W, OC) buffer that is transposed back to NCHW with
 * the bias added (forward) or added to the gradient (backward). Everything
 * one thread touches for an image stays in its 1 MiB L2.
 *
 * Needs input and output channels that are multiples of 16 and a CPU with
 * AVX-512F.
 */
#include "nn/nn.h"
#include "nn/hwc.h"
#include "nn/kern.h"
#include "nn/plan.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#define TB 24 /* most tiles per block (a multiple of every kernel's R) */

/* the shapes it takes: 3x3 stride 1 pad 1, channels multiples of 16 */
static int fits(const jem_conv_shape *s)
{
    return s->KH == 3 && s->KW == 3 && s->stride == 1 && s->pad == 1 && s->IC % 16 == 0 && s->OC % 16 == 0 &&
           s->IC > 0 && s->OC > 0;
}

/* per-thread workspace, in floats, for a convolution IC -> OC on H x W
 * with m x m output tiles (m = 2 or 4): the padded input, the V and M
 * blocks of (m + 2)^2 planes, the (H, W, OC) output */
static size_t ws_floats(int IC, int OC, int H, int W, int m)
{
    const int TH = (H + m - 1) / m, TW = (W + m - 1) / m, a = (m + 2) * (m + 2);
    size_t xp = jem_up16((size_t)(m * TH + 2) * (m * TW + 2) * IC);
    size_t v = jem_up16((size_t)a * TB * IC);
    size_t mm = jem_up16((size_t)a * TB * OC);
    size_t y = jem_up16((size_t)H * W * OC);
    return xp + v + mm + y;
}

/* the weight gradient with m x m tiles: padded input, (H, W, OC) output
 * gradient, V and dM blocks ((m + 2)^2 planes; V with 16 floats of slack
 * for reads past the last channel block), this thread's dU ((m + 2)^2, IC,
 * OC) and bias gradient (OC) */
static size_t wgrad_parts(int IC, int OC, int H, int W, int m, size_t off[5])
{
    const int TH = (H + m - 1) / m, TW = (W + m - 1) / m, a = (m + 2) * (m + 2);
    size_t xp = jem_up16((size_t)(m * TH + 2) * (m * TW + 2) * IC);
    size_t y = jem_up16((size_t)H * W * OC);
    size_t v = jem_up16((size_t)a * TB * IC + 16);
    size_t mm = jem_up16((size_t)a * TB * OC);
    size_t du = jem_up16((size_t)a * IC * OC + OC);
    if (off) {
        off[0] = 0;
        off[1] = xp;
        off[2] = xp + y;
        off[3] = xp + y + v;
        off[4] = xp + y + v + mm;
    }
    return xp + y + v + mm + du;
}

static size_t wino_ws(const jem_conv_shape *s)
{
    if (!fits(s)) return 0;
    /* the input gradient runs the same code with the channels swapped */
    size_t f = 0;
    for (int m = 2; m <= 4; m += 2) {
        size_t a = ws_floats(s->IC, s->OC, s->H, s->W, m), b = ws_floats(s->OC, s->IC, s->H, s->W, m);
        if (a > f) f = a;
        if (b > f) f = b;
    }
    for (int m = 2; m <= 4; m += 2) {
        size_t w = wgrad_parts(s->IC, s->OC, s->H, s->W, m, NULL);
        if (w > f) f = w;
    }
    return f;
}

/* g: the 3x3 kernel from input channel ic to output channel oc of the
 * convolution IC -> OC being run: w[oc][ic] of the stored weights (OC, IC,
 * 3, 3) (flip = 0) or, for the input gradient of a layer OC -> IC stored
 * (IC, OC, 3, 3), the transposed, flipped w[ic][oc][8 - k] (flip = 1) */
static void kernel_of(float g[9], const float *w, int IC, int OC, int ic, int oc, int flip)
{
    if (!flip) {
        memcpy(g, w + ((size_t)oc * IC + ic) * 9, sizeof(float) * 9);
    } else {
        const float *src = w + ((size_t)ic * OC + oc) * 9;
        for (int k = 0; k < 9; k++) g[k] = src[8 - k];
    }
}

/* G applied to a kernel column (g0, g1, g2): F(2x2, 3x3) with G = [1 0 0;
 * 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1] (4 values), F(4x4, 3x3) with G = [1/4
 * 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 * (6 values; points 0, 1, -1, 2, -2 and infinity) */
static void gcol(float *u, float g0, float g1, float g2, int m)
{
    if (m == 2) {
        u[0] = g0;
        u[1] = 0.5f * (g0 + g1 + g2);
        u[2] = 0.5f * (g0 - g1 + g2);
        u[3] = g2;
        return;
    }
    u[0] = 0.25f * g0;
    u[1] = -(g0 + g1 + g2) / 6.0f;
    u[2] = -(g0 - g1 + g2) / 6.0f;
    u[3] = g0 / 24.0f + g1 / 12.0f + g2 / 6.0f;
    u[4] = g0 / 24.0f - g1 / 12.0f + g2 / 6.0f;
    u[5] = g2;
}

/* U[e][ic][oc] = (G g G^T)[e], e < (m + 2)^2, shared out between the
 * threads of the enclosing parallel region; or, when Ub is not NULL
 * (U is then not used), the same values rounded to bf16 in pairs of input
 * channels, Ub[e][ic / 2][oc][ic % 2], as vdpbf16ps reads them */
static void transform_weights(float *U, uint16_t *Ub, const float *w, int IC, int OC, int flip, int m)
{
    const int n = m + 2;
#pragma omp for schedule(static)
    for (int oc = 0; oc < OC; oc++)
        for (int ic = 0; ic < IC; ic++) {
            float g[9];
            kernel_of(g, w, IC, OC, ic, oc, flip);
            float t[3][6]; /* t[j] = G g[:, j] */
            for (int j = 0; j < 3; j++) gcol(t[j], g[0 * 3 + j], g[1 * 3 + j], g[2 * 3 + j], m);
            for (int i = 0; i < n; i++) {
                float u[6];
                gcol(u, t[0][i], t[1][i], t[2][i], m);
                for (int j = 0; j < n; j++) {
                    if (Ub) Ub[(((size_t)(i * n + j) * (IC / 2) + ic / 2) * OC + oc) * 2 + (ic & 1)] = jem_bf16(u[j]);
                    else U[((size_t)(i * n + j) * IC + ic) * OC + oc] = u[j];
                }
            }
        }
}

#if HAVE_X86
/* M[e][t][oc] = sum_ic V[e][t][ic] * U[e][ic][oc] for t in [0, nt), nt a
 * multiple of R, oc in [o0, o0 + 16 NV) */
#define DEFINE_GEMM(R, NV)                                                                                             \
    __attribute__((target("avx512f"), noinline)) static void gemm_##R##x##NV(float *M, const float *V, const float *U, \
                                                                             int nt, int IC, int OC, int o0)           \
    {                                                                                                                  \
        for (int t0 = 0; t0 < nt; t0 += R) {                                                                           \
            __m512 acc[R][NV];                                                                                         \
            _Pragma("GCC unroll 24") for (int r = 0; r < R; r++) _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)  \
                acc[r][v] = _mm512_setzero_ps();                                                                       \
            const float *vp = V + (size_t)t0 * IC;                                                                     \
            const float *up = U + o0;                                                                                  \
            for (int ic = 0; ic < IC; ic++) {                                                                          \
                __m512 u[NV];                                                                                          \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) u[v] = _mm512_loadu_ps(up + 16 * v);              \
                _Pragma("GCC unroll 24") for (int r = 0; r < R; r++)                                                   \
                {                                                                                                      \
                    __m512 b = _mm512_set1_ps(vp[(size_t)r * IC]);                                                     \
                    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] =                                   \
                        _mm512_fmadd_ps(b, u[v], acc[r][v]);                                                           \
                }                                                                                                      \
                vp++;                                                                                                  \
                up += OC;                                                                                              \
            }                                                                                                          \
            _Pragma("GCC unroll 24") for (int r = 0; r < R; r++) _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)  \
                _mm512_storeu_ps(M + (size_t)(t0 + r) * OC + o0 + 16 * v, acc[r][v]);                                  \
        }                                                                                                              \
    }
DEFINE_GEMM(6, 4)
DEFINE_GEMM(12, 2)
DEFINE_GEMM(24, 1)
DEFINE_GEMM(6, 2)
DEFINE_GEMM(6, 1)

/* The same products with bf16 operands and fp32 sums (vdpbf16ps): V's
 * values (Vb[t][ic], bf16) are broadcast as pairs of input channels
 * against Ub[ic / 2][oc][2], each instruction two multiply-adds per lane;
 * IC even */
#define DEFINE_GEMM_BF16(R, NV)                                                                                       \
    __attribute__((target("avx512f,avx512bf16"), noinline)) static void gemmb_##R##x##NV(                             \
        float *M, const uint16_t *Vb, const uint16_t *Ub, int nt, int IC, int OC, int o0)                             \
    {                                                                                                                 \
        for (int t0 = 0; t0 < nt; t0 += R) {                                                                          \
            __m512 acc[R][NV];                                                                                        \
            _Pragma("GCC unroll 24") for (int r = 0; r < R; r++) _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) \
                acc[r][v] = _mm512_setzero_ps();                                                                      \
            const uint16_t *vp = Vb + (size_t)t0 * IC;                                                                \
            const uint16_t *up = Ub + (size_t)2 * o0;                                                                 \
            for (int ic = 0; ic < IC; ic += 2) {                                                                      \
                __m512bh u[NV];                                                                                       \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) u[v] =                                           \
                    (__m512bh)_mm512_loadu_si512((const void *)(up + 32 * v));                                        \
                _Pragma("GCC unroll 24") for (int r = 0; r < R; r++)                                                  \
                {                                                                                                     \
                    int32_t pair;                                                                                     \
                    memcpy(&pair, vp + (size_t)r * IC, sizeof pair);                                                  \
                    const __m512bh b = (__m512bh)_mm512_set1_epi32(pair);                                             \
                    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] =                                  \
                        _mm512_dpbf16_ps(acc[r][v], b, u[v]);                                                         \
                }                                                                                                     \
                vp += 2;                                                                                              \
                up += 2 * (size_t)OC;                                                                                 \
            }                                                                                                         \
            _Pragma("GCC unroll 24") for (int r = 0; r < R; r++) _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) \
                _mm512_storeu_ps(M + (size_t)(t0 + r) * OC + o0 + 16 * v, acc[r][v]);                                 \
        }                                                                                                             \
    }
DEFINE_GEMM_BF16(6, 4)
DEFINE_GEMM_BF16(12, 2)
DEFINE_GEMM_BF16(24, 1)
DEFINE_GEMM_BF16(6, 2)
DEFINE_GEMM_BF16(6, 1)

/* the ne elementwise products of a block: M[e] = V[e] . U[e] for tiles
 * [0, nt), nt a multiple of 6; the widest kernel the output channels allow
 * (R = 6, 12 or 24 tiles) and 6-tile kernels for what is left. Ub not
 * NULL: in bf16, V's values (bf16, the same offsets) against Ub */
__attribute__((target("avx512f"))) static void products(float *M, const float *V, const float *U, const uint16_t *Ub,
                                                        int ne, int nt, int IC, int OC)
{
    const int NVO = OC % 64 == 0 ? 4 : OC % 32 == 0 ? 2 : 1;
    const int R = NVO == 4 ? 6 : NVO == 2 ? 12 : 24;
    const int nm = nt / R * R;
    const uint16_t *Vb = (const uint16_t *)V;
    for (int e = 0; e < ne; e++) {
        const size_t ve = (size_t)e * TB * IC, ue = (size_t)e * IC * OC;
        float *Me = M + (size_t)e * TB * OC;
        /* the kernel R x NV on n tiles from tile t0 */
#define GEMM(R_, NV, t0, n)                                                                          \
    (Ub ? gemmb_##R_##x##NV(Me + (size_t)(t0)*OC, Vb + ve + (size_t)(t0)*IC, Ub + ue, n, IC, OC, o0) \
        : gemm_##R_##x##NV(Me + (size_t)(t0)*OC, V + ve + (size_t)(t0)*IC, U + ue, n, IC, OC, o0))
        for (int o0 = 0; o0 < OC; o0 += 16 * NVO) {
            if (NVO == 4) GEMM(6, 4, 0, nt);
            else if (NVO == 2) {
                if (nm) GEMM(12, 2, 0, nm);
                if (nt > nm) GEMM(6, 2, nm, nt - nm);
            } else {
                if (nm) GEMM(24, 1, 0, nm);
                if (nt > nm) GEMM(6, 1, nm, nt - nm);
            }
        }
#undef GEMM
    }
}

/* V[e][t][ic] = (B^T d B)[e] of the 4x4 input tiles tb .. tb + nt - 1
 * (raster order, TW tiles per row) of the padded (Hp, Wp, IC) image Xp */
__attribute__((target("avx512f"))) static void input_transform(float *V, const float *Xp, int IC, int Wp, int TW,
                                                               int tb, int nt)
{
    for (int t = 0; t < nt; t++) {
        const int ty = (tb + t) / TW, tx = (tb + t) % TW;
        const float *base = Xp + ((size_t)(2 * ty) * Wp + 2 * tx) * IC;
        for (int c0 = 0; c0 < IC; c0 += 16) {
            __m512 r[4][4];
            for (int j = 0; j < 4; j++) {
                const float *q = base + (size_t)j * IC + c0;
                __m512 d0 = _mm512_loadu_ps(q), d1 = _mm512_loadu_ps(q + (size_t)Wp * IC);
                __m512 d2 = _mm512_loadu_ps(q + (size_t)2 * Wp * IC), d3 = _mm512_loadu_ps(q + (size_t)3 * Wp * IC);
                r[0][j] = _mm512_sub_ps(d0, d2);
                r[1][j] = _mm512_add_ps(d1, d2);
                r[2][j] = _mm512_sub_ps(d2, d1);
                r[3][j] = _mm512_sub_ps(d1, d3);
            }
            for (int i = 0; i < 4; i++) {
                __m512 v0 = _mm512_sub_ps(r[i][0], r[i][2]);
                __m512 v1 = _mm512_add_ps(r[i][1], r[i][2]);
                __m512 v2 = _mm512_sub_ps(r[i][2], r[i][1]);
                __m512 v3 = _mm512_sub_ps(r[i][1], r[i][3]);
                float *vp = V + ((size_t)(i * 4) * TB + t) * IC + c0;
                _mm512_storeu_ps(vp, v0);
                _mm512_storeu_ps(vp + (size_t)TB * IC, v1);
                _mm512_storeu_ps(vp + (size_t)2 * TB * IC, v2);
                _mm512_storeu_ps(vp + (size_t)3 * TB * IC, v3);
            }
        }
    }
}

/* F(2x2, 3x3) output transform of the tiles tb .. tb + nt - 1 from M into
 * Y (H, W, OC): A^T = [1 1 1 0; 0 1 -1 -1] */
__attribute__((target("avx512f"))) static void output_transform(float *Y, const float *M, int OC, int H, int W, int TW,
                                                                int tb, int nt)
{
    for (int t = 0; t < nt; t++) {
        const int ty = (tb + t) / TW, tx = (tb + t) % TW;
        const int oy = 2 * ty, ox = 2 * tx;
        const int ny = H - oy < 2 ? 1 : 2, nx = W - ox < 2 ? 1 : 2;
        for (int c0 = 0; c0 < OC; c0 += 16) {
            __m512 a[2][4];
            for (int j = 0; j < 4; j++) {
                const float *q = M + ((size_t)j * TB + t) * OC + c0;
                const size_t es = (size_t)4 * TB * OC;
                __m512 m0 = _mm512_loadu_ps(q), m1 = _mm512_loadu_ps(q + es);
                __m512 m2 = _mm512_loadu_ps(q + 2 * es), m3 = _mm512_loadu_ps(q + 3 * es);
                a[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                a[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
            }
            for (int i = 0; i < ny; i++) {
                __m512 y0 = _mm512_add_ps(_mm512_add_ps(a[i][0], a[i][1]), a[i][2]);
                __m512 y1 = _mm512_sub_ps(_mm512_sub_ps(a[i][1], a[i][2]), a[i][3]);
                float *yp = Y + ((size_t)(oy + i) * W + ox) * OC + c0;
                _mm512_storeu_ps(yp, y0);
                if (nx > 1) _mm512_storeu_ps(yp + OC, y1);
            }
        }
    }
}

/* F(4x4, 3x3). B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0;
 * 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1] applied to six vectors */
__attribute__((target("avx512f"), always_inline)) static inline void bt6(__m512 r[6], const __m512 d[6])
{
    const __m512 c4 = _mm512_set1_ps(4.0f), c5 = _mm512_set1_ps(5.0f), c2 = _mm512_set1_ps(2.0f);
    const __m512 a = _mm512_sub_ps(d[4], d[2]);        /* d4 - d2 */
    const __m512 b = _mm512_sub_ps(d[3], d[1]);        /* d3 - d1 */
    const __m512 p = _mm512_fnmadd_ps(c4, d[2], d[4]); /* d4 - 4 d2 */
    const __m512 q = _mm512_fnmadd_ps(c4, d[1], d[3]); /* d3 - 4 d1 */
    r[0] = _mm512_fnmadd_ps(c5, d[2], _mm512_fmadd_ps(c4, d[0], d[4]));
    r[1] = _mm512_add_ps(p, q);
    r[2] = _mm512_sub_ps(p, q);
    r[3] = _mm512_fmadd_ps(c2, b, a);
    r[4] = _mm512_fnmadd_ps(c2, b, a);
    r[5] = _mm512_fnmadd_ps(c5, d[3], _mm512_fmadd_ps(c4, d[1], d[5]));
}

/* V[e][t][ic] = (B^T d B)[e], e < 36, of the 6x6 input tiles tb .. tb +
 * nt - 1 (4 pixels apart, TW tiles per row) of the padded image Xp */
__attribute__((target("avx512f"))) static void input_transform4(float *V, const float *Xp, int IC, int Wp, int TW,
                                                                int tb, int nt)
{
    for (int t = 0; t < nt; t++) {
        const int ty = (tb + t) / TW, tx = (tb + t) % TW;
        const float *base = Xp + ((size_t)(4 * ty) * Wp + 4 * tx) * IC;
        for (int c0 = 0; c0 < IC; c0 += 16) {
            __m512 c[6][6]; /* c[j][i]: column j transformed, row i */
            for (int j = 0; j < 6; j++) {
                __m512 d[6];
                for (int i = 0; i < 6; i++) d[i] = _mm512_loadu_ps(base + ((size_t)i * Wp + j) * IC + c0);
                bt6(c[j], d);
            }
            for (int i = 0; i < 6; i++) {
                __m512 d[6], r[6];
                for (int j = 0; j < 6; j++) d[j] = c[j][i];
                bt6(r, d);
                for (int j = 0; j < 6; j++) _mm512_storeu_ps(V + ((size_t)(i * 6 + j) * TB + t) * IC + c0, r[j]);
            }
        }
    }
}

/* A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1] applied
 * to six vectors */
__attribute__((target("avx512f"), always_inline)) static inline void at6(__m512 y[4], const __m512 m[6])
{
    const __m512 c2 = _mm512_set1_ps(2.0f), c4 = _mm512_set1_ps(4.0f), c8 = _mm512_set1_ps(8.0f);
    const __m512 s12 = _mm512_add_ps(m[1], m[2]), d12 = _mm512_sub_ps(m[1], m[2]);
    const __m512 s34 = _mm512_add_ps(m[3], m[4]), d34 = _mm512_sub_ps(m[3], m[4]);
    y[0] = _mm512_add_ps(_mm512_add_ps(m[0], s12), s34);
    y[1] = _mm512_fmadd_ps(c2, d34, d12);
    y[2] = _mm512_fmadd_ps(c4, s34, s12);
    y[3] = _mm512_add_ps(_mm512_fmadd_ps(c8, d34, d12), m[5]);
}

/* F(4x4, 3x3) output transform of the tiles tb .. tb + nt - 1 from M into
 * Y (H, W, OC) */
__attribute__((target("avx512f"))) static void output_transform4(float *Y, const float *M, int OC, int H, int W, int TW,
                                                                 int tb, int nt)
{
    for (int t = 0; t < nt; t++) {
        const int ty = (tb + t) / TW, tx = (tb + t) % TW;
        const int oy = 4 * ty, ox = 4 * tx;
        const int ny = H - oy < 4 ? H - oy : 4, nx = W - ox < 4 ? W - ox : 4;
        for (int c0 = 0; c0 < OC; c0 += 16) {
            __m512 a[6][4]; /* a[j][i]: column j, output row i */
            for (int j = 0; j < 6; j++) {
                __m512 m[6];
                for (int i = 0; i < 6; i++) m[i] = _mm512_loadu_ps(M + ((size_t)(i * 6 + j) * TB + t) * OC + c0);
                at6(a[j], m);
            }
            for (int i = 0; i < ny; i++) {
                __m512 m[6], y[4];
                for (int j = 0; j < 6; j++) m[j] = a[j][i];
                at6(y, m);
                float *yp = Y + ((size_t)(oy + i) * W + ox) * OC + c0;
                for (int j = 0; j < nx; j++) _mm512_storeu_ps(yp + (size_t)j * OC, y[j]);
            }
        }
    }
}

size_t jem_wino_core_ws(int IC, int OC, int m)
{
    const int ne = (m + 2) * (m + 2);
    return jem_up16((size_t)ne * TB * IC) + jem_up16((size_t)ne * TB * OC);
}

/* Blocks of tiles are balanced (49 tiles: 18 + 18 + 13, not 24 + 24 + 1)
 * and rounded up to the 6-tile kernels. Ub not NULL: the products in bf16
 * (U is not read) */
__attribute__((target("avx512f"))) static void core(float *Y, const float *Xp, const float *U, const uint16_t *Ub,
                                                    int IC, int OC, int H, int W, int m, float *ws)
{
    const int TH = (H + m - 1) / m, TW = (W + m - 1) / m, NT = TH * TW, ne = (m + 2) * (m + 2);
    const int Wp = jem_wino_padded(W, m);
    float *V = ws;
    float *M = V + jem_up16((size_t)ne * TB * IC);
    const int nb = (NT + TB - 1) / TB, bs = ((NT + nb - 1) / nb + 5) / 6 * 6;
    for (int tb = 0; tb < NT; tb += bs) {
        const int nt = NT - tb < bs ? NT - tb : bs;
        const int ntr = (nt + 5) / 6 * 6;
        if (m == 4) input_transform4(V, Xp, IC, Wp, TW, tb, nt);
        else input_transform(V, Xp, IC, Wp, TW, tb, nt);
        if (ntr > nt)
            for (int e = 0; e < ne; e++)
                memset(V + ((size_t)e * TB + nt) * IC, 0, sizeof(float) * (size_t)(ntr - nt) * IC);
        if (Ub) {
            /* V's planes rounded into the same buffer, bf16 plane e at
             * bf16 offset e TB IC, in increasing order: plane e's bf16
             * values end at or before its fp32 values start (e >= 1) or
             * trail them (e = 0), and so never land on a plane not yet
             * read */
            for (int e = 0; e < ne; e++)
                jem_to_bf16((uint16_t *)V + (size_t)e * TB * IC, V + (size_t)e * TB * IC, (size_t)ntr * IC);
        }
        products(M, V, U, Ub, ne, ntr, IC, OC);
        if (m == 4) output_transform4(Y, M, OC, H, W, TW, tb, nt);
        else output_transform(Y, M, OC, H, W, TW, tb, nt);
    }
}

void jem_wino_core(float *Y, const float *Xp, const float *U, int IC, int OC, int H, int W, int m, float *ws)
{
    core(Y, Xp, U, NULL, IC, OC, H, W, m, ws);
}

void jem_wino_core_bf16(float *Y, const float *Xp, const uint16_t *Ub, int IC, int OC, int H, int W, int m, float *ws)
{
    core(Y, Xp, NULL, Ub, IC, OC, H, W, m, ws);
}

/* one image with m x m output tiles (m = 2 or 4): in (IC, H, W) -> out
 * (OC, H, W) with the bias, stored as st says */
__attribute__((target("avx512f"))) static void wino_img(float *out, const float *in, const float *U, const float *bias,
                                                        int IC, int OC, int H, int W, int m, const jem_conv_store *st,
                                                        float *ws)
{
    const int Hp = jem_wino_padded(H, m), Wp = jem_wino_padded(W, m);
    float *Xp = ws;
    float *Y = Xp + jem_up16((size_t)Hp * Wp * IC);
    float *cws = Y + jem_up16((size_t)H * W * OC);
    jem_hwc_pack_padded(Xp, in, IC, H, W, Hp, Wp);
    jem_wino_core(Y, Xp, U, IC, OC, H, W, m, cws);
    jem_hwc_unpack(out, Y, OC, H, W, 0, W, bias, st);
}

/* dM = A dY A^T for F(4x4, 3x3): A applied to four vectors, A = [1 0 0 0;
 * 1 1 1 1; 1 -1 1 -1; 1 2 4 8; 1 -2 4 -8; 0 0 0 1] */
__attribute__((target("avx512f"), always_inline)) static inline void a4(__m512 z[6], const __m512 y[4])
{
    const __m512 c2 = _mm512_set1_ps(2.0f), c4 = _mm512_set1_ps(4.0f), c8 = _mm512_set1_ps(8.0f);
    const __m512 e = _mm512_add_ps(y[0], y[2]), o = _mm512_add_ps(y[1], y[3]);
    const __m512 e4 = _mm512_fmadd_ps(c4, y[2], y[0]), o8 = _mm512_fmadd_ps(c8, y[3], _mm512_mul_ps(c2, y[1]));
    z[0] = y[0];
    z[1] = _mm512_add_ps(e, o);
    z[2] = _mm512_sub_ps(e, o);
    z[3] = _mm512_add_ps(e4, o8);
    z[4] = _mm512_sub_ps(e4, o8);
    z[5] = y[3];
}

/* dM[e][t][oc] = (A dY A^T)[e] of the tiles tb .. tb + nt - 1, dY pixel
 * (y, x) read from Yt + (y ldy + x) OC with zeros past the image; F(2x2):
 * A^T = [1 1 1 0; 0 1 -1 -1] */
__attribute__((target("avx512f"))) static void grad_transform(float *dM, const float *Yt, int ldy, int OC, int H, int W,
                                                              int TW, int tb, int nt, int m)
{
    const int n = m + 2;
    for (int t = 0; t < nt; t++) {
        const int ty = (tb + t) / TW, tx = (tb + t) % TW;
        const int oy = m * ty, ox = m * tx;
        for (int c0 = 0; c0 < OC; c0 += 16) {
            __m512 y[4][4], z[6][4], r[6];
            for (int a = 0; a < m; a++)
                for (int b = 0; b < m; b++)
                    y[a][b] = oy + a < H && ox + b < W
                                  ? _mm512_loadu_ps(Yt + ((size_t)(oy + a) * ldy + ox + b) * OC + c0)
                                  : _mm512_setzero_ps();
            /* z = A y (columns), then each row of z times A^T */
            for (int b = 0; b < m; b++) {
                __m512 col[4], zc[6];
                for (int a = 0; a < m; a++) col[a] = y[a][b];
                if (m == 4) {
                    a4(zc, col);
                } else {
                    zc[0] = col[0];
                    zc[1] = _mm512_add_ps(col[0], col[1]);
                    zc[2] = _mm512_sub_ps(col[0], col[1]);
                    zc[3] = _mm512_sub_ps(_mm512_setzero_ps(), col[1]);
                }
                for (int i = 0; i < n; i++) z[i][b] = zc[i];
            }
            for (int i = 0; i < n; i++) {
                if (m == 4) {
                    a4(r, z[i]);
                } else {
                    r[0] = z[i][0];
                    r[1] = _mm512_add_ps(z[i][0], z[i][1]);
                    r[2] = _mm512_sub_ps(z[i][0], z[i][1]);
                    r[3] = _mm512_sub_ps(_mm512_setzero_ps(), z[i][1]);
                }
                for (int j = 0; j < n; j++) _mm512_storeu_ps(dM + ((size_t)(i * n + j) * TB + t) * OC + c0, r[j]);
            }
        }
    }
}

size_t jem_wino_wgrad_ws(int IC, int OC, int m)
{
    const int ne = (m + 2) * (m + 2);
    return jem_up16((size_t)ne * TB * IC + 16) + jem_up16((size_t)ne * TB * OC);
}

/* dM = A dY A^T is the gradient of the elementwise product M of the forward
 * pass, dU = sum over tiles of dM * V */
__attribute__((target("avx512f"))) void jem_wino_wgrad_core(float *dU, const float *Xp, const float *Yt, int ldy,
                                                            int IC, int OC, int H, int W, int m, float *ws)
{
    const int TH = (H + m - 1) / m, TW = (W + m - 1) / m, NT = TH * TW, ne = (m + 2) * (m + 2);
    const int Wp = jem_wino_padded(W, m);
    float *V = ws, *dM = ws + jem_up16((size_t)ne * TB * IC + 16);
    memset(V + (size_t)ne * TB * IC, 0, sizeof(float) * 16); /* the slack */
    int toff[TB];                                            /* row offsets of the tiles in V[e] */
    for (int t = 0; t < TB; t++) toff[t] = t * IC;
    for (int tb = 0; tb < NT; tb += TB) {
        const int nt = NT - tb < TB ? NT - tb : TB;
        if (m == 4) input_transform4(V, Xp, IC, Wp, TW, tb, nt);
        else input_transform(V, Xp, IC, Wp, TW, tb, nt);
        grad_transform(dM, Yt, ldy, OC, H, W, TW, tb, nt, m);
        /* dU[e] (IC x OC) += V[e]^T (IC x nt) . dM[e] (nt x OC) */
        for (int e = 0; e < ne; e++)
            jem_wgemm(V + (size_t)e * TB * IC, toff, nt, dM + (size_t)e * TB * OC, dU + (size_t)e * IC * OC, IC, OC);
    }
    for (int y = 0; y < H; y++) jem_hwc_add_colsum(dU + (size_t)ne * IC * OC, Yt + (size_t)y * ldy * OC, (size_t)W, OC);
}

/* one image: this thread's dU and db += the gradients from x (IC, H, W)
 * and dout (OC, H, W) */
__attribute__((target("avx512f"))) static void wgrad_img(float *dU, const float *x, const float *dout, int IC, int OC,
                                                         int H, int W, int m, float *ws)
{
    const int Hp = jem_wino_padded(H, m), Wp = jem_wino_padded(W, m);
    size_t off[5];
    wgrad_parts(IC, OC, H, W, m, off);
    float *Xp = ws + off[0], *Yt = ws + off[1];
    jem_hwc_pack_padded(Xp, x, IC, H, W, Hp, Wp);
    jem_hwc_pack(Yt, dout, OC, H, W);
    jem_wino_wgrad_core(dU, Xp, Yt, W, IC, OC, H, W, m, ws + off[2]);
}
#endif

const float *jem_wino_weights(jem_wcache **slot, const float *w, int IC, int OC, int flip, int m)
{
    int fresh = 1;
    float *U = jem_wcache_get(slot, w, (size_t)IC * OC * 9, jem_wcache_tag(8 + m, flip, IC, OC),
                              (size_t)(m + 2) * (m + 2) * IC * OC, &fresh);
    if (U && fresh) {
#pragma omp parallel
        transform_weights(U, NULL, w, IC, OC, flip, m);
    }
    return U;
}

const uint16_t *jem_wino_weights_bf16(jem_wcache **slot, const float *w, int IC, int OC, int flip, int m)
{
    int fresh = 1;
    /* (m + 2)^2 IC OC bf16 values in half as many floats */
    float *U = jem_wcache_get(slot, w, (size_t)IC * OC * 9, jem_wcache_tag(16 + m, flip, IC, OC),
                              (size_t)(m + 2) * (m + 2) * IC * OC / 2, &fresh);
    if (U && fresh) {
#pragma omp parallel
        transform_weights(NULL, (uint16_t *)U, w, IC, OC, flip, m);
    }
    return (const uint16_t *)U;
}

static int run(float *out, const float *in, const float *w, const float *bias, const jem_conv_shape *s, int IC, int OC,
               int flip, const jem_conv_store *st, int m, float *ws)
{
#if HAVE_X86
    jem_wcache *own = NULL;
    const float *U = jem_wino_weights(st->wcache ? st->wcache : &own, w, IC, OC, flip, m);
    if (!U) {
        jem_wcache_free(own);
        return -1;
    }
    const size_t per = wino_ws(s);
    const size_t isz = (size_t)IC * s->H * s->W, osz = (size_t)OC * s->H * s->W;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < s->B; b++) {
        const jem_conv_store sb = jem_store_image(st, b, osz);
        wino_img(out + b * osz, in + b * isz, U, bias, IC, OC, s->H, s->W, m, &sb,
                 ws + (size_t)omp_get_thread_num() * per);
    }
    jem_wcache_free(own);
    return 0;
#else
    (void)out;
    (void)in;
    (void)w;
    (void)bias;
    (void)s;
    (void)IC;
    (void)OC;
    (void)flip;
    (void)st;
    (void)m;
    (void)ws;
    return -1;
#endif
}

/* whether this CPU and shape run with tile m */
static int runs(const jem_conv_shape *s, int m)
{
    return jem_conv_settings_get()->avx512 && fits(s) && (m == 2 || m == 4);
}

static int wino_forward(float *out, const float *inp, const float *w, const float *bias, const jem_conv_shape *s,
                        const jem_conv_store *st, int m, float *ws)
{
    if (!runs(s, m)) return -1;
    return run(out, inp, w, bias, s, s->IC, s->OC, 0, st, m, ws);
}

/* G of F(m x m, 3x3) ((m + 2) x 3), for dw = G^T dU G */
static const float G2[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
static const double G4[6][3] = {{0.25, 0, 0},
                                {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                {0, 0, 1}};

/* sum the threads' dU in a fixed order, then dw += G^T dU G */
void jem_wino_reduce(float *dw, float *db, const float *dU0, size_t stride, int nth, int IC, int OC, int m)
{
    const int n = m + 2, ne = n * n;
#pragma omp for schedule(static)
    for (int oc = 0; oc < OC; oc++) {
        for (int ic = 0; ic < IC && dw; ic++) {
            double u[36];
            for (int e = 0; e < ne; e++) {
                float acc = 0.0f;
                for (int t = 0; t < nth; t++) acc += dU0[(size_t)t * stride + ((size_t)e * IC + ic) * OC + oc];
                u[e] = acc;
            }
            float *g = dw + ((size_t)oc * IC + ic) * 9;
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) {
                    double acc = 0.0;
                    for (int a = 0; a < n; a++)
                        for (int b = 0; b < n; b++)
                            acc += (m == 4 ? G4[a][i] * G4[b][j] : (double)G2[a][i] * G2[b][j]) * u[a * n + b];
                    g[i * 3 + j] += (float)acc;
                }
        }
        if (db)
            for (int t = 0; t < nth; t++) db[oc] += dU0[(size_t)t * stride + (size_t)ne * IC * OC + oc];
    }
}

/* dw (OC, IC, 3, 3) and db (OC) += the weight and bias gradients (either
 * may be NULL) */
static void wgrad(float *dw, float *db, const float *dout, const float *inp, const jem_conv_shape *s, int m, float *ws)
{
    if (!dw && !db) return;
#if HAVE_X86
    const int IC = s->IC, OC = s->OC, n = m + 2, ne = n * n;
    const size_t per = wino_ws(s), isz = (size_t)IC * s->H * s->W, osz = (size_t)OC * s->H * s->W;
    size_t off[5];
    wgrad_parts(IC, OC, s->H, s->W, m, off);
    const size_t ndu = (size_t)ne * IC * OC + OC;
    int nth = 1;
#pragma omp parallel
    {
#pragma omp single
        nth = omp_get_num_threads();
        float *tws = ws + (size_t)omp_get_thread_num() * per;
        memset(tws + off[4], 0, sizeof(float) * ndu);
#pragma omp for schedule(static)
        for (int b = 0; b < s->B; b++)
            wgrad_img(tws + off[4], inp + b * isz, dout + b * osz, IC, OC, s->H, s->W, m, tws);
        jem_wino_reduce(dw, db, ws + off[4], per, nth, IC, OC, m);
    }
#else
    (void)dw;
    (void)db;
    (void)dout;
    (void)inp;
    (void)s;
    (void)m;
    (void)ws;
#endif
}

/* the input gradient first (the only part that can fail: the transformed
 * weights take memory), then the weight gradients */
static int wino_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                         const jem_conv_shape *s, const jem_conv_store *st, int m, float *ws)
{
    if (!runs(s, m)) return -1;
    if (dinp && run(dinp, dout, w, NULL, s, s->OC, s->IC, 1, st, m, ws)) return -1;
    wgrad(dw, db, dout, inp, s, m, ws);
    return 0;
}

const jem_kernel_ops jem_kernel_winograd = {wino_forward, wino_backward, wino_ws};
