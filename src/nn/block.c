/*
 * A wide-ResNet block fused per image: act(x), conv1 (Winograd), act, conv2
 * (Winograd at stride 1, indirect at stride 2) and the shortcut (a 1x1
 * convolution or the identity) run one image after another on each thread,
 * and nothing between the block's input and output leaves the kernels'
 * channels-innermost layout. Layer by layer, every convolution transposed
 * its input in from NCHW and its output back, the activations a1 and a2
 * were written out for the whole batch, and the shortcut was a GEMM pass of
 * its own. Here the input is transposed once (its activation and the
 * shortcut both read it), conv1's output is stored once, channels innermost
 * (h1, for the backward pass), while its activation goes straight into
 * conv2's zero-padded input in the thread's workspace, and the shortcut
 * adds into conv2's output before the one transpose back. The backward pass
 * does the same in reverse: conv2's input gradient, times act'(h1), is
 * written into conv1's padded input, and the weight gradients of both
 * convolutions read those buffers; the shortcut's weight gradient reads
 * the transposed input and the output gradient.
 *
 * The arithmetic is that of the layer-by-layer kernels (the same cores,
 * kern.h); only the shortcut's sum is in another order. test_net compares
 * both paths. Which blocks fuse, and the Winograd tiles, are the planner's
 * (plan.c; JEM_FUSE=0 turns fusion off).
 */
#include "nn/nn.h"
#include "nn/hwc.h"
#include "nn/kern.h"
#include "nn/plan.h"

#include <stdlib.h>
#include <string.h>
#include <omp.h>

static size_t maxz(size_t a, size_t b) { return a > b ? a : b; }

/* the per-thread workspace: offsets (floats) of each buffer, and its size */
typedef struct {
    int IC, OC, H, W, OH, OW, P, m1, m2; /* m2 = 0: conv2 is indirect */
    int Hp1, Wp1, Hp2, Wp2;
    size_t xr, x1, d1, y1, x2, q, y2, core, du1, du2, dsc, poff, poffsc, bias, xb, total;
} layout;

static void lay_out(layout *l, const jem_block_plan *p, const jem_conv_shape *s1, const jem_conv_shape *s2)
{
    const int IC = s1->IC, OC = s1->OC, H = s1->H, W = s1->W;
    l->IC = IC;
    l->OC = OC;
    l->H = H;
    l->W = W;
    l->OH = jem_conv_out(H, 3, s2->stride, 1);
    l->OW = jem_conv_out(W, 3, s2->stride, 1);
    l->P = l->OH * l->OW;
    l->m1 = p->c1.tile;
    l->m2 = p->c2.kernel == JEM_KERNEL_WINOGRAD ? p->c2.tile : 0;
    l->Hp1 = jem_wino_padded(H, l->m1);
    l->Wp1 = jem_wino_padded(W, l->m1);
    l->Hp2 = l->m2 ? jem_wino_padded(H, l->m2) : H + 2;
    l->Wp2 = l->m2 ? jem_wino_padded(W, l->m2) : W + 2;
    const size_t pix1 = (size_t)l->Hp1 * l->Wp1, pix2 = (size_t)l->Hp2 * l->Wp2;
    size_t core = maxz(jem_wino_core_ws(IC, OC, l->m1), jem_wino_core_ws(OC, IC, l->m1));
    core = maxz(core, jem_wino_wgrad_ws(IC, OC, l->m1));
    if (l->m2) core = maxz(maxz(core, jem_wino_core_ws(OC, OC, l->m2)), jem_wino_wgrad_ws(OC, OC, l->m2));
    const size_t du2 = l->m2 ? (size_t)(l->m2 + 2) * (l->m2 + 2) * OC * OC + OC : (size_t)9 * OC * OC + OC;
    size_t o = 0;
    l->xr = o;
    o += jem_up16((size_t)H * W * IC + 16); /* the block input x, 16 floats of slack */
    l->x1 = o;
    o += jem_up16(pix1 * IC); /* padded a1 = act(x) */
    l->d1 = o;
    o += jem_up16(pix1 * OC); /* padded dh1 */
    l->y1 = o;
    o += jem_up16((size_t)H * W * maxz(IC, OC)); /* conv1 out; input gradients */
    l->x2 = o;
    o += jem_up16(pix2 * OC + 16); /* padded a2, 16 floats of slack */
    l->q = o;
    o += jem_up16(maxz(pix2 * OC, jem_up16((size_t)l->P * OC) + (size_t)(H + 2) * (W + 2) * OC));
    l->y2 = o;
    o += jem_up16((size_t)l->P * OC); /* conv2 out */
    l->core = o;
    o += jem_up16(core);
    l->du1 = o;
    o += jem_up16((size_t)(l->m1 + 2) * (l->m1 + 2) * IC * OC + OC);
    l->du2 = o;
    o += jem_up16(du2);
    l->dsc = o;
    o += jem_up16((size_t)IC * OC + OC); /* the shortcut's weight and bias gradients */
    l->poff = o;
    o += jem_up16((size_t)l->P);
    l->poffsc = o;
    o += jem_up16((size_t)l->P); /* the shortcut's pixels in xr */
    l->bias = o;
    o += jem_up16((size_t)OC); /* conv2's bias + the shortcut's */
    l->xb = o;                 /* bf16 copies of what conv2 and the shortcut read, in half as many floats */
    o += jem_up16(maxz(maxz(pix2 * OC, (size_t)H * W * IC), (size_t)l->P * OC) / 2 + 16);
    l->total = o;
}

size_t jem_block_ws(const jem_block_plan *p, const jem_conv_shape *s1, const jem_conv_shape *s2)
{
    if (!p->fused) return 0;
    layout l;
    lay_out(&l, p, s1, s2);
    return l.total;
}

#if HAVE_X86
/* v = Y + bias (bias may be NULL) for the (H, W, C) image Y; h = v (when h
 * is not NULL); X (Hp, Wp, C) = act(v) (act NULL: v) at (1, 1), zero
 * border */
__attribute__((target("avx512f"))) static void act_pad(float *h, float *X, const float *Y, const float *bias, int C,
                                                       int H, int W, int Hp, int Wp, const jem_fact *act)
{
    jem_hwc_zero_border(X, C, H, W, Hp, Wp);
    static const jem_fact identity = {JEM_ACT_LRELU, 1.0f}; /* LeakyReLU of slope 1 */
    const jem_factv a = jem_factv_make(act ? act : &identity);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const size_t p = ((size_t)y * W + x) * C;
            float *xp = X + ((size_t)(y + 1) * Wp + x + 1) * C;
            for (int c0 = 0; c0 < C; c0 += 16) {
                __m512 v = _mm512_loadu_ps(Y + p + c0);
                if (bias) v = _mm512_add_ps(v, _mm512_loadu_ps(bias + c0));
                if (h) _mm512_storeu_ps(h + p + c0, v);
                _mm512_storeu_ps(xp + c0, jem_factv_apply(&a, v));
            }
        }
}

/* X (Hp, Wp, C) at (1, 1) = D * act'(h), D's pixel (y, x) at D + (y ld +
 * x) C, h (H, W, C); zero border */
__attribute__((target("avx512f"))) static void gate_pad(float *X, const float *D, int ld, const float *h, int C, int H,
                                                        int W, int Hp, int Wp, const jem_fact *act)
{
    jem_hwc_zero_border(X, C, H, W, Hp, Wp);
    const jem_factv a = jem_factv_make(act);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const float *d = D + ((size_t)y * ld + x) * C, *g = h + ((size_t)y * W + x) * C;
            float *xp = X + ((size_t)(y + 1) * Wp + x + 1) * C;
            for (int c0 = 0; c0 < C; c0 += 16)
                _mm512_storeu_ps(xp + c0, jem_factv_grad(&a, _mm512_loadu_ps(d + c0), _mm512_loadu_ps(g + c0)));
        }
}

typedef struct {
    const float *U1, *U2;      /* conv1's Winograd weights, conv2's Winograd or tap-major weights */
    const uint16_t *U1b, *U2b; /* instead, the same in bf16 (NULL: fp32) */
    const float *Wsc;          /* the 1x1 shortcut's (IC, OC) weights; NULL: identity (or bf16) */
    const uint16_t *Wscb;      /* the shortcut's in bf16: (IC / 2, OC, 2), back (OC / 2, IC, 2) */
} wts;

/* the transformed weights of the pass (back: the input gradient); bf16:
 * the Winograd convolutions' in bf16 */
static int weights(wts *t, const jem_block_desc *d, const layout *l, int back, int bf16)
{
    memset(t, 0, sizeof *t);
    if (bf16) {
        t->U1b = back ? jem_wino_weights_bf16(&d->wcb[2], d->w1, l->OC, l->IC, 1, l->m1)
                      : jem_wino_weights_bf16(&d->wcb[0], d->w1, l->IC, l->OC, 0, l->m1);
        if (!t->U1b) return -1;
    } else {
        t->U1 = back ? jem_wino_weights(d->wc1b, d->w1, l->OC, l->IC, 1, l->m1)
                     : jem_wino_weights(d->wc1f, d->w1, l->IC, l->OC, 0, l->m1);
        if (!t->U1) return -1;
    }
    if (bf16) {
        t->U2b = l->m2 ? jem_wino_weights_bf16(&d->wcb[back ? 3 : 1], d->w2, l->OC, l->OC, back, l->m2)
                       : jem_ind_weights_bf16(&d->wcb[back ? 3 : 1], d->w2, l->OC, l->OC, back);
        if (!t->U2b) return -1;
        if (d->wsc && !(t->Wscb = jem_pw_weights_bf16(&d->wcb[4 + back], d->wsc, l->IC, l->OC, back))) return -1;
        return 0;
    }
    t->U2 = l->m2 ? jem_wino_weights(back ? d->wc2b : d->wc2f, d->w2, l->OC, l->OC, back, l->m2)
                  : jem_ind_weights(back ? d->wc2b : d->wc2f, d->w2, l->OC, l->OC, back);
    if (!t->U2) return -1;
    if (!back && d->wsc && !(t->Wsc = jem_pw_weights(d->wcsc, d->wsc, l->IC, l->OC))) return -1;
    return 0;
}

/* a Winograd convolution of the block with weights U or, when Ub is not
 * NULL, in bf16 */
static void wino(float *Y, const float *Xp, const float *U, const uint16_t *Ub, int IC, int OC, int H, int W, int m,
                 float *ws)
{
    if (Ub) jem_wino_core_bf16(Y, Xp, Ub, IC, OC, H, W, m, ws);
    else jem_wino_core(Y, Xp, U, IC, OC, H, W, m, ws);
}

__attribute__((target("avx512f"))) static void fwd_img(float *h1, float *out, float *act_out, const float *x,
                                                       const jem_block_desc *d, const layout *l, const wts *t,
                                                       float *ws)
{
    const int IC = l->IC, OC = l->OC, H = l->H, W = l->W;
    float *X1 = ws + l->x1, *Y1 = ws + l->y1, *X2 = ws + l->x2, *Y2 = ws + l->y2;
    float *core = ws + l->core;
    uint16_t *xb = (uint16_t *)(ws + l->xb);
    const float *Xr = x;
    if (!d->in_hwc) {
        jem_hwc_pack(ws + l->xr, x, IC, H, W);
        Xr = ws + l->xr;
    }
    const jem_fact *act = &d->plan->act;
    act_pad(NULL, X1, Xr, NULL, IC, H, W, l->Hp1, l->Wp1, act);
    wino(Y1, X1, t->U1, t->U1b, IC, OC, H, W, l->m1, core);
    act_pad(h1, X2, Y1, d->b1, OC, H, W, l->Hp2, l->Wp2, act);
    if (l->m2) {
        wino(Y2, X2, t->U2, t->U2b, OC, OC, H, W, l->m2, core);
    } else {
        int *poff = (int *)(ws + l->poff);
        jem_ind_offsets(poff, l->P, l->OW, l->Wp2, d->s2.stride, OC);
        if (t->U2b) {
            jem_to_bf16(xb, X2, (size_t)l->Hp2 * l->Wp2 * OC);
            jem_ind_core_bf16(Y2, xb, t->U2b, poff, OC, OC, l->P, l->Wp2);
        } else {
            jem_ind_core(Y2, X2, t->U2, poff, OC, OC, l->P, l->Wp2);
        }
    }
    /* + the shortcut of x */
    if (t->Wsc || t->Wscb) {
        int *psc = (int *)(ws + l->poffsc);
        jem_ind_offsets(psc, l->P, l->OW, W, d->s2.stride, IC);
        if (t->Wscb) {
            jem_to_bf16(xb, Xr, (size_t)H * W * IC);
            jem_ind_pointwise_bf16(Y2, NULL, xb, psc, t->Wscb, IC, OC, l->P);
        } else {
            jem_ind_pointwise(Y2, NULL, Xr, psc, t->Wsc, IC, OC, l->P);
        }
    } else {
        for (size_t i = 0; i < (size_t)l->P * OC; i += 16)
            _mm512_storeu_ps(Y2 + i, _mm512_add_ps(_mm512_loadu_ps(Y2 + i), _mm512_loadu_ps(Xr + i)));
    }
    const float *bias = ws + l->bias;
    if (d->out_hwc) {
        for (size_t p = 0; p < (size_t)l->P * OC; p += OC)
            for (int c0 = 0; c0 < OC; c0 += 16)
                _mm512_storeu_ps(out + p + c0, _mm512_add_ps(_mm512_loadu_ps(Y2 + p + c0), _mm512_loadu_ps(bias + c0)));
    } else {
        const jem_conv_store st = {0, NULL, act_out, *act, NULL};
        jem_hwc_unpack(out, Y2, OC, l->OH, l->OW, 0, l->OW, bias, &st);
    }
}

/* Y (n floats) *= act'(X) */
__attribute__((target("avx512f"))) static void gate_hwc(float *Y, const float *X, size_t n, const jem_fact *act)
{
    const jem_factv a = jem_factv_make(act);
    for (size_t i = 0; i < n; i += 16)
        _mm512_storeu_ps(Y + i, jem_factv_grad(&a, _mm512_loadu_ps(Y + i), _mm512_loadu_ps(X + i)));
}

__attribute__((target("avx512f"))) static void bwd_img(float *da1, int want_w, const float *dout, const float *x,
                                                       const float *h1, const jem_block_desc *d, const layout *l,
                                                       const wts *t, float *ws)
{
    const int IC = l->IC, OC = l->OC, H = l->H, W = l->W, P = l->P;
    float *X1 = ws + l->x1, *D1 = ws + l->d1, *Y1 = ws + l->y1, *X2 = ws + l->x2, *Q = ws + l->q;
    float *core = ws + l->core;
    int *poff = (int *)(ws + l->poff), *psc = (int *)(ws + l->poffsc);
    uint16_t *xb = (uint16_t *)(ws + l->xb); /* bf16: the output gradient Yc once rounded */
    int ycb = 0;                             /* xb holds it */
    float *Xr = ws + l->xr;
    if (d->in_hwc && !(want_w && d->wsc)) Xr = (float *)x; /* only read (the weight kernel reads past the end) */
    else if (d->in_hwc) memcpy(Xr, x, sizeof(float) * (size_t)H * W * IC);
    else jem_hwc_pack(Xr, x, IC, H, W);
    if (d->wsc) jem_ind_offsets(psc, P, l->OW, W, d->s2.stride, IC);
    /* conv2's input gradient, (H, W, OC) at D2 with rows ld pixels apart;
     * Yc: the output gradient (P, OC) */
    const float *D2, *Yc;
    int ld;
    if (l->m2) {
        if (d->out_hwc) act_pad(NULL, Q, dout, NULL, OC, H, W, l->Hp2, l->Wp2, NULL); /* a copy */
        else jem_hwc_pack_padded(Q, dout, OC, H, W, l->Hp2, l->Wp2);
        wino(Y1, Q, t->U2, t->U2b, OC, OC, H, W, l->m2, core);
        D2 = Y1;
        ld = W;
        if (d->out_hwc) {
            Yc = dout;
        } else {
            float *y = ws + l->y2;
            for (int r = 0; r < H; r++)
                memcpy(y + (size_t)r * W * OC, Q + ((size_t)(r + 1) * l->Wp2 + 1) * OC, sizeof(float) * (size_t)W * OC);
            Yc = y;
        }
    } else {
        float *Dp = Q + jem_up16((size_t)P * OC);
        if (d->out_hwc) {
            Yc = dout;
        } else {
            jem_hwc_pack(Q, dout, OC, l->OH, l->OW);
            Yc = Q;
        }
        jem_ind_offsets(poff, P, l->OW, l->Wp2, d->s2.stride, OC);
        if (t->U2b) {
            jem_to_bf16(xb, Yc, (size_t)P * OC);
            ycb = 1;
            jem_ind_bwd_core_bf16(Dp, xb, t->U2b, poff, OC, OC, P, H, l->Wp2);
        } else {
            jem_ind_bwd_core(Dp, Yc, t->U2, poff, OC, OC, P, H, l->Wp2);
        }
        D2 = Dp + (size_t)(l->Wp2 + 1) * OC;
        ld = l->Wp2;
    }
    /* dh1 = D2 act'(h1), padded: conv1's input-gradient input and its
     * weight gradient's output gradient */
    const jem_fact *act = &d->plan->act;
    gate_pad(D1, D2, ld, h1, OC, H, W, l->Hp1, l->Wp1, act);
    if (da1) {
        /* conv1's input gradient times act'(x), plus the shortcut's */
        wino(Y1, D1, t->U1, t->U1b, OC, IC, H, W, l->m1, core);
        gate_hwc(Y1, Xr, (size_t)H * W * IC, act);
        if (t->Wscb) {
            if (!ycb) jem_to_bf16(xb, Yc, (size_t)P * OC);
            jem_ind_pointwise_bf16(Y1, psc, xb, NULL, t->Wscb, OC, IC, P);
        } else if (d->wsc) {
            jem_ind_pointwise(Y1, psc, Yc, NULL, d->wsc, OC, IC, P);
        } else {
            for (size_t i = 0; i < (size_t)P * OC; i += 16)
                _mm512_storeu_ps(Y1 + i, _mm512_add_ps(_mm512_loadu_ps(Y1 + i), _mm512_loadu_ps(Yc + i)));
        }
        if (d->in_hwc) memcpy(da1, Y1, sizeof(float) * (size_t)H * W * IC);
        else jem_hwc_unpack(da1, Y1, IC, H, W, 0, W, NULL, &jem_store_set);
    }
    if (want_w) {
        act_pad(NULL, X2, h1, NULL, OC, H, W, l->Hp2, l->Wp2, act);
        if (l->m2) {
            jem_wino_wgrad_core(ws + l->du2, X2, Yc, W, OC, OC, H, W, l->m2, core);
        } else {
            memset(X2 + (size_t)l->Hp2 * l->Wp2 * OC, 0, sizeof(float) * 16); /* the slack */
            jem_ind_wgrad_core(ws + l->du2, X2, Yc, poff, OC, OC, P, l->Wp2);
        }
        act_pad(NULL, X1, Xr, NULL, IC, H, W, l->Hp1, l->Wp1, act);
        jem_wino_wgrad_core(ws + l->du1, X1, D1 + (size_t)(l->Wp1 + 1) * OC, l->Wp1, IC, OC, H, W, l->m1, core);
        if (d->wsc) {
            /* the shortcut: dWsc (IC, OC) += sum_p x[psc[p]]^T dout[p] */
            float *g = ws + l->dsc;
            memset(Xr + (size_t)H * W * IC, 0, sizeof(float) * 16); /* the slack (Xr is ws's here) */
            jem_wgemm(Xr, psc, P, Yc, g, IC, OC);
            jem_hwc_add_colsum(g + (size_t)IC * OC, Yc, (size_t)P, OC);
        }
    }
}
#endif

int jem_block_forward(float *h1, float *out, float *act_out, const float *x, const jem_block_desc *d, float *ws)
{
#if HAVE_X86
    layout l;
    lay_out(&l, d->plan, &d->s1, &d->s2);
    if (!d->wsc && (l.IC != l.OC || d->s2.stride != 1)) return -1; /* an identity shortcut needs equal shapes */
    wts t;
    if (weights(&t, d, &l, 0, d->bf16 && jem_conv_settings_get()->bf16)) return -1;
    const size_t isz = (size_t)l.IC * l.H * l.W, hsz = (size_t)l.OC * l.H * l.W, osz = (size_t)l.OC * l.P;
#pragma omp parallel
    {
        float *tws = ws + (size_t)omp_get_thread_num() * l.total;
        for (int c = 0; c < l.OC; c++) tws[l.bias + c] = d->b2[c] + (d->bsc ? d->bsc[c] : 0.0f);
#pragma omp for schedule(static)
        for (int b = 0; b < d->s1.B; b++)
            fwd_img(h1 + b * hsz, out + b * osz, act_out ? act_out + b * osz : NULL, x + b * isz, d, &l, &t, tws);
    }
    return 0;
#else
    (void)h1;
    (void)out;
    (void)act_out;
    (void)x;
    (void)d;
    (void)ws;
    return -1;
#endif
}

int jem_block_backward(float *da1, float *dw1, float *db1, float *dw2, float *db2, float *dwsc, float *dbsc,
                       const float *dout, const float *x, const float *h1, const jem_block_desc *d, float *ws)
{
#if HAVE_X86
    layout l;
    lay_out(&l, d->plan, &d->s1, &d->s2);
    const int want_w = dw1 || db1 || dw2 || db2 || dwsc || dbsc;
    wts t; /* bf16 only for an input gradient alone: the weight gradients read it */
    if (weights(&t, d, &l, 1, d->bf16 && !want_w && jem_conv_settings_get()->bf16)) return -1;
    if (!d->wsc && (l.IC != l.OC || d->s2.stride != 1)) return -1;
    const size_t isz = (size_t)l.IC * l.H * l.W, hsz = (size_t)l.OC * l.H * l.W, osz = (size_t)l.OC * l.P;
    const size_t ndu1 = (size_t)(l.m1 + 2) * (l.m1 + 2) * l.IC * l.OC + l.OC;
    const size_t ndu2 = l.m2 ? (size_t)(l.m2 + 2) * (l.m2 + 2) * l.OC * l.OC + l.OC : (size_t)9 * l.OC * l.OC + l.OC;
    int nth = 1;
#pragma omp parallel
    {
#pragma omp single
        nth = omp_get_num_threads();
        float *tws = ws + (size_t)omp_get_thread_num() * l.total;
        if (want_w) {
            memset(tws + l.du1, 0, sizeof(float) * ndu1);
            memset(tws + l.du2, 0, sizeof(float) * ndu2);
            memset(tws + l.dsc, 0, sizeof(float) * ((size_t)l.IC * l.OC + l.OC));
        }
#pragma omp for schedule(static)
        for (int b = 0; b < d->s1.B; b++)
            bwd_img(da1 ? da1 + b * isz : NULL, want_w, dout + b * osz, x + b * isz, h1 + b * hsz, d, &l, &t, tws);
        if (want_w) {
            jem_wino_reduce(dw1, db1, ws + l.du1, l.total, nth, l.IC, l.OC, l.m1);
            if (l.m2) jem_wino_reduce(dw2, db2, ws + l.du2, l.total, nth, l.OC, l.OC, l.m2);
            else jem_ind_reduce(dw2, db2, ws + l.du2, l.total, nth, l.OC, l.OC, 9);
            if (d->wsc) jem_ind_reduce(dwsc, dbsc, ws + l.dsc, l.total, nth, l.IC, l.OC, 1);
        }
    }
    return 0;
#else
    (void)da1;
    (void)dw1;
    (void)db1;
    (void)dw2;
    (void)db2;
    (void)dwsc;
    (void)dbsc;
    (void)dout;
    (void)x;
    (void)h1;
    (void)d;
    (void)ws;
    return -1;
#endif
}
