/* The fast convolution kernels (Winograd F(4x4, 3x3) and F(2x2, 3x3),
 * indirect and direct AVX-512 3x3 where the CPU has them, im2col + sgemm
 * otherwise) against the naive reference, through the dispatcher and each
 * kernel on its own: the shapes the kernels take (channels multiples of 16
 * for Winograd and indirect, output channels a multiple of 8 for the direct
 * kernel) and awkward ones: odd heights and widths (partial tiles), widths
 * below, at and above a vector (16), a single row or column, batch 1 and
 * odd batches, tile counts below and above a Winograd block, accumulation
 * into a non-zero input gradient. */
#include "jem.h"
#include "nn/nn.h"
#include "nn/kern.h"
#include "nn/plan.h"
#include "test.h"
#include "gradcheck.h"

#include <omp.h>
#include <string.h>

/* One convolution's test data: input x, weights w, bias b and output
 * gradient d drawn from U(-1, 1) in that order from r (seeded by the
 * caller, who may draw more), two outputs and two input gradients to
 * compare, and a workspace for every thread. */
typedef struct {
    size_t nx, nw, no;
    float *x, *w, *b, *d, *o1, *o2, *g1, *g2, *ws;
} fixture;

static fixture fix_new(const jem_conv_shape *s, jem_rng *r)
{
    fixture f;
    const int OH = jem_conv_out(s->H, s->KH, s->stride, s->pad), OW = jem_conv_out(s->W, s->KW, s->stride, s->pad);
    f.nx = (size_t)s->B * s->IC * s->H * s->W;
    f.nw = (size_t)s->OC * s->IC * s->KH * s->KW;
    f.no = (size_t)s->B * s->OC * OH * OW;
    f.x = malloc(sizeof(float) * f.nx);
    f.w = malloc(sizeof(float) * f.nw);
    f.b = malloc(sizeof(float) * s->OC);
    f.d = malloc(sizeof(float) * f.no);
    f.o1 = malloc(sizeof(float) * f.no);
    f.o2 = malloc(sizeof(float) * f.no);
    f.g1 = malloc(sizeof(float) * f.nx);
    f.g2 = malloc(sizeof(float) * f.nx);
    f.ws = malloc(sizeof(float) * (jem_conv2d_ws(s) + 1) * omp_get_max_threads());
    fill_uniform(f.x, f.nx, r, -1, 1);
    fill_uniform(f.w, f.nw, r, -1, 1);
    fill_uniform(f.b, s->OC, r, -1, 1);
    fill_uniform(f.d, f.no, r, -1, 1);
    return f;
}

static void fix_free(fixture *f)
{
    free(f->x);
    free(f->w);
    free(f->b);
    free(f->d);
    free(f->o1);
    free(f->o2);
    free(f->g1);
    free(f->g2);
    free(f->ws);
}

static void check(int B, int IC, int H, int W, int OC)
{
    jem_conv_shape s = {B, IC, H, W, OC, 3, 3, 1, 1};
    jem_rng r;
    jem_rng_seed(&r, (uint64_t)(B * 1000 + IC * 100 + H * 10 + W), (uint64_t)OC);
    fixture f = fix_new(&s, &r);
    const size_t nx = f.nx, no = f.no;
    float *x = f.x, *w = f.w, *b = f.b, *d = f.d, *o1 = f.o1, *o2 = f.o2, *g1 = f.g1, *g2 = f.g2, *ws = f.ws;
    jem_conv2d_forward(o1, x, w, b, &s, NULL, ws);
    jem_conv2d_forward_ref(o2, x, w, b, &s);
    double e = rel_err_ff(o1, o2, no);
    ASSERT_MSG(e < 1e-5, "forward B%d %dx%dx%d->%d: err %.3g", B, IC, H, W, OC, e);
    /* input gradient accumulates on top of what is there */
    for (size_t i = 0; i < nx; i++) g1[i] = g2[i] = 0.5f;
    jem_conv2d_backward(g1, NULL, NULL, d, x, w, &s, NULL, ws);
    jem_conv2d_backward_ref(g2, NULL, NULL, d, x, w, &s);
    e = rel_err_ff(g1, g2, nx);
    ASSERT_MSG(e < 1e-5, "input gradient B%d %dx%dx%d->%d: err %.3g", B, IC, H, W, OC, e);
    /* NaN in the input reaches the output (nothing masks it away) */
    x[0] = NAN;
    jem_conv2d_forward(o1, x, w, b, &s, NULL, ws);
    ASSERT(isnan(o1[0]));
    fix_free(&f);
}

/* one kernel called on its own (kern.h): 0 direct, 1 Winograd F(2x2, 3x3),
 * 2 indirect with stride 2, 3 indirect with stride 1, 4 Winograd F(4x4, 3x3).
 * The tolerance is on the relative L2 error; F(4x4) has transform entries
 * up to 8 and 1/24 and rounds more. */
static double worst_f[5]; /* worst error by kernel */
static double worst_w[2]; /* worst Winograd weight-gradient error: F(2x2), F(4x4) */
static void check_kernel(int wino, int B, int IC, int H, int W, int OC)
{
    const double tol = wino == 4 ? 5e-6 : 2e-6;
    const int st = wino == 2 ? 2 : 1;
    jem_conv_shape s = {B, IC, H, W, OC, 3, 3, st, 1};
    jem_rng r;
    jem_rng_seed(&r, (uint64_t)(B * 1000 + IC * 100 + H * 10 + W), (uint64_t)OC + 7);
    fixture f = fix_new(&s, &r);
    const size_t nx = f.nx, nw = f.nw, no = f.no;
    float *x = f.x, *w = f.w, *b = f.b, *d = f.d, *o1 = f.o1, *o2 = f.o2, *g1 = f.g1, *g2 = f.g2, *ws = f.ws;
    const char *name = wino == 0   ? "direct"
                       : wino == 1 ? "winograd F(2x2)"
                       : wino == 4 ? "winograd F(4x4)"
                                   : "indirect";
    for (size_t i = 0; i < no; i++) o1[i] = NAN; /* every output must be written */
    const jem_kernel_ops *k = wino == 0                ? &jem_kernel_direct
                              : wino == 1 || wino == 4 ? &jem_kernel_winograd
                                                       : &jem_kernel_indirect;
    const int m = wino == 1 ? 2 : wino == 4 ? 4 : 0;
    int rc = k->forward(o1, x, w, b, &s, &jem_store_set, m, ws);
    ASSERT_MSG(rc == 0, "%s forward refused B%d %dx%dx%d->%d", name, B, IC, H, W, OC);
    jem_conv2d_forward_ref(o2, x, w, b, &s);
    double e = rel_err_ff(o1, o2, no);
    if (e > worst_f[wino]) worst_f[wino] = e;
    ASSERT_MSG(e < tol, "%s s%d forward B%d %dx%dx%d->%d: err %.3g", name, st, B, IC, H, W, OC, e);
    for (size_t i = 0; i < nx; i++) g1[i] = g2[i] = 0.5f - (float)(i % 3);
    rc = k->backward(g1, NULL, NULL, d, x, w, &s, &jem_store_add, m, ws);
    ASSERT_MSG(rc == 0, "%s input gradient refused", name);
    jem_conv2d_backward_ref(g2, NULL, NULL, d, x, w, &s);
    e = rel_err_ff(g1, g2, nx);
    if (e > worst_f[wino]) worst_f[wino] = e;
    ASSERT_MSG(e < tol, "%s s%d input gradient B%d %dx%dx%d->%d: err %.3g", name, st, B, IC, H, W, OC, e);
    if (wino == 1 || wino == 4) {
        float *dw1 = malloc(sizeof(float) * nw), *dw2 = malloc(sizeof(float) * nw);
        float *db1 = malloc(sizeof(float) * OC), *db2 = malloc(sizeof(float) * OC);
        for (size_t i = 0; i < nw; i++) dw1[i] = dw2[i] = 0.25f;
        for (int i = 0; i < OC; i++) db1[i] = db2[i] = -0.5f;
        ASSERT(k->backward(NULL, dw1, db1, d, x, w, &s, &jem_store_add, m, ws) == 0);
        jem_conv2d_backward_ref(NULL, dw2, db2, d, x, w, &s);
        e = rel_err_ff(dw1, dw2, nw);
        if (e > worst_w[m / 4]) worst_w[m / 4] = e;
        ASSERT_MSG(e < tol, "%s weight gradient B%d %dx%dx%d->%d: err %.3g", name, B, IC, H, W, OC, e);
        e = rel_err_ff(db1, db2, OC);
        ASSERT_MSG(e < 2e-6, "%s bias gradient: err %.3g", name, e);
        for (size_t i = 0; i < nw; i++) dw1[i] = 0.25f;
        ASSERT(k->backward(NULL, dw1, NULL, d, x, w, &s, &jem_store_add, m, ws) == 0);
        ASSERT_MSG(rel_err_ff(dw1, dw2, nw) < tol, "%s weight gradient without the bias", name);
        free(dw1);
        free(dw2);
        free(db1);
        free(db2);
    }
    if (wino >= 2) {
        /* weight and bias gradients accumulate on what is there, alone and
         * together with the input gradient */
        float *dw1 = malloc(sizeof(float) * nw), *dw2 = malloc(sizeof(float) * nw);
        float *db1 = malloc(sizeof(float) * OC), *db2 = malloc(sizeof(float) * OC);
        for (size_t i = 0; i < nw; i++) dw1[i] = dw2[i] = 0.25f;
        for (int i = 0; i < OC; i++) db1[i] = db2[i] = -0.5f;
        ASSERT(jem_kernel_indirect.backward(NULL, dw1, db1, d, x, w, &s, &jem_store_add, 0, ws) == 0);
        jem_conv2d_backward_ref(NULL, dw2, db2, d, x, w, &s);
        e = rel_err_ff(dw1, dw2, nw);
        ASSERT_MSG(e < 2e-6, "indirect s%d weight gradient B%d %dx%dx%d->%d: err %.3g", st, B, IC, H, W, OC, e);
        e = rel_err_ff(db1, db2, OC);
        ASSERT_MSG(e < 2e-6, "indirect s%d bias gradient: err %.3g", st, e);
        for (size_t i = 0; i < nx; i++) g1[i] = 0.0f;
        for (size_t i = 0; i < nw; i++) dw1[i] = 0.25f;
        ASSERT(jem_kernel_indirect.backward(g1, dw1, NULL, d, x, w, &s, &jem_store_add, 0, ws) == 0);
        for (size_t i = 0; i < nx; i++) g2[i] = 0.0f;
        jem_conv2d_backward_ref(g2, NULL, NULL, d, x, w, &s);
        ASSERT_MSG(rel_err_ff(g1, g2, nx) < 2e-6 && rel_err_ff(dw1, dw2, nw) < 2e-6,
                   "indirect s%d input and weight gradients together", st);
        free(dw1);
        free(dw2);
        free(db1);
        free(db2);
    }
    fix_free(&f);
}

/* The bf16 Winograd core (jem_wino_core_bf16) on one (H, W, IC) image
 * against the fp32 core. Integer data (x in [-3, 3], w in {-1, 0, 1})
 * with F(2x2): every transformed value is a small multiple of 1/2 and
 * every partial sum an exact float, so bf16 changes nothing and the
 * outputs must be equal bit for bit, which pins the pairing of input
 * channels and the layout of the rounded weights and tiles, for the
 * forward weights and the flipped ones of the input gradient. Uniform
 * data: the error against fp32 is that of bf16 operands (8-bit
 * significands, relative rounding up to 2^-9) in the transformed domain:
 * about 0.4 % of the outputs' L2 norm with F(2x2), and with F(4x4), whose
 * transforms add and cancel values up to 25 times larger, about 2.5 %;
 * bounded on both sides (a bf16 path that rounded nothing would pass
 * below). */
static void check_bf16_core(int m, int IC, int H, int W, int OC)
{
    jem_rng r;
    jem_rng_seed(&r, (uint64_t)(m * 1000 + IC + H * 7 + W), (uint64_t)OC);
    const int Hp = jem_wino_padded(H, m), Wp = jem_wino_padded(W, m);
    const size_t nxp = (size_t)Hp * Wp * IC, nw = (size_t)OC * IC * 9, ny = (size_t)H * W * OC;
    float *Xp = calloc(nxp, sizeof(float)), *w = malloc(sizeof(float) * nw);
    float *Y = malloc(sizeof(float) * ny), *Yb = malloc(sizeof(float) * ny);
    float *ws = malloc(sizeof(float) * jem_wino_core_ws(IC, OC, m) + 64);
    for (int pass = 0; pass < 3; pass++) {
        const int exact = pass < 2 && m == 2, flip = pass == 1;
        /* the image at (1, 1) of the zero-padded buffer */
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < IC; c++) {
                    const float u = (float)jem_rng_uniform(&r);
                    Xp[((size_t)(y + 1) * Wp + x + 1) * IC + c] = exact ? floorf(7.0f * u) - 3.0f : 2.0f * u - 1.0f;
                }
        for (size_t i = 0; i < nw; i++) {
            const float u = (float)jem_rng_uniform(&r);
            w[i] = exact ? floorf(3.0f * u) - 1.0f : 2.0f * u - 1.0f;
        }
        /* flip: the weights as the input gradient of a layer OC -> IC reads
         * them; the convolution then runs IC -> OC all the same */
        jem_wcache *c32 = NULL, *c16 = NULL;
        const float *U = jem_wino_weights(&c32, w, IC, OC, flip, m);
        const uint16_t *Ub = jem_wino_weights_bf16(&c16, w, IC, OC, flip, m);
        ASSERT(U && Ub);
        if (!U || !Ub) break;
        for (size_t i = 0; i < ny; i++) Yb[i] = NAN; /* every output must be written */
        jem_wino_core(Y, Xp, U, IC, OC, H, W, m, ws);
        jem_wino_core_bf16(Yb, Xp, Ub, IC, OC, H, W, m, ws);
        double e = rel_err_ff(Yb, Y, ny), dmax = 0;
        for (size_t i = 0; i < ny; i++) dmax = fmax(dmax, isnan(Yb[i]) ? INFINITY : fabs((double)Yb[i] - Y[i]));
        if (exact)
            ASSERT_MSG(dmax == 0, "bf16 F(2x2) %s %dx%dx%d->%d on integers: differs from fp32 by %.3g",
                       flip ? "flipped" : "forward", IC, H, W, OC, dmax);
        else
            ASSERT_MSG(m == 2 ? e > 1e-3 && e < 8e-3 : e > 5e-3 && e < 4e-2,
                       "bf16 F(%dx%d) %dx%dx%d->%d: error %.3g against fp32", m, m, IC, H, W, OC, e);
        if (!exact) printf("bf16 Winograd F(%dx%d) %dx%dx%d->%d: error %.2g against fp32\n", m, m, IC, H, W, OC, e);
        jem_wcache_free(c32);
        jem_wcache_free(c16);
    }
    free(Xp);
    free(w);
    free(Y);
    free(Yb);
    free(ws);
}

/* The bf16 indirect cores (3x3 at stride st, forward and input gradient)
 * and the 1x1 pointwise products (forward and input gradient) against
 * their fp32 cores: on integer data (x in [-3, 3], w in {-1, 0, 1}) every
 * product and sum is exact in both, so the outputs must be equal bit for
 * bit, which pins the pairing of channels in the rounded images and
 * weights; on uniform data the error is bf16's rounding of both
 * operands, about 0.3 % of the outputs' L2 norm. */
static void check_bf16_indirect(int IC, int H, int W, int OC, int st)
{
    jem_rng r;
    jem_rng_seed(&r, (uint64_t)(IC * 7 + H * 3 + W + st), (uint64_t)OC + 99);
    const int Wp = W + 2, OH = jem_conv_out(H, 3, st, 1), OW = jem_conv_out(W, 3, st, 1), P = OH * OW;
    const size_t nxp = (size_t)(H + 2) * Wp * IC, nw = (size_t)OC * IC * 9;
    float *Xp = calloc(nxp + 16, sizeof(float)), *w = malloc(sizeof(float) * nw);
    float *Yt = malloc(sizeof(float) * (size_t)P * OC), *X = malloc(sizeof(float) * (size_t)H * W * IC);
    float *Y = malloc(sizeof(float) * (size_t)P * OC), *Yb = malloc(sizeof(float) * (size_t)P * OC);
    float *D = malloc(sizeof(float) * nxp), *Db = malloc(sizeof(float) * nxp);
    float *G = malloc(sizeof(float) * (size_t)H * W * IC), *Gb = malloc(sizeof(float) * (size_t)H * W * IC);
    uint16_t *xb = malloc(sizeof(uint16_t) * (nxp + (size_t)P * OC + (size_t)H * W * IC + 16));
    int *poff = malloc(sizeof(int) * (size_t)P), *psc = malloc(sizeof(int) * (size_t)P);
    jem_ind_offsets(poff, P, OW, Wp, st, IC);
    jem_ind_offsets(psc, P, OW, W, st, IC);
    for (int exact = 1; exact >= 0; exact--) {
#define DRAW(v, lo3) (exact ? floorf((lo3)*jem_rng_uniform(&r)) - ((lo3)-1) / 2 : 2.0f * jem_rng_uniform(&r) - 1.0f)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < IC; c++) {
                    const float v = DRAW(v, 7);
                    Xp[((size_t)(y + 1) * Wp + x + 1) * IC + c] = v;
                    X[((size_t)y * W + x) * IC + c] = v;
                }
        for (size_t i = 0; i < nw; i++) w[i] = DRAW(w, 3);
        for (size_t i = 0; i < (size_t)P * OC; i++) Yt[i] = DRAW(Yt, 7);
#undef DRAW
        jem_wcache *c[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
        const float *Wk = jem_ind_weights(&c[0], w, IC, OC, 0), *Wb = jem_ind_weights(&c[1], w, IC, OC, 1);
        const uint16_t *Wkb = jem_ind_weights_bf16(&c[2], w, IC, OC, 0),
                       *Wbb = jem_ind_weights_bf16(&c[3], w, IC, OC, 1);
        /* the 1x1 convolution: the first tap's weights (OC, IC) as w (OC, IC, 1, 1) */
        float *w1 = malloc(sizeof(float) * (size_t)OC * IC);
        for (size_t i = 0; i < (size_t)OC * IC; i++) w1[i] = w[i * 9];
        const float *Wt = jem_pw_weights(&c[4], w1, IC, OC);
        const uint16_t *Wtb = jem_pw_weights_bf16(&c[5], w1, IC, OC, 0);
        jem_wcache *c6 = NULL;
        const uint16_t *Wtbb = jem_pw_weights_bf16(&c6, w1, IC, OC, 1);
        ASSERT(Wk && Wb && Wkb && Wbb && Wt && Wtb && Wtbb);
        double e[4], dmax[4] = {0, 0, 0, 0};
        /* 3x3 forward */
        jem_ind_core(Y, Xp, Wk, poff, IC, OC, P, Wp);
        jem_to_bf16(xb, Xp, nxp);
        jem_ind_core_bf16(Yb, xb, Wkb, poff, IC, OC, P, Wp);
        e[0] = rel_err_ff(Yb, Y, (size_t)P * OC);
        for (size_t i = 0; i < (size_t)P * OC; i++) dmax[0] = fmax(dmax[0], fabs((double)Yb[i] - Y[i]));
        /* 3x3 input gradient */
        jem_ind_bwd_core(D, Yt, Wb, poff, IC, OC, P, H, Wp);
        jem_to_bf16(xb, Yt, (size_t)P * OC);
        jem_ind_bwd_core_bf16(Db, xb, Wbb, poff, IC, OC, P, H, Wp);
        e[1] = rel_err_ff(Db, D, nxp);
        for (size_t i = 0; i < nxp; i++) dmax[1] = fmax(dmax[1], fabs((double)Db[i] - D[i]));
        /* 1x1 forward, added to Y's values */
        memcpy(Yb, Y, sizeof(float) * (size_t)P * OC);
        jem_ind_pointwise(Y, NULL, X, psc, Wt, IC, OC, P);
        jem_to_bf16(xb, X, (size_t)H * W * IC);
        jem_ind_pointwise_bf16(Yb, NULL, xb, psc, Wtb, IC, OC, P);
        e[2] = rel_err_ff(Yb, Y, (size_t)P * OC);
        for (size_t i = 0; i < (size_t)P * OC; i++) dmax[2] = fmax(dmax[2], fabs((double)Yb[i] - Y[i]));
        /* 1x1 input gradient into the strided pixels */
        memset(G, 0, sizeof(float) * (size_t)H * W * IC);
        memset(Gb, 0, sizeof(float) * (size_t)H * W * IC);
        jem_ind_pointwise(G, psc, Yt, NULL, w1, OC, IC, P);
        jem_to_bf16(xb, Yt, (size_t)P * OC);
        jem_ind_pointwise_bf16(Gb, psc, xb, NULL, Wtbb, OC, IC, P);
        e[3] = rel_err_ff(Gb, G, (size_t)H * W * IC);
        for (size_t i = 0; i < (size_t)H * W * IC; i++) dmax[3] = fmax(dmax[3], fabs((double)Gb[i] - G[i]));
        static const char *const what[4] = {"3x3 forward", "3x3 input gradient", "1x1 forward", "1x1 input gradient"};
        for (int k = 0; k < 4; k++) {
            if (exact)
                ASSERT_MSG(dmax[k] == 0, "bf16 indirect %s %dx%dx%d->%d s%d on integers: differs by %.3g", what[k], IC,
                           H, W, OC, st, dmax[k]);
            else
                ASSERT_MSG(e[k] > 1e-4 && e[k] < 1e-2, "bf16 indirect %s %dx%dx%d->%d s%d: error %.3g", what[k], IC, H,
                           W, OC, st, e[k]);
        }
        if (!exact)
            printf("bf16 indirect %dx%dx%d->%d s%d: error %.2g / %.2g (3x3 fwd / bwd), %.2g / %.2g (1x1)\n", IC, H, W,
                   OC, st, e[0], e[1], e[2], e[3]);
        for (int k = 0; k < 6; k++) jem_wcache_free(c[k]);
        jem_wcache_free(c6);
        free(w1);
    }
    free(Xp);
    free(w);
    free(Yt);
    free(X);
    free(Y);
    free(Yb);
    free(D);
    free(Db);
    free(G);
    free(Gb);
    free(xb);
    free(poff);
    free(psc);
}

/* The fused stores (jem_conv_store) through the dispatcher, on whichever
 * kernel the planner gives the shape: forward with accumulate and act_out,
 * input gradient set (not accumulated) and accumulated, each times
 * act'(gate), against the reference followed by separate passes. */
static void check_store(int B, int IC, int H, int W, int OC, int stride, float slope)
{
    jem_conv_shape s = {B, IC, H, W, OC, 3, 3, stride, 1};
    jem_rng r;
    jem_rng_seed(&r, (uint64_t)(B * 7 + IC * 5 + H * 3 + W), (uint64_t)OC + 11);
    fixture f = fix_new(&s, &r);
    const size_t nx = f.nx, nw = f.nw, no = f.no;
    float *x = f.x, *w = f.w, *b = f.b, *d = f.d, *o1 = f.o1, *o2 = f.o2, *g1 = f.g1, *g2 = f.g2, *ws = f.ws;
    float *a1 = malloc(sizeof(float) * no), *a2 = malloc(sizeof(float) * no), *gate = malloc(sizeof(float) * nx);
    fill_uniform(gate, nx, &r, -1, 1);
    const jem_conv_settings *set = jem_conv_settings_get();
    const char *k0 = jem_kernel_name(jem_conv_plan_layer(&s, JEM_PASS_FORWARD, 0, 0, set).kernel);
    const char *k1 = jem_kernel_name(jem_conv_plan_layer(&s, JEM_PASS_INPUT_GRAD, 0, 0, set).kernel);
    jem_fact act;
    ASSERT(jem_fact_of(JEM_ACT_LRELU, slope, &act));
    /* forward: out = conv + bias (set) or old + conv + bias (accumulated),
     * and act_out = LeakyReLU(out) */
    float *t = malloc(sizeof(float) * no);
    jem_conv2d_forward_ref(t, x, w, b, &s);
    for (int acc = 0; acc < 2; acc++) {
        fill_uniform(o1, no, &r, -1, 1);
        for (size_t i = 0; i < no; i++) o2[i] = acc ? o1[i] : 0.0f;
        jem_conv_store st = {acc, NULL, a1, act, NULL};
        jem_conv2d_forward(o1, x, w, b, &s, &st, ws);
        for (size_t i = 0; i < no; i++) {
            o2[i] += t[i];
            a2[i] = o2[i] > 0.0f ? o2[i] : slope * o2[i];
        }
        ASSERT_MSG(rel_err_ff(o1, o2, no) < 1e-5 && rel_err_ff(a1, a2, no) < 1e-5,
                   "%s forward, %s + act_out, B%d %dx%dx%d->%d s%d", k0, acc ? "accumulated" : "set", B, IC, H, W, OC,
                   stride);
    }
    /* input gradient, set and accumulated, times act'(gate) */
    for (int acc = 0; acc < 2; acc++) {
        for (size_t i = 0; i < nx; i++) g1[i] = g2[i] = acc ? 0.5f - (float)(i % 3) : NAN;
        if (!acc)
            for (size_t i = 0; i < nx; i++) g2[i] = 0.0f;
        jem_conv_store sb = {acc, gate, NULL, act, NULL};
        jem_conv2d_backward(g1, NULL, NULL, d, x, w, &s, &sb, ws);
        jem_conv2d_backward_ref(g2, NULL, NULL, d, x, w, &s);
        for (size_t i = 0; i < nx; i++) g2[i] *= gate[i] > 0.0f ? 1.0f : slope;
        ASSERT_MSG(rel_err_ff(g1, g2, nx) < 1e-5, "%s input gradient, %s, gated, B%d %dx%dx%d->%d s%d", k1,
                   acc ? "accumulated" : "set", B, IC, H, W, OC, stride);
    }
    /* the transformed-weight cache: reused while the weights are the same,
     * redone when one weight changes (forward and input gradient) */
    jem_wcache *wf = NULL, *wb = NULL;
    for (int round = 0; round < 3; round++) {
        if (round == 2) w[nw / 2] += 0.75f;
        jem_conv_store sf = {0, NULL, NULL, act, &wf}, sb = {0, NULL, NULL, act, &wb};
        jem_conv2d_forward(o1, x, w, b, &s, &sf, ws);
        jem_conv2d_forward_ref(o2, x, w, b, &s);
        jem_conv2d_backward(g1, NULL, NULL, d, x, w, &s, &sb, ws);
        for (size_t i = 0; i < nx; i++) g2[i] = 0.0f;
        jem_conv2d_backward_ref(g2, NULL, NULL, d, x, w, &s);
        ASSERT_MSG(rel_err_ff(o1, o2, no) < 1e-5 && rel_err_ff(g1, g2, nx) < 1e-5,
                   "%s/%s with a weight cache, round %d, B%d %dx%dx%d->%d s%d", k0, k1, round, B, IC, H, W, OC, stride);
    }
    jem_wcache_free(wf);
    jem_wcache_free(wb);
    free(t);
    free(a1);
    free(a2);
    free(gate);
    fix_free(&f);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_kernels");
    const jem_conv_settings *set = jem_conv_settings_get();
    ASSERT_OK(jem_conv_settings_check());
    /* what the dispatcher may use under this process's settings, and what
     * the CPU runs (each kernel on its own, whatever the settings) */
    const int cpu = set->avx512, avx = cpu && set->kernels != JEM_KERNELS_GEMM;
    const int wino = avx && set->kernels == JEM_KERNELS_AUTO;
    printf("AVX-512 kernels %s; in the dispatcher: %s\n", cpu ? "tested" : "not available here",
           wino  ? "Winograd, indirect, direct"
           : avx ? "indirect, direct (JEM_KERNELS=direct)"
                 : "GEMM only");
    check(1, 8, 28, 28, 16);
    check(3, 16, 14, 14, 32);
    check(2, 3, 7, 7, 8);
    check(2, 8, 5, 17, 24);
    check(1, 5, 1, 40, 8);
    check(1, 8, 40, 1, 16);
    check(5, 16, 16, 16, 8);
    check(2, 24, 3, 33, 40);
    check(1, 7, 6, 6, 12); /* OC not a multiple of 8: the GEMM path */
    /* fused stores on every path: Winograd, indirect, direct, GEMM (3x3 and
     * a channel count no fast kernel takes), LeakyReLU and ReLU slopes */
    check_store(2, 32, 28, 28, 64, 1, 0.2f);
    check_store(1, 16, 9, 7, 16, 1, 0.0f);
    check_store(2, 64, 14, 14, 64, 2, 0.2f);
    check_store(1, 16, 7, 9, 32, 2, 0.0f);
    check_store(2, 8, 10, 6, 16, 1, 0.2f);
    check_store(2, 7, 6, 5, 12, 1, 0.2f);
    check_store(1, 3, 7, 7, 5, 2, 0.1f);
    check(2, 32, 28, 28, 64); /* the reference model's layers */
    check(2, 64, 14, 14, 128);
    /* the tile rule (the planner's, with the tile left to it): 4x4 where
     * they pad little (28 x 28, 8 x 12), 2x2 where they would pad a lot
     * (14 x 14, 7 x 7) */
    const jem_conv_settings autoset = {1, JEM_KERNELS_AUTO, 0, 1, 0};
    jem_conv_shape t28 = {1, 16, 28, 28, 16, 3, 3, 1, 1}, t14 = t28, t7 = t28, t812 = t28;
    t14.H = t14.W = 14;
    t7.H = t7.W = 7;
    t812.H = 8;
    t812.W = 12;
    ASSERT(jem_conv_plan_layer(&t28, JEM_PASS_FORWARD, 0, 0, &autoset).tile == 4 &&
           jem_conv_plan_layer(&t812, JEM_PASS_FORWARD, 0, 0, &autoset).tile == 4);
    ASSERT(jem_conv_plan_layer(&t14, JEM_PASS_FORWARD, 0, 0, &autoset).tile == 2 &&
           jem_conv_plan_layer(&t7, JEM_PASS_FORWARD, 0, 0, &autoset).tile == 2);
    if (set->bf16) {
        /* every bf16 product kernel (OC 16, 32, 64 and 128), partial tiles
         * and blocks, both tiles */
        check_bf16_core(2, 16, 28, 28, 32);
        check_bf16_core(2, 32, 14, 14, 64);
        check_bf16_core(2, 64, 7, 9, 128);
        check_bf16_core(2, 16, 5, 5, 16);
        check_bf16_core(4, 16, 28, 28, 32);
        check_bf16_core(4, 32, 13, 11, 64);
        check_bf16_core(4, 48, 8, 8, 16);
        check_bf16_indirect(32, 14, 14, 64, 2);
        check_bf16_indirect(64, 7, 7, 128, 2);
        check_bf16_indirect(16, 9, 5, 48, 2);
        check_bf16_indirect(32, 6, 6, 32, 1);
    } else {
        printf("bf16 products: not tested (this CPU has no AVX512-BF16)\n");
    }
    if (cpu) {
        /* Winograd F(2x2, 3x3): all three product kernels (OC 16, 32, 64
         * and 128), partial tiles and blocks, one image and several */
        check_kernel(1, 1, 16, 28, 28, 32);
        check_kernel(1, 2, 32, 28, 28, 64);
        check_kernel(1, 3, 64, 14, 14, 128);
        check_kernel(1, 2, 32, 14, 14, 16);
        check_kernel(1, 1, 16, 7, 7, 48);
        check_kernel(1, 2, 16, 5, 9, 32);
        check_kernel(1, 1, 16, 1, 1, 16);
        check_kernel(1, 1, 32, 1, 33, 16);
        check_kernel(1, 3, 16, 13, 1, 64);
        check_kernel(1, 1, 16, 11, 11, 16); /* 36 tiles: one full block and a partial one */
        /* F(4x4, 3x3) on the same shapes: partial 4x4 tiles, the balanced
         * blocks (49 tiles on 28x28), every product kernel and its tail */
        check_kernel(4, 1, 16, 28, 28, 32);
        check_kernel(4, 2, 32, 28, 28, 64);
        check_kernel(4, 3, 64, 14, 14, 128);
        check_kernel(4, 2, 32, 14, 14, 16);
        check_kernel(4, 1, 16, 7, 7, 48);
        check_kernel(4, 2, 16, 5, 9, 32);
        check_kernel(4, 1, 16, 1, 1, 16);
        check_kernel(4, 1, 32, 1, 33, 16);
        check_kernel(4, 3, 16, 13, 1, 64);
        check_kernel(4, 1, 16, 22, 23, 16); /* 36 tiles */
        check_kernel(4, 1, 16, 40, 36, 32); /* 90 tiles: four blocks */
        printf("worst relative error: F(2x2, 3x3) %.3g, F(4x4, 3x3) %.3g; weight gradient %.3g, %.3g\n", worst_f[1],
               worst_f[4], worst_w[0], worst_w[1]);
        /* shapes and tiles it refuses, writing nothing */
        jem_conv_shape bad = {1, 8, 8, 8, 16, 3, 3, 1, 1};
        ASSERT(jem_kernel_winograd.ws(&bad) == 0 &&
               jem_kernel_winograd.forward(NULL, NULL, NULL, NULL, &bad, &jem_store_set, 4, NULL) == -1);
        ASSERT(jem_conv_plan_layer(&bad, JEM_PASS_FORWARD, 0, 0, &autoset).kernel != JEM_KERNEL_WINOGRAD);
        bad.IC = 16;
        bad.stride = 2;
        ASSERT(jem_kernel_winograd.backward(NULL, NULL, NULL, NULL, NULL, NULL, &bad, &jem_store_add, 4, NULL) == -1);
        ASSERT(jem_conv_plan_layer(&bad, JEM_PASS_FORWARD, 0, 0, &autoset).kernel != JEM_KERNEL_WINOGRAD);
        bad.stride = 1;
        ASSERT(jem_kernel_winograd.forward(NULL, NULL, NULL, NULL, &bad, &jem_store_set, 3, NULL) == -1);
        /* indirect: the model's strided layers, odd sizes, every vector
         * count (OC / IC multiples of 64, 32, 16), pixel counts not a
         * multiple of the kernel's 6, and stride 1 */
        check_kernel(2, 2, 64, 28, 28, 64);
        check_kernel(2, 3, 128, 14, 14, 128);
        check_kernel(2, 1, 32, 15, 9, 16);
        check_kernel(2, 2, 16, 7, 6, 32);
        check_kernel(2, 1, 16, 1, 1, 16);
        check_kernel(2, 1, 48, 4, 13, 80);
        check_kernel(3, 2, 32, 11, 7, 64);
        check_kernel(3, 1, 16, 3, 3, 16);
        jem_conv_shape ibad = {1, 16, 8, 8, 24, 3, 3, 2, 1};
        ASSERT(jem_kernel_indirect.ws(&ibad) == 0 &&
               jem_kernel_indirect.forward(NULL, NULL, NULL, NULL, &ibad, &jem_store_set, 0, NULL) == -1);
        check_kernel(0, 2, 32, 28, 28, 64);
        check_kernel(0, 1, 16, 5, 9, 8);
        check_kernel(0, 2, 8, 17, 3, 16);
    }
    if (avx) {
        /* what the dispatcher runs for the model's layer kinds under this
         * process's settings */
        jem_conv_shape c1 = {64, 32, 28, 28, 64, 3, 3, 1, 1}, c2 = {64, 64, 28, 28, 64, 3, 3, 2, 1};
        jem_conv_shape sc = {64, 32, 28, 28, 64, 1, 1, 2, 0}, stem = {64, 1, 28, 28, 16, 3, 3, 1, 1};
        const jem_conv_pass F = JEM_PASS_FORWARD, I = JEM_PASS_INPUT_GRAD, W = JEM_PASS_WEIGHT_GRAD;
#define KERNEL(s, pass) jem_conv_plan_layer(&(s), (pass), 0, 0, set).kernel
        if (wino) ASSERT(KERNEL(c1, F) == JEM_KERNEL_WINOGRAD && KERNEL(c1, I) == JEM_KERNEL_WINOGRAD);
        ASSERT(KERNEL(c1, W) == (wino ? JEM_KERNEL_WINOGRAD : JEM_KERNEL_INDIRECT));
        ASSERT(KERNEL(c2, F) == JEM_KERNEL_INDIRECT && KERNEL(c2, W) == JEM_KERNEL_INDIRECT);
        ASSERT(KERNEL(c2, I) == JEM_KERNEL_INDIRECT && KERNEL(sc, F) == JEM_KERNEL_GEMM);
        ASSERT(KERNEL(stem, F) == JEM_KERNEL_DIRECT && KERNEL(stem, I) == JEM_KERNEL_GEMM);
#undef KERNEL
    }
    return t_finish();
}
