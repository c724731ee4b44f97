/* Layers: fast forward against the naive reference; every backward (to the
 * parameters and to the input) against central finite differences of the
 * same function evaluated in double precision. */
#include "jem.h"
#include "nn/nn.h"
#include "test.h"
#include "gradcheck.h"

#include <omp.h>

#define FD_EPS   1e-6
#define TOL_FWD  1e-5
#define TOL_GRAD 1e-4

/* central difference of loss(ctx) with respect to x[i] */
typedef double (*loss_fn)(void *ctx);
static double fd(loss_fn f, void *ctx, double *x, size_t i)
{
    double keep = x[i];
    x[i] = keep + FD_EPS;
    double lp = f(ctx);
    x[i] = keep - FD_EPS;
    double lm = f(ctx);
    x[i] = keep;
    return (lp - lm) / (2 * FD_EPS);
}

/* ------------------------------------------------------------------ conv */

typedef struct {
    jem_conv_shape s;
    double *x, *w, *b, *r, *out;
    size_t nout;
} conv_ctx;

static double conv_loss(void *p)
{
    conv_ctx *c = p;
    conv_d(c->out, c->x, c->w, c->b, &c->s);
    double L = 0;
    for (size_t i = 0; i < c->nout; i++) L += c->out[i] * c->r[i];
    return L;
}

static void check_conv(int B, int IC, int H, int W, int OC, int K, int stride, int pad, jem_rng *rng)
{
    jem_conv_shape s = {B, IC, H, W, OC, K, K, stride, pad};
    int OH = jem_conv_out(H, K, stride, pad), OW = jem_conv_out(W, K, stride, pad);
    size_t nx = (size_t)B * IC * H * W, nw = (size_t)OC * IC * K * K, no = (size_t)B * OC * OH * OW;
    float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * nw), *b = malloc(sizeof(float) * OC);
    float *r = malloc(sizeof(float) * no), *o1 = malloc(sizeof(float) * no), *o2 = malloc(sizeof(float) * no);
    fill_uniform(x, nx, rng, -1, 1);
    fill_uniform(w, nw, rng, -0.5f, 0.5f);
    fill_uniform(b, OC, rng, -0.5f, 0.5f);
    fill_uniform(r, no, rng, -1, 1);
    float *ws = malloc(sizeof(float) * jem_conv2d_ws(&s) * omp_get_max_threads());
    jem_conv2d_forward(o1, x, w, b, &s, NULL, ws);
    jem_conv2d_forward_ref(o2, x, w, b, &s);
    double e = rel_err_ff(o1, o2, no);
    ASSERT_MSG(e < TOL_FWD, "conv fwd %dx%dx%d->%d k%d s%d p%d: err %.3g", IC, H, W, OC, K, stride, pad, e);

    /* analytic (fast kernels), accumulating on top of a known value */
    float *dx = calloc(nx, sizeof(float)), *dw = calloc(nw, sizeof(float)), *db = calloc(OC, sizeof(float));
    for (size_t i = 0; i < nx; i++) dx[i] = 1.0f;
    jem_conv2d_backward(dx, dw, db, r, x, w, &s, NULL, ws);
    for (size_t i = 0; i < nx; i++) dx[i] -= 1.0f;
    /* reference backward */
    float *dx2 = calloc(nx, sizeof(float)), *dw2 = calloc(nw, sizeof(float)), *db2 = calloc(OC, sizeof(float));
    jem_conv2d_backward_ref(dx2, dw2, db2, r, x, w, &s);

    conv_ctx c = {s, to_d(x, nx), to_d(w, nw), to_d(b, OC), to_d(r, no), malloc(sizeof(double) * no), no};
    double *gx = malloc(sizeof(double) * nx), *gw = malloc(sizeof(double) * nw), *gb = malloc(sizeof(double) * OC);
    for (size_t i = 0; i < nx; i++) gx[i] = fd(conv_loss, &c, c.x, i);
    for (size_t i = 0; i < nw; i++) gw[i] = fd(conv_loss, &c, c.w, i);
    for (int i = 0; i < OC; i++) gb[i] = fd(conv_loss, &c, c.b, i);
    double ex = rel_err_fd(dx, gx, nx), ew = rel_err_fd(dw, gw, nw), eb = rel_err_fd(db, gb, OC);
    ASSERT_MSG(ex < TOL_GRAD, "conv dx k%d s%d p%d: err %.3g", K, stride, pad, ex);
    ASSERT_MSG(ew < TOL_GRAD, "conv dw k%d s%d p%d: err %.3g", K, stride, pad, ew);
    ASSERT_MSG(eb < TOL_GRAD, "conv db k%d s%d p%d: err %.3g", K, stride, pad, eb);
    ASSERT_MSG(rel_err_fd(dx2, gx, nx) < TOL_GRAD, "conv ref dx k%d s%d", K, stride);
    ASSERT_MSG(rel_err_fd(dw2, gw, nw) < TOL_GRAD, "conv ref dw k%d s%d", K, stride);

    /* NULL gradients: input only, and weights only */
    float *dx3 = calloc(nx, sizeof(float)), *dw3 = calloc(nw, sizeof(float));
    jem_conv2d_backward(dx3, NULL, NULL, r, x, w, &s, NULL, ws);
    ASSERT_MSG(rel_err_ff(dx3, dx, nx) < 1e-6, "conv dx alone differs");
    jem_conv2d_backward(NULL, dw3, NULL, r, x, w, &s, NULL, ws);
    ASSERT_MSG(rel_err_ff(dw3, dw, nw) < 1e-6, "conv dw alone differs");

    free(x);
    free(w);
    free(b);
    free(r);
    free(o1);
    free(o2);
    free(ws);
    free(dx);
    free(dw);
    free(db);
    free(dx2);
    free(dw2);
    free(db2);
    free(dx3);
    free(dw3);
    free(c.x);
    free(c.w);
    free(c.b);
    free(c.r);
    free(c.out);
    free(gx);
    free(gw);
    free(gb);
}

/* ---------------------------------------------------------------- linear */

typedef struct {
    int B, IN, OUT;
    double *x, *w, *b, *r, *out;
} lin_ctx;
static double lin_loss(void *p)
{
    lin_ctx *c = p;
    linear_d(c->out, c->x, c->w, c->b, c->B, c->IN, c->OUT);
    double L = 0;
    for (int i = 0; i < c->B * c->OUT; i++) L += c->out[i] * c->r[i];
    return L;
}

static void check_linear(int B, int IN, int OUT, jem_rng *rng)
{
    size_t nx = (size_t)B * IN, nw = (size_t)IN * OUT, no = (size_t)B * OUT;
    float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * nw), *b = malloc(sizeof(float) * OUT);
    float *r = malloc(sizeof(float) * no), *o1 = malloc(sizeof(float) * no), *o2 = malloc(sizeof(float) * no);
    fill_uniform(x, nx, rng, -1, 1);
    fill_uniform(w, nw, rng, -1, 1);
    fill_uniform(b, OUT, rng, -1, 1);
    fill_uniform(r, no, rng, -1, 1);
    jem_linear_forward(o1, x, w, b, B, IN, OUT);
    jem_linear_forward_ref(o2, x, w, b, B, IN, OUT);
    ASSERT(rel_err_ff(o1, o2, no) < TOL_FWD);
    float *dx = calloc(nx, sizeof(float)), *dw = calloc(nw, sizeof(float)), *db = calloc(OUT, sizeof(float));
    jem_linear_backward(dx, dw, db, r, x, w, B, IN, OUT);
    lin_ctx c = {B, IN, OUT, to_d(x, nx), to_d(w, nw), to_d(b, OUT), to_d(r, no), malloc(sizeof(double) * no)};
    double *gx = malloc(sizeof(double) * nx), *gw = malloc(sizeof(double) * nw), *gb = malloc(sizeof(double) * OUT);
    for (size_t i = 0; i < nx; i++) gx[i] = fd(lin_loss, &c, c.x, i);
    for (size_t i = 0; i < nw; i++) gw[i] = fd(lin_loss, &c, c.w, i);
    for (int i = 0; i < OUT; i++) gb[i] = fd(lin_loss, &c, c.b, i);
    ASSERT_MSG(rel_err_fd(dx, gx, nx) < TOL_GRAD, "linear dx %.3g", rel_err_fd(dx, gx, nx));
    ASSERT_MSG(rel_err_fd(dw, gw, nw) < TOL_GRAD, "linear dw %.3g", rel_err_fd(dw, gw, nw));
    ASSERT_MSG(rel_err_fd(db, gb, OUT) < TOL_GRAD, "linear db %.3g", rel_err_fd(db, gb, OUT));
    free(x);
    free(w);
    free(b);
    free(r);
    free(o1);
    free(o2);
    free(dx);
    free(dw);
    free(db);
    free(c.x);
    free(c.w);
    free(c.b);
    free(c.r);
    free(c.out);
    free(gx);
    free(gw);
    free(gb);
}

/* ----------------------------------------------------------- activations */

typedef struct {
    size_t n;
    jem_act a;
    double slope;
    double *x, *r;
} act_ctx;
static double act_loss(void *p)
{
    act_ctx *c = p;
    double L = 0;
    for (size_t i = 0; i < c->n; i++) L += act_d(c->x[i], c->a, c->slope) * c->r[i];
    return L;
}

static void check_act(jem_act a, float slope, jem_rng *rng)
{
    const size_t n = 300;
    float x[300], r[300], o[300], dx[300], d2[300];
    for (size_t i = 0; i < n; i++) {
        /* stay away from the kink at 0 where the derivative is undefined */
        float v = -3.0f + 6.0f * jem_rng_uniform(rng);
        if (fabsf(v) < 1e-3f) v = 0.5f;
        x[i] = v;
        r[i] = -1.0f + 2.0f * jem_rng_uniform(rng);
    }
    jem_act_forward(o, x, n, a, slope);
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= fabs(o[i] - act_d(x[i], a, slope)) < 1e-6 * (1 + fabs(o[i]));
    ASSERT_MSG(ok, "%s forward", jem_act_name(a));
    memset(dx, 0, sizeof dx);
    jem_act_backward(dx, r, x, n, a, slope);
    memcpy(d2, r, sizeof d2);
    jem_act_grad_inplace(d2, x, n, a, slope);
    act_ctx c = {n, a, slope, to_d(x, n), to_d(r, n)};
    double g[300];
    for (size_t i = 0; i < n; i++) g[i] = fd(act_loss, &c, c.x, i);
    ASSERT_MSG(rel_err_fd(dx, g, n) < TOL_GRAD, "%s backward %.3g", jem_act_name(a), rel_err_fd(dx, g, n));
    ASSERT_MSG(rel_err_ff(d2, dx, n) < 1e-7, "%s inplace", jem_act_name(a));
    free(c.x);
    free(c.r);
}

/* --------------------------------------------------------------- pooling */

typedef struct {
    int B, C, H, W, k, s, gap;
    double *x, *r;
} pool_ctx;
static double pool_loss(void *p)
{
    pool_ctx *c = p;
    double L = 0;
    if (c->gap) {
        for (int bc = 0; bc < c->B * c->C; bc++) {
            double acc = 0;
            for (int i = 0; i < c->H * c->W; i++) acc += c->x[(size_t)bc * c->H * c->W + i];
            L += acc / (c->H * c->W) * c->r[bc];
        }
        return L;
    }
    int OH = (c->H - c->k) / c->s + 1, OW = (c->W - c->k) / c->s + 1;
    for (int bc = 0; bc < c->B * c->C; bc++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                double acc = 0;
                for (int i = 0; i < c->k; i++)
                    for (int j = 0; j < c->k; j++)
                        acc += c->x[((size_t)bc * c->H + oh * c->s + i) * c->W + ow * c->s + j];
                L += acc / (c->k * c->k) * c->r[((size_t)bc * OH + oh) * OW + ow];
            }
    return L;
}

static void check_pool(int gap, int k, int st, jem_rng *rng)
{
    int B = 2, C = 3, H = 6, W = 5;
    int OH = gap ? 1 : (H - k) / st + 1, OW = gap ? 1 : (W - k) / st + 1;
    size_t nx = (size_t)B * C * H * W, no = (size_t)B * C * OH * OW;
    float *x = malloc(sizeof(float) * nx), *r = malloc(sizeof(float) * no), *o = malloc(sizeof(float) * no);
    float *dx = calloc(nx, sizeof(float));
    fill_uniform(x, nx, rng, -1, 1);
    fill_uniform(r, no, rng, -1, 1);
    if (gap) {
        jem_gap_forward(o, x, B, C, H * W);
        jem_gap_backward(dx, r, B, C, H * W);
    } else {
        jem_avgpool_forward(o, x, B, C, H, W, k, st);
        jem_avgpool_backward(dx, r, B, C, H, W, k, st);
    }
    pool_ctx c = {B, C, H, W, k, st, gap, to_d(x, nx), to_d(r, no)};
    double L = 0;
    for (size_t i = 0; i < no; i++) L += (double)o[i] * r[i];
    ASSERT_NEAR(L, pool_loss(&c), 1e-5);
    double *g = malloc(sizeof(double) * nx);
    for (size_t i = 0; i < nx; i++) g[i] = fd(pool_loss, &c, c.x, i);
    ASSERT_MSG(rel_err_fd(dx, g, nx) < TOL_GRAD, "%s backward", gap ? "gap" : "avgpool");
    free(x);
    free(r);
    free(o);
    free(dx);
    free(c.x);
    free(c.r);
    free(g);
}

static void check_add(jem_rng *rng)
{
    float a[50], b[50], o[50], da[50] = {0}, db[50] = {0}, d[50];
    fill_uniform(a, 50, rng, -1, 1);
    fill_uniform(b, 50, rng, -1, 1);
    fill_uniform(d, 50, rng, -1, 1);
    jem_add_forward(o, a, b, 50);
    jem_add_backward(da, db, d, 50);
    int ok = 1;
    for (int i = 0; i < 50; i++) ok &= o[i] == a[i] + b[i] && da[i] == d[i] && db[i] == d[i];
    ASSERT(ok);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_nn");
    jem_rng rng;
    jem_rng_seed(&rng, 1234, 0);
    /* conv: the shapes the wide-ResNet uses and the general cases */
    check_conv(2, 3, 7, 6, 4, 3, 1, 1, &rng); /* 3x3 stride 1 pad 1 */
    check_conv(2, 3, 7, 7, 5, 3, 2, 1, &rng); /* 3x3 stride 2 */
    check_conv(2, 4, 5, 5, 3, 1, 1, 0, &rng); /* 1x1 (no im2col) */
    check_conv(2, 4, 7, 6, 3, 1, 2, 0, &rng); /* 1x1 stride 2 shortcut */
    check_conv(1, 2, 8, 8, 3, 5, 1, 2, &rng); /* 5x5 pad 2 */
    check_conv(3, 2, 6, 5, 2, 3, 1, 0, &rng); /* no padding */
    check_conv(2, 2, 9, 9, 3, 3, 3, 2, &rng); /* stride 3 */
    /* channels multiples of 16: the Winograd (stride 1) and indirect
     * (stride 2) kernels on AVX-512 CPUs, odd sizes for partial tiles */
    check_conv(1, 16, 5, 5, 16, 3, 1, 1, &rng);
    check_conv(1, 16, 5, 6, 32, 3, 2, 1, &rng);
    check_linear(3, 7, 5, &rng);
    check_linear(1, 16, 10, &rng);
    check_act(JEM_ACT_LRELU, 0.2f, &rng);
    check_act(JEM_ACT_RELU, 0.0f, &rng);
    check_act(JEM_ACT_SILU, 0.0f, &rng);
    check_pool(0, 2, 2, &rng);
    check_pool(0, 3, 1, &rng);
    check_pool(1, 0, 0, &rng);
    check_add(&rng);
    return t_finish();
}
