/*
 * Direct 3x3 stride-1 pad-1 convolution with AVX-512, for the forward pass
 * and for the input gradient (a forward convolution of the output gradient
 * with transposed, flipped weights). Vectors run along output rows (16
 * pixels per zmm, masked at the edges); each step broadcasts one weight per
 * output channel, so a tile of 3 vectors x 8 output channels keeps 24
 * accumulators in registers while the input rows stay in L1. Activations stay
 * in NCHW, so the kernels drop in beside the im2col + sgemm path.
 *
 * Compiled for AVX-512 through target attributes; the planner (plan.c)
 * gives it the stride-1 layers Winograd does not take (channels not
 * multiples of 16, or JEM_KERNELS=direct). It cannot add into the forward
 * output; the input gradient always adds, so a store that sets it zeroes
 * it first, and gate and act_out are passes after (jem_store_finish).
 */
#include "nn/nn.h"
#include "nn/kern.h"
#include "nn/plan.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#define NOC 8 /* output channels per weight block */
#define NV  3 /* row vectors per tile */

typedef struct {
    int oh, ow0, n;
} chunk;

/* the shapes it takes: 3x3, stride 1, pad 1, on a CPU with AVX-512 */
static int takes(const jem_conv_shape *s)
{
    return s->KH == 3 && s->KW == 3 && s->stride == 1 && s->pad == 1 && jem_conv_settings_get()->avx512;
}

/* forward weights (OC, IC, 3, 3) -> (OC/8, IC, 9, 8) */
static void pack_fwd(float *wp, const float *w, int OC, int IC)
{
    for (int ob = 0; ob < OC / NOC; ob++)
        for (int ic = 0; ic < IC; ic++)
            for (int k = 0; k < 9; k++)
                for (int j = 0; j < NOC; j++)
                    wp[(((size_t)ob * IC + ic) * 9 + k) * NOC + j] = w[(((size_t)ob * NOC + j) * IC + ic) * 9 + k];
}

/* input-gradient weights: W'[ic][oc][k] = W[oc][ic][8 - k] -> (IC/8, OC, 9, 8) */
static void pack_bwd(float *wp, const float *w, int OC, int IC)
{
    for (int ib = 0; ib < IC / NOC; ib++)
        for (int oc = 0; oc < OC; oc++)
            for (int k = 0; k < 9; k++)
                for (int j = 0; j < NOC; j++)
                    wp[(((size_t)ib * OC + oc) * 9 + k) * NOC + j] = w[((size_t)oc * IC + ib * NOC + j) * 9 + (8 - k)];
}

static chunk *make_chunks(int H, int W, int *nch)
{
    int per = (W + 15) / 16;
    chunk *c = malloc(sizeof(chunk) * (size_t)H * per);
    if (!c) return NULL;
    int n = 0;
    for (int oh = 0; oh < H; oh++)
        for (int q = 0; q < per; q++) {
            c[n].oh = oh;
            c[n].ow0 = q * 16;
            c[n].n = W - q * 16 < 16 ? W - q * 16 : 16;
            n++;
        }
    *nch = n;
    return c;
}

#if HAVE_X86
/* out (OC, H, W) (+)= conv3x3(in (IC, H, W)) + bias, one image */
__attribute__((target("avx512f"))) static void conv3x3_img(float *out, const float *in, const float *wp,
                                                           const float *bias, int IC, int OC, int H, int W,
                                                           int accumulate, const chunk *ch, int nch)
{
    const size_t HW = (size_t)H * W;
    for (int t = 0; t < nch; t += NV) {
        int oh[NV], ow0[NV], nn[NV];
        __mmask16 cm[NV][3], rm[NV][3], sm[NV], mk[NV][9];
        ptrdiff_t off[NV][3];
        for (int v = 0; v < NV; v++) {
            if (t + v < nch) {
                oh[v] = ch[t + v].oh;
                ow0[v] = ch[t + v].ow0;
                nn[v] = ch[t + v].n;
            } else {
                oh[v] = 0;
                ow0[v] = 0;
                nn[v] = 0;
            }
            sm[v] = (__mmask16)((1u << nn[v]) - 1u);
            for (int kw = 0; kw < 3; kw++) {
                unsigned m = 0;
                for (int l = 0; l < nn[v]; l++) {
                    int iw = ow0[v] + l + kw - 1;
                    if (iw >= 0 && iw < W) m |= 1u << l;
                }
                cm[v][kw] = (__mmask16)m;
            }
            for (int kh = 0; kh < 3; kh++) {
                int ih = oh[v] + kh - 1;
                rm[v][kh] = (ih >= 0 && ih < H && nn[v] > 0) ? (__mmask16)0xffff : 0;
                if (ih < 0 || ih >= H) ih = 0;
                /* offset of the pixel left of the vector's first (kw = 0);
                 * lanes outside the row are masked off */
                off[v][kh] = (ptrdiff_t)ih * W + ow0[v] - 1;
                for (int kw = 0; kw < 3; kw++) mk[v][kh * 3 + kw] = cm[v][kw] & rm[v][kh];
            }
        }
        for (int ob = 0; ob < OC / NOC; ob++) {
            __m512 acc[NV][NOC];
#pragma GCC unroll 3
            for (int v = 0; v < NV; v++)
#pragma GCC unroll 8
                for (int j = 0; j < NOC; j++) acc[v][j] = _mm512_setzero_ps();
            const float *wb = wp + (size_t)ob * IC * 9 * NOC;
            for (int ic = 0; ic < IC; ic++) {
                const float *ip = in + (size_t)ic * HW;
                const float *wk = wb + (size_t)ic * 9 * NOC;
#pragma GCC unroll 3
                for (int kh = 0; kh < 3; kh++) {
#pragma GCC unroll 3
                    for (int kw = 0; kw < 3; kw++) {
                        __m512 x[NV];
#pragma GCC unroll 3
                        for (int v = 0; v < NV; v++)
                            x[v] = _mm512_maskz_loadu_ps(mk[v][kh * 3 + kw], ip + off[v][kh] + kw);
#pragma GCC unroll 8
                        for (int j = 0; j < NOC; j++) {
                            __m512 b = _mm512_set1_ps(wk[(kh * 3 + kw) * NOC + j]);
#pragma GCC unroll 3
                            for (int v = 0; v < NV; v++) acc[v][j] = _mm512_fmadd_ps(b, x[v], acc[v][j]);
                        }
                    }
                }
            }
            /* fully unrolled so the accumulators never leave registers
             * (an empty vector has an all-zero store mask) */
#pragma GCC unroll 3
            for (int v = 0; v < NV; v++) {
#pragma GCC unroll 8
                for (int j = 0; j < NOC; j++) {
                    int oc = ob * NOC + j;
                    float *op = out + (size_t)oc * HW + (size_t)oh[v] * W + ow0[v];
                    __m512 r = acc[v][j];
                    if (bias) r = _mm512_add_ps(r, _mm512_set1_ps(bias[oc]));
                    if (accumulate) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(sm[v], op));
                    _mm512_mask_storeu_ps(op, sm[v], r);
                }
            }
        }
    }
}
#endif

/* out (B, OC, H, W) (+)= conv3x3(in (B, IC, H, W)), packed weights */
static int run(float *out, const float *in, const float *wp, const float *bias, int B, int IC, int OC, int H, int W,
               int accumulate)
{
#if HAVE_X86
    int nch;
    chunk *ch = make_chunks(H, W, &nch);
    if (!ch) return -1;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        conv3x3_img(out + (size_t)b * OC * H * W, in + (size_t)b * IC * H * W, wp, bias, IC, OC, H, W, accumulate, ch,
                    nch);
    free(ch);
    return 0;
#else
    (void)out;
    (void)in;
    (void)wp;
    (void)bias;
    (void)B;
    (void)IC;
    (void)OC;
    (void)H;
    (void)W;
    (void)accumulate;
    return -1;
#endif
}

static int direct_forward(float *out, const float *inp, const float *w, const float *bias, const jem_conv_shape *s,
                          const jem_conv_store *st, int tile, float *ws)
{
    (void)tile;
    (void)ws;
    if (!takes(s) || s->OC % NOC || st->accumulate) return -1;
    float *wp = malloc(sizeof(float) * (size_t)s->OC * s->IC * 9);
    if (!wp) return -1;
    pack_fwd(wp, w, s->OC, s->IC);
    int r = run(out, inp, wp, bias, s->B, s->IC, s->OC, s->H, s->W, 0);
    free(wp);
    if (!r) jem_store_finish(out, (size_t)s->B * s->OC * s->H * s->W, st);
    return r;
}

/* the input gradient only (dw and db NULL) */
static int direct_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                           const jem_conv_shape *s, const jem_conv_store *st, int tile, float *ws)
{
    (void)inp;
    (void)tile;
    (void)ws;
    if (!takes(s) || s->IC % NOC || dw || db || !dinp) return -1;
    float *wp = malloc(sizeof(float) * (size_t)s->OC * s->IC * 9);
    if (!wp) return -1;
    pack_bwd(wp, w, s->OC, s->IC);
    const size_t n = (size_t)s->B * s->IC * s->H * s->W;
    if (!st->accumulate) memset(dinp, 0, sizeof(float) * n);
    int r = run(dinp, dout, wp, NULL, s->B, s->OC, s->IC, s->H, s->W, 1);
    free(wp);
    if (!r) jem_store_finish(dinp, n, st);
    return r;
}

const jem_kernel_ops jem_kernel_direct = {direct_forward, direct_backward, NULL};
