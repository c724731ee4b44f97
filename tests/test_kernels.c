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
    const jem_conv_settings autoset = {1, JEM_KERNELS_AUTO, 0, 1};
    jem_conv_shape t28 = {1, 16, 28, 28, 16, 3, 3, 1, 1}, t14 = t28, t7 = t28, t812 = t28;
    t14.H = t14.W = 14;
    t7.H = t7.W = 7;
    t812.H = 8;
    t812.W = 12;
    ASSERT(jem_conv_plan_layer(&t28, JEM_PASS_FORWARD, 0, 0, &autoset).tile == 4 &&
           jem_conv_plan_layer(&t812, JEM_PASS_FORWARD, 0, 0, &autoset).tile == 4);
    ASSERT(jem_conv_plan_layer(&t14, JEM_PASS_FORWARD, 0, 0, &autoset).tile == 2 &&
           jem_conv_plan_layer(&t7, JEM_PASS_FORWARD, 0, 0, &autoset).tile == 2);
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
