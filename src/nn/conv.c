/* conv2d: the dispatcher, which runs each pass on the kernel the planner
 * (plan.c) chooses, and the portable kernel: im2col + cblas_sgemm per
 * image, images split across threads, 1x1 stride-1 unpadded convolutions
 * using the input directly as the column matrix. The transformed-weight
 * cache, and naive reference versions at the end. */
#include "nn/nn.h"
#include "nn/kern.h"
#include "nn/plan.h"

#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <cblas.h>

static int is_pointwise(const jem_conv_shape *s) { return s->KH == 1 && s->KW == 1 && s->stride == 1 && s->pad == 0; }

size_t jem_conv2d_ws(const jem_conv_shape *s)
{
    int OH = jem_conv_out(s->H, s->KH, s->stride, s->pad);
    int OW = jem_conv_out(s->W, s->KW, s->stride, s->pad);
    size_t col = is_pointwise(s) ? 0 : (size_t)s->IC * s->KH * s->KW * OH * OW;
    size_t dw = (size_t)s->OC * s->IC * s->KH * s->KW + (size_t)s->OC;
    size_t n = col + dw, wg = jem_kernel_winograd.ws(s), wi = jem_kernel_indirect.ws(s);
    if (wg > n) n = wg;
    if (wi > n) n = wi;
    /* round to 16 floats so per-thread regions stay 64-byte aligned */
    return (n + 15) & ~(size_t)15;
}

/* col (IC*KH*KW, OH*OW) from one image inp (IC, H, W) */
static void im2col(float *col, const float *inp, const jem_conv_shape *s, int OH, int OW)
{
    const int H = s->H, W = s->W, st = s->stride, pad = s->pad;
    for (int ic = 0; ic < s->IC; ic++) {
        const float *ip = inp + (size_t)ic * H * W;
        for (int kh = 0; kh < s->KH; kh++) {
            for (int kw = 0; kw < s->KW; kw++) {
                float *cp = col + ((size_t)(ic * s->KH + kh) * s->KW + kw) * OH * OW;
                for (int oh = 0; oh < OH; oh++) {
                    int ih = oh * st - pad + kh;
                    float *crow = cp + (size_t)oh * OW;
                    if (ih < 0 || ih >= H) {
                        memset(crow, 0, sizeof(float) * OW);
                        continue;
                    }
                    const float *irow = ip + (size_t)ih * W;
                    if (st == 1) {
                        int iw0 = kw - pad;
                        for (int ow = 0; ow < OW; ow++) {
                            int iw = iw0 + ow;
                            crow[ow] = (iw >= 0 && iw < W) ? irow[iw] : 0.0f;
                        }
                    } else {
                        for (int ow = 0; ow < OW; ow++) {
                            int iw = ow * st - pad + kw;
                            crow[ow] = (iw >= 0 && iw < W) ? irow[iw] : 0.0f;
                        }
                    }
                }
            }
        }
    }
}

/* dinp (IC, H, W) += scatter of col (IC*KH*KW, OH*OW) */
static void col2im(float *dinp, const float *col, const jem_conv_shape *s, int OH, int OW)
{
    const int H = s->H, W = s->W, st = s->stride, pad = s->pad;
    for (int ic = 0; ic < s->IC; ic++) {
        float *ip = dinp + (size_t)ic * H * W;
        for (int kh = 0; kh < s->KH; kh++) {
            for (int kw = 0; kw < s->KW; kw++) {
                const float *cp = col + ((size_t)(ic * s->KH + kh) * s->KW + kw) * OH * OW;
                for (int oh = 0; oh < OH; oh++) {
                    int ih = oh * st - pad + kh;
                    if (ih < 0 || ih >= H) continue;
                    float *irow = ip + (size_t)ih * W;
                    const float *crow = cp + (size_t)oh * OW;
                    for (int ow = 0; ow < OW; ow++) {
                        int iw = ow * st - pad + kw;
                        if (iw >= 0 && iw < W) irow[iw] += crow[ow];
                    }
                }
            }
        }
    }
}

struct jem_wcache {
    uint64_t tag;
    size_t nw, nu;
    float *w, *u;
};

void jem_wcache_free(jem_wcache *c)
{
    if (!c) return;
    free(c->w);
    free(c->u);
    free(c);
}

float *jem_wcache_get(jem_wcache **slot, const float *w, size_t nw, uint64_t tag, size_t nu, int *fresh)
{
    jem_wcache *c = *slot;
    if (c && c->tag == tag && c->nw == nw && c->nu == nu && !memcmp(c->w, w, sizeof(float) * nw)) {
        *fresh = 0;
        return c->u;
    }
    if (!c) {
        if (!(c = calloc(1, sizeof *c))) return NULL;
        *slot = c;
    }
    if (c->nw != nw || c->nu != nu || !c->w) {
        free(c->w);
        free(c->u);
        c->w = malloc(sizeof(float) * nw);
        c->u = malloc(sizeof(float) * nu);
        c->nw = c->nu = 0;
        if (!c->w || !c->u) return NULL;
        c->nw = nw;
        c->nu = nu;
    }
    memcpy(c->w, w, sizeof(float) * nw);
    c->tag = tag;
    *fresh = 1;
    return c->u;
}

const jem_conv_store jem_store_set = {0, NULL, NULL, {JEM_ACT_RELU, 0.0f}, NULL},
                     jem_store_add = {1, NULL, NULL, {JEM_ACT_RELU, 0.0f}, NULL};

static int plain(const jem_conv_store *st, int accumulate)
{
    return st->accumulate == accumulate && !st->gate && !st->act_out;
}

/* ---- the GEMM kernel: takes every shape */

static int gemm_forward(float *out, const float *inp, const float *w, const float *bias, const jem_conv_shape *s,
                        const jem_conv_store *st, int tile, float *ws)
{
    (void)tile;
    const int OH = jem_conv_out(s->H, s->KH, s->stride, s->pad);
    const int OW = jem_conv_out(s->W, s->KW, s->stride, s->pad);
    const int M = s->OC, N = OH * OW, K = s->IC * s->KH * s->KW;
    const size_t in_sz = (size_t)s->IC * s->H * s->W, out_sz = (size_t)M * N;
    const size_t wsz = jem_conv2d_ws(s);
    const int pw = is_pointwise(s);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < s->B; b++) {
        float *col = ws + (size_t)omp_get_thread_num() * wsz;
        const float *x = inp + b * in_sz;
        float *o = out + b * out_sz;
        if (!pw) im2col(col, x, s, OH, OW);
        const float *cm = pw ? x : col;
        if (bias) {
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++)
                    o[(size_t)m * N + n] = st->accumulate ? o[(size_t)m * N + n] + bias[m] : bias[m];
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, w, K, cm, N,
                    bias || st->accumulate ? 1.0f : 0.0f, o, N);
    }
    jem_store_finish(out, (size_t)s->B * out_sz, st);
    return 0;
}

static int gemm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                         const jem_conv_shape *s, const jem_conv_store *st, int tile, float *ws)
{
    (void)tile;
    const int OH = jem_conv_out(s->H, s->KH, s->stride, s->pad);
    const int OW = jem_conv_out(s->W, s->KW, s->stride, s->pad);
    const int M = s->OC, N = OH * OW, K = s->IC * s->KH * s->KW;
    const size_t in_sz = (size_t)s->IC * s->H * s->W, out_sz = (size_t)M * N;
    const size_t wsz = jem_conv2d_ws(s);
    const size_t colsz = is_pointwise(s) ? 0 : (size_t)K * N;
    const int pw = is_pointwise(s);
    const int want_w = dw != NULL || db != NULL;
    if (!dinp && !want_w) return 0;
    /* the input gradient accumulates into dinp; the rest of the store is
     * a pass at the end */
    float *dfin = dinp && !plain(st, 1) ? dinp : NULL;
    if (dinp && !st->accumulate) memset(dinp, 0, sizeof(float) * (size_t)s->B * in_sz);
    int nth = 1;
#pragma omp parallel
    {
#pragma omp single
        nth = omp_get_num_threads();
        const int t = omp_get_thread_num();
        float *col = ws + (size_t)t * wsz;
        float *tdw = col + colsz;         /* (OC, K) this thread's dw */
        float *tdb = tdw + (size_t)M * K; /* (OC) this thread's db */
        if (want_w) memset(tdw, 0, sizeof(float) * ((size_t)M * K + M));
#pragma omp for schedule(static)
        for (int b = 0; b < s->B; b++) {
            const float *go = dout + b * out_sz;
            if (want_w) {
                const float *cm = inp + b * in_sz;
                if (!pw) {
                    im2col(col, cm, s, OH, OW);
                    cm = col;
                }
                if (dw) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, K, N, 1.0f, go, N, cm, N, 1.0f, tdw, K);
                if (db)
                    for (int m = 0; m < M; m++) {
                        float acc = 0.0f;
                        for (int n = 0; n < N; n++) acc += go[(size_t)m * N + n];
                        tdb[m] += acc;
                    }
            }
            if (dinp) {
                float *gi = dinp + b * in_sz;
                if (pw) {
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, M, 1.0f, w, K, go, N, 1.0f, gi, N);
                } else {
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, M, 1.0f, w, K, go, N, 0.0f, col, N);
                    col2im(gi, col, s, OH, OW);
                }
            }
        }
    }
    /* reduce the per-thread weight gradients in a fixed order (deterministic
     * for a given thread count) */
    if (want_w) {
        const size_t n = (size_t)M * K;
        for (int t = 0; t < nth; t++) {
            const float *tdw = ws + (size_t)t * wsz + colsz;
            if (dw)
                for (size_t i = 0; i < n; i++) dw[i] += tdw[i];
            if (db)
                for (int m = 0; m < M; m++) db[m] += tdw[n + m];
        }
    }
    if (dfin) jem_store_finish(dfin, (size_t)s->B * in_sz, st);
    return 0;
}

/* ---- the dispatcher */

static const jem_kernel_ops kernel_gemm = {gemm_forward, gemm_backward, NULL};

/* the functions of a planned kernel (the pointwise kernel only runs
 * inside fused blocks) */
static const jem_kernel_ops *ops(jem_kernel k)
{
    switch (k) {
    case JEM_KERNEL_WINOGRAD: return &jem_kernel_winograd;
    case JEM_KERNEL_INDIRECT: return &jem_kernel_indirect;
    case JEM_KERNEL_DIRECT: return &jem_kernel_direct;
    default: return &kernel_gemm;
    }
}

void jem_conv2d_forward(float *out, const float *inp, const float *w, const float *bias, const jem_conv_shape *s,
                        const jem_conv_store *st, float *ws)
{
    if (!st) st = &jem_store_set;
    const jem_conv_plan p = jem_conv_plan_layer(s, JEM_PASS_FORWARD, st->accumulate, 0, jem_conv_settings_get());
    /* a kernel that cannot run (out of memory) leaves the pass to GEMM */
    if (ops(p.kernel)->forward(out, inp, w, bias, s, st, p.tile, ws)) gemm_forward(out, inp, w, bias, s, st, 0, ws);
}

void jem_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                         const jem_conv_shape *s, const jem_conv_store *st, float *ws)
{
    if (!st) st = &jem_store_add;
    const int want_w = dw != NULL || db != NULL;
    if (!dinp && !want_w) return;
    const jem_conv_settings *set = jem_conv_settings_get();
    const jem_conv_plan pi = jem_conv_plan_layer(s, JEM_PASS_INPUT_GRAD, 0, 0, set);
    const jem_conv_plan pw = jem_conv_plan_layer(s, JEM_PASS_WEIGHT_GRAD, 0, 0, set);
    if (dinp && want_w && pi.kernel == pw.kernel && pi.tile == pw.tile) {
        /* both on one kernel, in one call */
        if (ops(pi.kernel)->backward(dinp, dw, db, dout, inp, w, s, st, pi.tile, ws))
            gemm_backward(dinp, dw, db, dout, inp, w, s, st, 0, ws);
        return;
    }
    if (dinp && ops(pi.kernel)->backward(dinp, NULL, NULL, dout, inp, w, s, st, pi.tile, ws))
        gemm_backward(dinp, NULL, NULL, dout, inp, w, s, st, 0, ws);
    if (want_w && ops(pw.kernel)->backward(NULL, dw, db, dout, inp, w, s, st, pw.tile, ws))
        gemm_backward(NULL, dw, db, dout, inp, w, s, st, 0, ws);
}

/* ---- naive references ---- */

void jem_conv2d_forward_ref(float *out, const float *inp, const float *w, const float *bias, const jem_conv_shape *s)
{
    const int OH = jem_conv_out(s->H, s->KH, s->stride, s->pad);
    const int OW = jem_conv_out(s->W, s->KW, s->stride, s->pad);
    for (int b = 0; b < s->B; b++)
        for (int oc = 0; oc < s->OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double acc = bias ? bias[oc] : 0.0;
                    for (int ic = 0; ic < s->IC; ic++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                int ih = oh * s->stride - s->pad + kh;
                                int iw = ow * s->stride - s->pad + kw;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                                acc += (double)inp[(((size_t)b * s->IC + ic) * s->H + ih) * s->W + iw] *
                                       w[(((size_t)oc * s->IC + ic) * s->KH + kh) * s->KW + kw];
                            }
                    out[(((size_t)b * s->OC + oc) * OH + oh) * OW + ow] = (float)acc;
                }
}

void jem_conv2d_backward_ref(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                             const jem_conv_shape *s)
{
    const int OH = jem_conv_out(s->H, s->KH, s->stride, s->pad);
    const int OW = jem_conv_out(s->W, s->KW, s->stride, s->pad);
    for (int b = 0; b < s->B; b++)
        for (int oc = 0; oc < s->OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    float g = dout[(((size_t)b * s->OC + oc) * OH + oh) * OW + ow];
                    if (db) db[oc] += g;
                    for (int ic = 0; ic < s->IC; ic++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                int ih = oh * s->stride - s->pad + kh;
                                int iw = ow * s->stride - s->pad + kw;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                                size_t ii = (((size_t)b * s->IC + ic) * s->H + ih) * s->W + iw;
                                size_t wi = (((size_t)oc * s->IC + ic) * s->KH + kh) * s->KW + kw;
                                if (dinp) dinp[ii] += g * w[wi];
                                if (dw) dw[wi] += g * inp[ii];
                            }
                }
}
