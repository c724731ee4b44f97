/*
 * hwc.h: moving activations between NCHW and channels-innermost (H, W, C)
 * layouts with AVX-512, 16 channels x 16 pixels per in-register transpose.
 * Internal to the AVX-512 convolution kernels (conv_winograd.c,
 * conv_indirect.c, block.c), with the weight-gradient kernel they share;
 * every function needs C a multiple of 16.
 */
#ifndef JEM_HWC_H
#define JEM_HWC_H

#include "nn/nn.h"

#include <stddef.h>
#include <string.h>

#if HAVE_X86
/* r[i][j] -> r[j][i] for a 16 x 16 block held in 16 registers */
__attribute__((target("avx512f"), always_inline)) static inline void jem_transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* r[4g + k], 128-bit lane L: rows 4g..4g+3 of column 4L + k */
    for (int g = 0; g < 4; g++) {
        r[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int k = 0; k < 4; k++) {
        __m512 s0 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88), s1 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xDD);
        __m512 s2 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88),
               s3 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xDD);
        t[k] = _mm512_shuffle_f32x4(s0, s2, 0x88);
        t[8 + k] = _mm512_shuffle_f32x4(s0, s2, 0xDD);
        t[4 + k] = _mm512_shuffle_f32x4(s1, s3, 0x88);
        t[12 + k] = _mm512_shuffle_f32x4(s1, s3, 0xDD);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

/* X (Hp, Wp, C): zero the border around the H x W image at (1, 1) */
static inline void jem_hwc_zero_border(float *X, int C, int H, int W, int Hp, int Wp)
{
    memset(X, 0, sizeof(float) * (size_t)Wp * C);
    for (int y = 1; y <= H; y++) {
        float *row = X + (size_t)y * Wp * C;
        memset(row, 0, sizeof(float) * C);
        memset(row + (size_t)(W + 1) * C, 0, sizeof(float) * (size_t)(Wp - W - 1) * C);
    }
    for (int y = H + 1; y < Hp; y++) memset(X + (size_t)y * Wp * C, 0, sizeof(float) * (size_t)Wp * C);
}

/* in (C, H, W) -> dst (Hp, Wp, C) at offset (1, 1), border zeroed
 * (Hp >= H + 1, Wp >= W + 1) */
__attribute__((target("avx512f"))) static inline void jem_hwc_pack_padded(float *dst, const float *in, int C, int H,
                                                                          int W, int Hp, int Wp)
{
    const size_t HW = (size_t)H * W;
    jem_hwc_zero_border(dst, C, H, W, Hp, Wp);
    for (size_t p0 = 0; p0 < HW; p0 += 16) {
        const int n = HW - p0 < 16 ? (int)(HW - p0) : 16;
        const __mmask16 mk = (__mmask16)((1u << n) - 1u);
        float *d[16];
        for (int j = 0; j < n; j++) {
            const int y = (int)((p0 + j) / W), x = (int)((p0 + j) % W);
            d[j] = dst + ((size_t)(y + 1) * Wp + x + 1) * C;
        }
        for (int c0 = 0; c0 < C; c0 += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                const float *q = in + (size_t)(c0 + i) * HW + p0;
                r[i] = _mm512_maskz_loadu_ps(mk, q);
                _mm_prefetch((const char *)(q + 64), _MM_HINT_T0);
            }
            jem_transpose16(r);
            for (int j = 0; j < n; j++) _mm512_storeu_ps(d[j] + c0, r[j]);
        }
    }
}

/* in (C, H, W) -> dst (H, W, C) */
__attribute__((target("avx512f"))) static inline void jem_hwc_pack(float *dst, const float *in, int C, int H, int W)
{
    const size_t HW = (size_t)H * W;
    for (size_t p0 = 0; p0 < HW; p0 += 16) {
        const int n = HW - p0 < 16 ? (int)(HW - p0) : 16;
        const __mmask16 mk = (__mmask16)((1u << n) - 1u);
        for (int c0 = 0; c0 < C; c0 += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++) r[i] = _mm512_maskz_loadu_ps(mk, in + (size_t)(c0 + i) * HW + p0);
            jem_transpose16(r);
            for (int j = 0; j < n; j++) _mm512_storeu_ps(dst + (p0 + j) * C + c0, r[j]);
        }
    }
}

/* src (Hs, Ws, C), pixel (y, x) at (y + off, x + off) -> out (C, H, W),
 * stored as st says (nn.h) with the bias (may be NULL) added. gate and
 * act_out of st point at this image. */
__attribute__((target("avx512f"))) static inline void jem_hwc_unpack(float *out, const float *src, int C, int H, int W,
                                                                     int off, int Ws, const float *bias,
                                                                     const jem_conv_store *st)
{
    const size_t HW = (size_t)H * W;
    const jem_factv act = jem_factv_make(&st->act);
    /* 16 channel planes at a time: the 16 rows the loop writes (and reads,
     * for accumulate and gate) each run sequentially through the image */
    for (int c0 = 0; c0 < C; c0 += 16)
        for (size_t p0 = 0; p0 < HW; p0 += 16) {
            const int n = HW - p0 < 16 ? (int)(HW - p0) : 16;
            const __mmask16 mk = (__mmask16)((1u << n) - 1u);
            __m512 r[16];
            int y = (int)(p0 / W), x = (int)(p0 % W);
            for (int j = 0; j < 16; j++) {
                r[j] = j < n ? _mm512_loadu_ps(src + ((size_t)(y + off) * Ws + x + off) * C + c0) : _mm512_setzero_ps();
                if (++x == W) x = 0, y++;
            }
            jem_transpose16(r);
            for (int i = 0; i < 16; i++) {
                const size_t at = (size_t)(c0 + i) * HW + p0;
                __m512 v = r[i];
                if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bias[c0 + i]));
                if (st->accumulate) {
                    _mm_prefetch((const char *)(out + at + 128), _MM_HINT_T0);
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, out + at));
                }
                if (st->gate) {
                    _mm_prefetch((const char *)(st->gate + at + 128), _MM_HINT_T0);
                    v = jem_factv_grad(&act, v, _mm512_maskz_loadu_ps(mk, st->gate + at));
                }
                _mm512_mask_storeu_ps(out + at, mk, v);
                if (st->act_out) _mm512_mask_storeu_ps(st->act_out + at, mk, jem_factv_apply(&act, v));
            }
        }
}

/* st for image b of a batch whose images are isz floats apart */
static inline jem_conv_store jem_store_image(const jem_conv_store *st, int b, size_t isz)
{
    jem_conv_store r = *st;
    if (r.gate) r.gate += (size_t)b * isz;
    if (r.act_out) r.act_out += (size_t)b * isz;
    return r;
}

/* db[c] += sum over the P rows of Y (P, C): the bias gradient from an
 * output gradient in (H, W, C) layout */
__attribute__((target("avx512f"))) static inline void jem_hwc_add_colsum(float *db, const float *Y, size_t P, int C)
{
    for (int c0 = 0; c0 < C; c0 += 16) {
        __m512 a = _mm512_setzero_ps();
        for (size_t p = 0; p < P; p++) a = _mm512_add_ps(a, _mm512_loadu_ps(Y + p * C + c0));
        _mm512_storeu_ps(db + c0, _mm512_add_ps(_mm512_loadu_ps(db + c0), a));
    }
}

/* The weight-gradient kernel of both conv_indirect.c and conv_winograd.c:
 * dw[r][16 v] += sum_p X[poff[p] + r] * Y[p][16 v] for r < nr, 6 rows x NV
 * vectors of 16 columns in registers (reads rows up to 6 even when nr is
 * smaller) */
#define DEFINE_WKERNEL(NV)                                                                                            \
    __attribute__((target("avx512f"), noinline, unused)) static void jem_wkern_##NV(                                  \
        const float *X, const int *poff, int P, const float *Y, int ldy, float *dw, int lddw, int nr)                 \
    {                                                                                                                 \
        __m512 acc[6][NV];                                                                                            \
        _Pragma("GCC unroll 6") for (int r = 0; r < 6; r++) _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)      \
            acc[r][v] = _mm512_setzero_ps();                                                                          \
        for (int p = 0; p < P; p++) {                                                                                 \
            const float *xp = X + poff[p];                                                                            \
            const float *yp = Y + (size_t)p * ldy;                                                                    \
            __m512 u[NV];                                                                                             \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) u[v] = _mm512_loadu_ps(yp + 16 * v);                 \
            _Pragma("GCC unroll 6") for (int r = 0; r < 6; r++)                                                       \
            {                                                                                                         \
                const __m512 b = _mm512_set1_ps(xp[r]);                                                               \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(b, u[v], acc[r][v]); \
            }                                                                                                         \
        }                                                                                                             \
        _Pragma("GCC unroll 6") for (int r = 0; r < 6; r++)                                                           \
        {                                                                                                             \
            if (r >= nr) break;                                                                                       \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                                                      \
            {                                                                                                         \
                float *d = dw + (size_t)r * lddw + 16 * v;                                                            \
                _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), acc[r][v]));                                    \
            }                                                                                                         \
        }                                                                                                             \
    }
DEFINE_WKERNEL(4)
DEFINE_WKERNEL(2)
DEFINE_WKERNEL(1)

/* dW (IC, OC) += sum_p X[poff[p] + i]^T Y[p] (Y rows OC floats apart) for
 * i < IC: the weight gradient of one tap, in 6-row strips of the widest
 * kernel OC allows; reads up to 5 floats past a row of X */
__attribute__((target("avx512f"), unused)) static void jem_wgemm(const float *X, const int *poff, int P, const float *Y,
                                                                 float *dW, int IC, int OC)
{
    const int nv = OC % 64 == 0 ? 4 : OC % 32 == 0 ? 2 : 1;
    for (int i0 = 0; i0 < IC; i0 += 6) {
        const int nr = IC - i0 < 6 ? IC - i0 : 6;
        for (int o0 = 0; o0 < OC; o0 += 16 * nv) {
            float *d = dW + (size_t)i0 * OC + o0;
            if (nv == 4) jem_wkern_4(X + i0, poff, P, Y + o0, OC, d, OC, nr);
            else if (nv == 2) jem_wkern_2(X + i0, poff, P, Y + o0, OC, d, OC, nr);
            else jem_wkern_1(X + i0, poff, P, Y + o0, OC, d, OC, nr);
        }
    }
}
#endif

#endif
